"""
2D navigation, MAML's protocol
==============================

A fixed inner step meta-trained with TRPO and evaluated as MAML evaluates: each step on 40 trajectories, the step halved after the first.
"""

import metafast as mf

maml_rl = mf.rl.MetaSGDRL(mf.MLP([2, 100, 100, 2], activation="relu"), meta_optimizer="trpo",
                          alpha_init=0.001, alpha_lr=0.0, gae_lambda=1.0, seed=0)
maml_rl.fit(iterations=500, meta_batch=20)                  # about 6 minutes on 2 cores
print(maml_rl.evaluate(num_tasks=600, steps=(0, 1, 2, 3), trajectories=40, seed=123,
                       inner_trajectories=40, alpha_scales=(1, 0.5)))
