"""
Few-shot Omniglot
=================

MAML with Conv-4 on 5-way 1-shot episodes of the Omniglot alphabets shipped with metafast, evaluated on held-out alphabets.
"""

import metafast as mf

alphabets = mf.datasets.omniglot_subsets()                     # the two minimal sets, shipped
held_out = sorted(set(alphabets["small2"]) - set(alphabets["small1"]))
train = mf.tasks.Omniglot(subset="small1", ways=5, shots=1, query=5, rotations=4)  # 544 classes
test = mf.tasks.Omniglot(held_out, subset="small2", ways=5, shots=1, query=5)      # 106 new characters

net = mf.ConvNet((1, 28, 28), channels=(32, 32, 32, 32), outputs=5)
maml = mf.MAML(net, loss="softmax_ce", inner_lr=0.4, inner_steps=1, seed=0)
maml.fit(train, iterations=2000, meta_batch=16, progress=False)
print(held_out)
print(maml.evaluate(test, num_tasks=1000, steps=(0, 1, 3)))
