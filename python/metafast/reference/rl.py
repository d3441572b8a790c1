"""The policy-gradient surrogate of a Gaussian policy in NumPy (docs/math.md, section 4): loss,
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
                    tolerance: float = 0.01, squared: bool = False,
                    scaled_actions: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step of 2D navigation for many agents: (new positions, rewards, reached). With
    ``scaled_actions`` the velocity is ``max_action`` times the action, clipped to
    ``±max_action``; otherwise the action itself, clipped."""
    velocity = max_action * actions if scaled_actions else actions
    moved = positions + np.clip(velocity, -max_action, max_action)
    offset = moved - goals
    distance2 = np.sum(offset**2, axis=1)
    reached = np.all(np.abs(offset) <= tolerance, axis=1)
    return moved, -distance2 if squared else -np.sqrt(distance2), reached


def ridge_solve(normal: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """w with (normal + reg I) w = rhs, reg = 1e-5 raised tenfold (while below 1e3) until the
    Cholesky factorisation succeeds; zeros (no baseline) if it never does."""
    reg = 1e-5
    while reg < 1e3:
        try:
            lower = np.linalg.cholesky(normal + reg * np.eye(len(rhs)))
        except np.linalg.LinAlgError:
            reg *= 10
            continue
        return np.linalg.solve(lower.T, np.linalg.solve(lower, rhs))
    return np.zeros_like(rhs)


def rollout(model: Any, theta: np.ndarray, goal: np.ndarray, rng: Any, trajectories: int = 20, horizon: int = 100,
            gamma: float = 0.99, max_action: float = 0.1, tolerance: float = 0.01, squared: bool = False,
            normalize_advantages: bool = True, scaled_actions: bool = True, gae_lambda: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Samples trajectories of the Gaussian policy theta toward `goal` with the core's
    semantics: noise ``rng.normal()`` for every trajectory and dimension at every step (finished
    or not), returns-to-go, MAML's linear feature baseline fitted by ridge regression (:func:`ridge_solve`),
    optionally standardised advantages. Returns (states, actions, weights = A / N, mean return),
    rows in trajectory-major order."""
    params, log_std = _split(model, theta)
    positions = np.zeros((trajectories, 2))
    active = np.ones(trajectories, dtype=bool)
    states, actions, rewards = [[] for _ in range(trajectories)], [[] for _ in range(trajectories)], [[] for _ in range(trajectories)]
    for _ in range(horizon):
        if not active.any():
            break
        mean = mlp_forward(model, params, positions.copy())
        for i in range(trajectories):
            action = np.array([mean[i, d] + np.exp(log_std[d]) * rng.normal() for d in range(2)])
            if not active[i]:
                continue
            states[i].append(positions[i].copy())
            actions[i].append(action)
            moved, reward, reached = navigation_step(positions[i:i + 1], action[None], goal[None], max_action,
                                                     tolerance, squared, scaled_actions)
            positions[i] = moved[0]
            rewards[i].append(reward[0])
            active[i] = not reached[0]
    returns, features = [], []
    for i in range(trajectories):
        future, out = 0.0, []
        for reward in reversed(rewards[i]):
            future = reward + gamma * future
            out.append(future)
        returns.extend(out[::-1])
        for t, state in enumerate(states[i]):
            tau = t / 100.0
            features.append([state[0], state[1], state[0] ** 2, state[1] ** 2, tau, tau**2, tau**3, 1.0])
    returns, features = np.array(returns), np.array(features)
    weights_baseline = ridge_solve(features.T @ features, features.T @ returns)
    values = features @ weights_baseline
    advantages = returns - values
    if gae_lambda < 1:  # GAE: sum over l of (gamma lambda)^l (r + gamma b' - b), b = 0 after the last step
        start = 0
        for i in range(trajectories):
            length = len(rewards[i])
            b = np.append(values[start:start + length], 0.0)
            deltas = np.array(rewards[i]) + gamma * b[1:] - b[:-1]
            weights_l = (gamma * gae_lambda) ** np.arange(length)
            advantages[start:start + length] = [np.dot(weights_l[:length - t], deltas[t:]) for t in range(length)]
            start += length
    if normalize_advantages:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    mean_return = sum(sum(r) for r in rewards) / trajectories
    return (np.concatenate([np.array(s) for s in states]), np.concatenate([np.array(a) for a in actions]),
            advantages / trajectories, mean_return)


def meta_gradient(model: Any, theta: np.ndarray, alpha: np.ndarray, train: tuple | list, valid: tuple,
                  first_order: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Exact Meta-SGD meta-gradient through the inner steps on fixed samples: ``train`` (one
    step's samples, or a list with those of each step) at theta_j, theta_{j+1} = theta_j - alpha
    * grad_j, and ``valid`` at the last; each (states, actions, weights)."""
    steps = train if isinstance(train, list) else [train]
    path, grads = [np.asarray(theta, dtype=np.float64)], []
    for samples in steps:
        grads.append(surrogate_loss_and_grad(model, path[-1], *samples)[1])
        path.append(path[-1] - alpha * grads[-1])
    _, g = surrogate_loss_and_grad(model, path[-1], *valid)
    g_alpha = np.zeros_like(g)
    for j in reversed(range(len(steps))):
        g_alpha -= grads[j] * g
        if not first_order:
            g = g - surrogate_hvp(model, path[j], *steps[j], alpha * g)
    return g, g_alpha
