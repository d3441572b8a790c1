"""Fixed data for the correctness pre-checks: every implementation computes the same update
or meta-gradient from these arrays, and must agree with metafast to float32 precision."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

import metafast as mf
from workloads import Workload


@dataclass
class Fixed:
    theta: np.ndarray
    alpha: Optional[np.ndarray]
    x_support: np.ndarray
    y_support: np.ndarray
    x_query: np.ndarray
    y_query: np.ndarray


def family(w: Workload) -> mf.tasks.TaskFamily:
    if w.task == "sine-book":
        return mf.tasks.Sinusoid.book(support=w.support, query=w.query)
    if w.task == "sine":
        return mf.tasks.Sinusoid(support=w.support, query=w.query)
    return mf.tasks.LinearBinary(dim=w.sizes[0], support=w.support, query=w.query)


def model(w: Workload) -> mf.MLP:
    return mf.MLP(list(w.sizes), activation=w.activation, output=w.output, bias=w.bias)


def fixed(w: Workload, seed: int = 2024) -> Fixed:
    batch = family(w).sample(w.meta_batch, seed=seed, dtype="float32")
    theta = model(w).init(seed=seed, dtype="float32")
    alpha = None
    if w.algorithm == "metasgd":
        alpha = np.random.default_rng(seed).uniform(0.5 * w.alpha_init, 1.5 * w.alpha_init, theta.size).astype(np.float32)
    return Fixed(theta, alpha, batch.x_support, batch.y_support, batch.x_query, batch.y_query)
