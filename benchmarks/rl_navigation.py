"""The longer Meta-SGD reinforcement-learning run the README reports next to the MAML paper's
2D-navigation table: MLP 2-100-100-2 ReLU policy, 20 goals x 20 trajectories per
meta-iteration, 500 meta-iterations, Adam 3e-3, alpha 0.1.

    python benchmarks/rl_navigation.py
"""

import time, metafast as mf
learner = mf.rl.MetaSGDRL(mf.MLP([2, 100, 100, 2], activation="relu"), inner_trajectories=20, alpha_init=0.1,
                          meta_lr=3e-3, seed=0)
started = time.perf_counter()
learner.fit(iterations=500, meta_batch=20, progress=False)
elapsed = time.perf_counter() - started
report = learner.evaluate(num_tasks=40, steps=(0, 1, 2, 3), trajectories=40, seed=123)
print(f"trained 500 meta-iterations x 20 tasks in {elapsed:.0f} s")
print(report)
