"""Reinforcement learning pieces (work in progress toward Meta-SGD for RL, issue 6): the 2D
navigation task family and a Gaussian policy with its policy-gradient surrogate, gradient and
exact Hessian-vector product, all computed by the C++ core.

Not here yet: native rollouts, advantages with a fitted baseline, and the MetaSGDRL learner.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core, _validation
from .mlp import MLP


class Navigation2D:
    """2D navigation (Finn et al. 2017): a point agent starts at (0, 0) and steers toward a
    goal drawn uniformly from ``goal_range`` squared. The observation is the position, the
    action a velocity whose coordinates are clipped to ``[-max_action, max_action]``, the
    reward minus the Euclidean distance to the goal after the step (``reward="squared"``:
    minus the squared distance, as the MAML paper's text states; the distance penalises
    being far away more gently and is what the MAML code uses). An episode ends after
    ``horizon`` steps or when both coordinates are within ``tolerance`` of the goal.

    Goals come from the counter-based generator: goal ``i`` of iteration ``k`` with seed ``s``
    is keyed by ``(s, k, i)``.
    """

    def __init__(self, goal_range: tuple[float, float] = (-0.5, 0.5), max_action: float = 0.1,
                 tolerance: float = 0.01, horizon: int = 100, reward: str = "distance") -> None:
        self.goal_range = _validation.pair(goal_range, "goal_range")
        self.max_action = _validation.real(max_action, "max_action", minimum=0.0, exclusive=True)
        self.tolerance = _validation.real(tolerance, "tolerance", minimum=0.0)
        self.horizon = _validation.integer(horizon, "horizon", minimum=1)
        if reward not in ("distance", "squared"):
            raise ValueError(f"reward must be 'distance' or 'squared', got {reward!r}")
        self.reward = reward
        self._impl = _core.Navigation2D(*self.goal_range, self.max_action, self.tolerance, self.horizon,
                                        reward == "squared")

    def sample_goals(self, num_tasks: int, seed: int = 0, iteration: int = 0) -> np.ndarray:
        """Goals of ``num_tasks`` tasks, shape (num_tasks, 2)."""
        return self._impl.sample_goals(_validation.integer(num_tasks, "num_tasks", minimum=1),
                                       _validation.integer(seed, "seed", minimum=0),
                                       _validation.integer(iteration, "iteration", minimum=0))

    def step(self, positions: Any, actions: Any, goals: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One step for many agents at once: ``(new positions, rewards, reached goal)``."""
        arrays = [_validation.floats(a, name, np.dtype(np.float64))
                  for a, name in ((positions, "positions"), (actions, "actions"), (goals, "goals"))]
        return self._impl.step(*arrays)


class GaussianPolicy:
    """``pi(a | s) = N(mu(s), diag(exp(2 log_std)))``: ``model`` (identity output) gives the
    mean; a learned state-independent ``log_std``, one per action dimension, follows the
    model's parameters in the flat vector ``theta`` (so it has its own Meta-SGD alpha).

    The surrogate on fixed samples is ``L = -(1/N) sum_t A_t log pi(a_t | s_t)`` over the
    samples of N trajectories with advantages A_t (math.md section 4).
    """

    def __init__(self, model: MLP) -> None:
        if not isinstance(model, MLP):
            raise TypeError(f"model must be a metafast.MLP, got {type(model).__name__}")
        if model.output != "identity":
            raise ValueError(f"the mean network needs output activation 'identity', got {model.output!r}")
        self.model = model

    @property
    def action_dim(self) -> int:
        return self.model.sizes[-1]

    @property
    def num_params(self) -> int:
        return self.model.num_params + self.action_dim

    def init(self, seed: int = 0, dtype: Any = "float64", log_std: float = 0.0) -> np.ndarray:
        """The model's initial parameters followed by ``log_std`` for every action dimension."""
        params = self.model.init(seed=seed, dtype=dtype)
        value = _validation.real(log_std, "log_std")
        return np.concatenate([params, np.full(self.action_dim, value, dtype=params.dtype)])

    def surrogate(self, theta: Any, states: Any, actions: Any, advantages: Any,
                  num_trajectories: int) -> tuple[np.floating, np.ndarray]:
        """Surrogate loss and its gradient with respect to theta."""
        theta, arrays = self._arrays(theta, states, actions, advantages, num_trajectories)
        loss, grad = _core.policy_surrogate(self.model._impl, theta, *arrays)
        return theta.dtype.type(loss), grad

    def surrogate_hvp(self, theta: Any, states: Any, actions: Any, advantages: Any, num_trajectories: int,
                      v: Any) -> np.ndarray:
        """Exact Hessian-vector product of the surrogate (R-operator, Gaussian seed)."""
        theta, arrays = self._arrays(theta, states, actions, advantages, num_trajectories)
        return _core.policy_surrogate_hvp(self.model._impl, theta, *arrays, _validation.floats(v, "v", theta.dtype))

    def _arrays(self, theta: Any, states: Any, actions: Any, advantages: Any,
                num_trajectories: int) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        theta = _validation.params(theta)
        count = _validation.integer(num_trajectories, "num_trajectories", minimum=1)
        advantages = _validation.floats(advantages, "advantages", theta.dtype)
        if not np.all(np.isfinite(advantages)):
            raise ValueError("advantages contains NaN or infinity")
        weights = advantages / theta.dtype.type(count)
        return theta, (_validation.floats(states, "states", theta.dtype),
                       _validation.floats(actions, "actions", theta.dtype), weights)
