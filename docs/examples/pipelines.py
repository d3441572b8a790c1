"""
Pickles, copies and process pools
=================================

A learner travels whole to other processes (shown, not run, on this page: its process pool needs a script of its own).
"""

import copy
import pickle
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np
import metafast as mf


def evaluate_seed(learner, seed):
    """Runs in another process: the learner arrives by pickle, whole."""
    return learner.evaluate(mf.tasks.Sinusoid(), num_tasks=100, steps=(1,), seed=seed).loss[0]


if __name__ == "__main__":
    learner = mf.MetaSGD(mf.MLP([1, 40, 40, 1]), seed=0)
    learner.fit(mf.tasks.Sinusoid(), iterations=200, meta_batch=25, progress=False)

    snapshot = copy.deepcopy(learner)            # an independent learner, in memory
    restored = pickle.loads(pickle.dumps(learner))
    learner.fit(mf.tasks.Sinusoid(), iterations=20, meta_batch=25, progress=False)
    restored.fit(restored.tasks, iterations=20, meta_batch=25, progress=False)
    print(np.array_equal(restored.theta, learner.theta), snapshot.iteration, learner.iteration)

    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        losses = list(pool.map(evaluate_seed, [learner] * 3, [101, 102, 103]))
    print(len(losses), all(np.isfinite(losses)))
