"""The policy-gradient surrogate of a Gaussian policy in NumPy (math.md section 4): loss,
gradient and exact Hessian-vector product on fixed samples, for testing the core.

theta is the mean network's parameters followed by a log standard deviation per action
dimension; the surrogate is L = -sum_t w_t log pi(a_t | s_t) with w_t = A_t / N.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .mlp import mlp_forward, mlp_seeded_hvp, mlp_vjp


def _split(model: Any, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = theta.size - model.sizes[-1]
    return theta[:size], theta[size:]


def log_prob(model: Any, theta: np.ndarray, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """log pi(a_t | s_t) for every row."""
    params, log_std = _split(model, theta)
    mean = mlp_forward(model, params, states)
    return -np.sum((actions - mean) ** 2 * np.exp(-2 * log_std) / 2 + log_std + 0.5 * np.log(2 * np.pi), axis=1)


def surrogate_loss_and_grad(model: Any, theta: np.ndarray, states: np.ndarray, actions: np.ndarray,
                            weights: np.ndarray) -> tuple[float, np.ndarray]:
    params, log_std = _split(model, theta)
    mean = mlp_forward(model, params, states)
    error, inverse_variance = actions - mean, np.exp(-2 * log_std)
    loss = -np.sum(weights * log_prob(model, theta, states, actions))
    delta = -weights[:, None] * error * inverse_variance
    grad_log_std = -np.sum(weights[:, None] * (error**2 * inverse_variance - 1), axis=0)
    return float(loss), np.concatenate([mlp_vjp(model, params, states, delta), grad_log_std])


def surrogate_hvp(model: Any, theta: np.ndarray, states: np.ndarray, actions: np.ndarray, weights: np.ndarray,
                  v: np.ndarray) -> np.ndarray:
    params, log_std = _split(model, theta)
    v_params, v_log_std = _split(model, v)
    inverse_variance = np.exp(-2 * log_std)
    w = weights[:, None]
    parts = {}

    def seed(mean: np.ndarray, r_mean: np.ndarray):
        error = actions - mean
        parts["log_std"] = np.sum(2 * w * error * inverse_variance * r_mean + 2 * w * error**2 * inverse_variance * v_log_std, axis=0)
        return -w * error * inverse_variance, w * inverse_variance * r_mean + 2 * w * error * inverse_variance * v_log_std

    hv_params = mlp_seeded_hvp(model, params, states, v_params, seed)
    return np.concatenate([hv_params, parts["log_std"]])


def navigation_step(positions: np.ndarray, actions: np.ndarray, goals: np.ndarray, max_action: float = 0.1,
                    tolerance: float = 0.01, squared: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step of 2D navigation for many agents: (new positions, rewards, reached)."""
    moved = positions + np.clip(actions, -max_action, max_action)
    offset = moved - goals
    distance2 = np.sum(offset**2, axis=1)
    reached = np.all(np.abs(offset) <= tolerance, axis=1)
    return moved, -distance2 if squared else -np.sqrt(distance2), reached
