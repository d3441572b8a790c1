"""metafast itself: fit() on a native task family, chunks of meta-iterations in C++."""

from __future__ import annotations

import numpy as np

import metafast as mf
from fixtures import Fixed, family, model
from workloads import Workload

NAME = "metafast"


def available() -> str | None:
    return None


def learner(w: Workload, threads: int, seed: int = 0):
    if w.algorithm == "reptile":
        return mf.Reptile(model(w), loss=w.loss, inner_optimizer="adam", inner_lr=w.inner_lr, inner_epochs=w.inner_epochs,
                          inner_batch=w.inner_batch, epsilon=w.epsilon, seed=seed, num_threads=threads)
    return mf.MetaSGD(model(w), loss=w.loss, inner_steps=w.inner_steps, alpha_init=w.alpha_init,
                      meta_optimizer=w.meta_optimizer, meta_lr=w.meta_lr, alpha_lr=w.meta_lr, seed=seed,
                      num_threads=threads)  # alpha_lr: the update every implementation makes


def make_runner(w: Workload, threads: int, seed: int = 0):
    """run(units) does at least `units` units of work, task sampling included; returns how many."""
    learn, tasks = learner(w, threads, seed), family(w)

    def run(units: int) -> int:
        iterations = -(-units * w.tasks_per_unit // w.meta_batch)
        learn.fit(tasks, iterations=iterations, meta_batch=w.meta_batch, progress=False)
        return iterations * w.meta_batch // w.tasks_per_unit

    return run


def compute(w: Workload, f: Fixed) -> dict[str, np.ndarray]:
    learn = learner(w, threads=1)
    batch = mf.TaskBatch(f.x_support, f.y_support, f.x_query, f.y_query)
    learn.theta = f.theta
    if w.algorithm == "reptile":
        learn.meta_step(batch)
        return {"theta": learn.theta}
    learn.alpha = f.alpha
    _, g_theta, g_alpha = learn.meta_gradient(batch)
    return {"g_theta": g_theta, "g_alpha": g_alpha}
