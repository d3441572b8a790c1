"""Shared helpers: problems (model, theta, x, y) for every activation and loss, and
central finite differences in float64."""

from __future__ import annotations

import copy
import os
import pickle
from dataclasses import dataclass

import numpy as np
import pytest

# Every call gets the team it asks for, so that the parallel paths run on the suite's tiny
# problems whatever the machine is doing (by default teams follow the load and the work size).
os.environ.setdefault("METAFAST_TEAMS", "exact")

import metafast as mf  # noqa: E402

HIDDEN = ["identity", "tanh", "sigmoid", "relu"]
# Every (output activation, loss) pair the core accepts.
OUTPUT_LOSSES = [
    ("identity", "mse"),
    ("tanh", "mse"),
    ("sigmoid", "mse"),
    ("relu", "mse"),
    ("identity", "bce"),
    ("sigmoid", "bce"),
    ("identity", "softmax_ce"),
]


@dataclass
class Problem:
    model: mf.MLP
    theta: np.ndarray
    x: np.ndarray
    y: np.ndarray
    loss: str


def targets(loss: str, rows: int, width: int, rng: np.random.Generator, dtype=np.float64):
    if loss == "softmax_ce":
        return rng.integers(0, width, size=rows)
    if loss == "bce":
        return rng.integers(0, 2, size=(rows, width)).astype(dtype)
    return rng.normal(size=(rows, width)).astype(dtype)


def make_problem(sizes, activation="tanh", output="identity", loss="mse", bias=True, rows=7,
                 seed=0, dtype=np.float64) -> Problem:
    model = mf.MLP(sizes, activation=activation, output=output, bias=bias)
    rng = np.random.default_rng(seed)
    # Non-zero biases, so that their gradient paths are exercised.
    theta = (model.init(seed=seed) + 0.1 * rng.normal(size=model.num_params)).astype(dtype)
    x = rng.normal(size=(rows, sizes[0])).astype(dtype)
    return Problem(model, theta, x, targets(loss, rows, sizes[-1], rng, dtype), loss)


def finite_difference_grad(p: Problem, eps: float = 1e-6) -> np.ndarray:
    grad = np.empty_like(p.theta)
    for i in range(p.theta.size):
        step = np.zeros_like(p.theta)
        step[i] = eps
        grad[i] = (p.model.loss(p.theta + step, p.x, p.y, p.loss)
                   - p.model.loss(p.theta - step, p.x, p.y, p.loss)) / (2 * eps)
    return grad


def finite_difference_hvp(p: Problem, v: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    plus = p.model.loss_and_grad(p.theta + eps * v, p.x, p.y, p.loss)[1]
    minus = p.model.loss_and_grad(p.theta - eps * v, p.x, p.y, p.loss)[1]
    return (plus - minus) / (2 * eps)


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-300))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# Every way an object leaves and comes back: pickle at each protocol, copy and deepcopy.
COPIERS = {
    **{f"pickle-{p}": (lambda obj, p=p: pickle.loads(pickle.dumps(obj, protocol=p)))
       for p in range(2, pickle.HIGHEST_PROTOCOL + 1)},
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
}
