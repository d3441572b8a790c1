"""metafast.reference: the pure NumPy implementations, run as a user would run them
(float32 arrays, tasks sampled with NumPy)."""

from __future__ import annotations

import numpy as np

from metafast import reference
from fixtures import Fixed, model
from workloads import Workload

NAME = "numpy"


def available() -> str | None:
    return None


def sample(w: Workload, rng: np.random.Generator, tasks: int):
    """Tasks of the workload's family drawn with NumPy (same distributions as metafast's)."""
    if w.task == "linear-binary":
        dim = w.sizes[0]
        weights = rng.normal(size=(tasks, dim, 1))
        xs = rng.uniform(-1, 1, size=(tasks, w.support, dim))
        xq = rng.uniform(-1, 1, size=(tasks, w.query, dim))
        return (xs, (xs @ weights > 0).astype(np.float64), xq, (xq @ weights > 0).astype(np.float64))
    amplitude = rng.uniform(0.1, 5.0, size=(tasks, 1, 1))
    phase = rng.uniform(0.0, np.pi, size=(tasks, 1, 1))
    if w.task == "sine-book":
        grid = np.linspace(-5, 5, 100)
        xs, xq = grid[rng.integers(0, 100, (tasks, w.support, 1))], grid[rng.integers(0, 100, (tasks, w.query, 1))]
        return xs, amplitude * np.sin(xs + phase), xq, amplitude * np.sin(xq + phase)
    xs, xq = rng.uniform(-5, 5, (tasks, w.support, 1)), rng.uniform(-5, 5, (tasks, w.query, 1))
    return xs, amplitude * np.sin(xs - phase), xq, amplitude * np.sin(xq - phase)


class Batch:
    def __init__(self, arrays):
        self.x_support, self.y_support, self.x_query, self.y_query = (np.asarray(a, dtype=np.float32) for a in arrays)


def learner(w: Workload, theta: np.ndarray, alpha: np.ndarray | None = None):
    m = model(w)
    if w.algorithm == "reptile":
        return reference.Reptile(m, theta, loss=w.loss, inner_optimizer="adam", inner_lr=w.inner_lr,
                                 inner_epochs=w.inner_epochs, inner_batch=w.inner_batch, epsilon=w.epsilon)
    if alpha is None:
        alpha = np.full(theta.size, w.alpha_init, dtype=np.float32)
    return reference.MetaSGD(m, theta, alpha, loss=w.loss, inner_steps=w.inner_steps,
                             meta_optimizer=w.meta_optimizer, meta_lr=w.meta_lr)


def make_runner(w: Workload, threads: int, seed: int = 0):
    learn = learner(w, model(w).init(seed=seed, dtype="float32"))
    rng = np.random.default_rng(seed)

    def run(units: int) -> int:
        iterations = -(-units * w.tasks_per_unit // w.meta_batch)
        for _ in range(iterations):
            learn.meta_step(Batch(sample(w, rng, w.meta_batch)))
        return iterations * w.meta_batch // w.tasks_per_unit

    return run


def compute(w: Workload, f: Fixed) -> dict[str, np.ndarray]:
    learn = learner(w, f.theta.astype(np.float64), None if f.alpha is None else f.alpha.astype(np.float64))
    batch = Batch((f.x_support, f.y_support, f.x_query, f.y_query))
    if w.algorithm == "reptile":
        learn.meta_step(batch, 0)
        return {"theta": learn.theta}
    _, g_theta, g_alpha = learn.meta_gradient(batch)
    return {"g_theta": g_theta, "g_alpha": g_alpha}
