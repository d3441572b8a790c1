"""Advantages of trajectories collected in Python (GymTasks), by the rules of the core's
rollouts (cpp/include/metafast/rl.hpp; docs/math.md, section 4): returns-to-go, MAML's linear
feature baseline fitted by ridge regression, GAE(lambda) on it, standardisation, and the
surrogate's weights A_t / N. The core computes these only inside its native Navigation2D
rollouts, so the Python path keeps this copy; tests/test_rl_gym.py holds it equal to the core
on the core's own trajectories."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def baseline_features(observations: np.ndarray, lengths: Sequence[int]) -> np.ndarray:
    """MAML's linear feature baseline's features of each row: ``[s, s**2, tau, tau**2,
    tau**3, 1]`` with ``tau = t / 100`` for step ``t`` of its trajectory (for 2D navigation the
    core's ``[x, y, x^2, y^2, tau, tau^2, tau^3, 1]``)."""
    tau = np.concatenate([np.arange(length) for length in lengths]) / 100.0
    return np.column_stack([observations, observations**2, tau, tau**2, tau**3, np.ones_like(tau)])


def ridge_solve(normal: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solves ``(normal + reg I) w = rhs`` by Cholesky, raising ``reg`` tenfold from 1e-5 (as
    MAML's code does) while it is below 1e3 until the factorisation succeeds; a baseline of
    zero (plain returns) when it never does: the core's rule (``detail::ridge_solve``)."""
    identity = np.eye(len(rhs))
    reg = 1e-5
    while reg < 1e3:
        try:
            lower = np.linalg.cholesky(normal + reg * identity)
        except np.linalg.LinAlgError:
            lower = None
        if lower is not None and np.all(np.isfinite(lower)) and np.all(np.diag(lower) > 0):
            return np.linalg.solve(lower.T, np.linalg.solve(lower, rhs))
        reg *= 10
    return np.zeros_like(rhs)


def generalized_advantages(rewards: np.ndarray, values: np.ndarray, lengths: Sequence[int], gamma: float,
                           gae_lambda: float) -> np.ndarray:
    """GAE(lambda) of trajectories laid end to end (``lengths`` steps each):
    A_t = delta_t + gamma lambda A_{t+1}, delta_t = r_t + gamma b_{t+1} - b_t, with b = 0 after
    a trajectory's last step.

    Parameters
    ----------
    rewards, values : numpy.ndarray, shape (rows,)
        The reward of every step and the baseline's value of its state.
    lengths : sequence of int
        Steps of each trajectory, in the order of the rows.
    gamma, gae_lambda : float
        The discount and GAE's lambda (1: returns-to-go minus the baseline).

    Returns
    -------
    numpy.ndarray, shape (rows,)
        The advantages.
    """
    advantages, start = np.empty_like(values), 0
    decay = gamma * gae_lambda
    for length in lengths:
        advantage, next_value = 0.0, 0.0
        for t in reversed(range(start, start + length)):
            advantage = rewards[t] + gamma * next_value - values[t] + decay * advantage
            advantages[t], next_value = advantage, values[t]
        start += length
    return advantages


def surrogate_weights(rewards: np.ndarray, observations: np.ndarray, lengths: Sequence[int], gamma: float,
                      gae_lambda: float, normalize: bool) -> np.ndarray:
    """The surrogate's weights ``A_t / N`` (float64) of N trajectories laid end to end:
    returns-to-go minus the fitted baseline, or GAE(gae_lambda) on it, standardised per batch
    when ``normalize`` (with the core's one-pass variance and its 1e-8)."""
    returns, start = np.empty_like(rewards), 0
    for length in lengths:
        future = 0.0
        for t in reversed(range(start, start + length)):
            future = rewards[t] + gamma * future
            returns[t] = future
        start += length
    features = baseline_features(observations, lengths)
    values = features @ ridge_solve(features.T @ features, features.T @ returns)
    if gae_lambda < 1.0:
        advantages = generalized_advantages(rewards, values, lengths, gamma, gae_lambda)
    else:
        advantages = returns - values
    shift, scale = 0.0, 1.0
    if normalize and len(advantages):
        shift = advantages.sum() / len(advantages)
        variance = max(float(np.dot(advantages, advantages)) / len(advantages) - shift * shift, 0.0)
        scale = 1.0 / (np.sqrt(variance) + 1e-8)
    return (advantages - shift) * scale / len(lengths)
