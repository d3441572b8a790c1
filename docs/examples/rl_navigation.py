"""
Meta-SGD for 2D navigation
==========================

Meta-SGD for reinforcement learning on the MAML paper's 2D navigation, with its defaults.
"""

import metafast as mf

learner = mf.rl.MetaSGDRL(mf.MLP([2, 100, 100, 2], activation="relu"), env=mf.rl.Navigation2D(), seed=0)
history = learner.fit(iterations=500, meta_batch=20)        # mean return after adaptation per iteration
print(learner.evaluate(num_tasks=600, steps=(0, 1, 2, 3), trajectories=20, seed=123))
theta_goal = learner.adapt([0.3, -0.2], steps=1)            # policy adapted to one goal
learner.save("nav.npz")
again = mf.load("nav.npz")
