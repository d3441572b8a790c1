"""
A first model: Meta-SGD on sine waves
=====================================

Meta-train on a family of sine tasks, evaluate on held-out tasks, adapt to a new one, save and load.
"""

import metafast as mf

tasks = mf.tasks.Sinusoid(amplitude=(0.1, 5.0), phase=(0.0, 3.14159), support=10, query=10)
model = mf.MLP([1, 40, 40, 1], activation="relu")
learner = mf.MetaSGD(model, loss="mse", inner_steps=1, alpha_init=0.01, meta_lr=1e-3, seed=0)

history = learner.fit(tasks, iterations=5000, meta_batch=25)   # about 0.7 s on 2 cores
print(learner.evaluate(tasks, num_tasks=600, seed=123))   # before and after the trained step

batch = tasks.sample(1, seed=7)                  # a new task
params = learner.adapt(batch.x_support[0], batch.y_support[0])
yhat = learner.predict(batch.x_query[0], params)
learner.save("sine.npz")
same = mf.load("sine.npz")
