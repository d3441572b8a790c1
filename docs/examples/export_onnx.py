"""
Exporting an adapted model
==========================

Adapt to a new task, then export the adapted network as ONNX and as a PyTorch state dict, and check ONNX Runtime against the learner.
"""

import numpy as np
import onnxruntime as ort
import metafast as mf

learner = mf.MetaSGD(mf.MLP([1, 40, 40, 1]), seed=0)
learner.fit(mf.tasks.Sinusoid(), iterations=500, meta_batch=25, progress=False)

# A new task: adapt to its support set, then export the adapted network.
task = mf.tasks.Sinusoid().sample(1, seed=7, dtype="float32")
x_support, y_support, x_query = task.x_support[0], task.y_support[0], task.x_query[0]
theta = learner.adapt(x_support, y_support)
learner.model.to_onnx(theta, "sine.onnx")             # pip install "metafast[onnx]"
state = learner.model.state_dict(theta)               # "0.weight" (40, 1), "0.bias", "2.weight", ...
# torch.nn.Sequential(Linear(1, 40), ReLU(), Linear(40, 40), ReLU(), Linear(40, 1))
#     .load_state_dict({name: torch.from_numpy(a) for name, a in state.items()})

session = ort.InferenceSession("sine.onnx", providers=["CPUExecutionProvider"])
y = session.run(None, {"x": x_query})[0]              # any number of rows
print(np.allclose(y, learner.predict(x_query, theta), rtol=1e-5, atol=1e-6))
