"""2D navigation (Finn et al. 2017): the native task family of :class:`~metafast.rl.MetaSGDRL`,
stepped and sampled by the C++ core."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _core, _validation


class Navigation2D:
    """2D navigation (Finn et al. 2017), the task family of :class:`MetaSGDRL`.

    A point agent starts at (0, 0) and steers toward a goal drawn uniformly from
    ``goal_range`` squared. The observation is the position; the action, in [-1, 1] per
    coordinate, sets the velocity to ``max_action`` times it, clipped to
    ``[-max_action, max_action]`` (as the papers' code, through rllab's normalized
    environments, does); the reward is minus the Euclidean distance to the goal after the step.
    An episode ends after ``horizon`` steps or when both coordinates are within ``tolerance`` of
    the goal.

    Parameters
    ----------
    goal_range : (float, float)
        Range of each coordinate of the goals.
    max_action : float
        Largest velocity per coordinate and step.
    tolerance : float
        Distance per coordinate at which the goal counts as reached.
    horizon : int
        Steps per episode at most.
    reward : {"distance", "squared"}
        Minus the distance to the goal (what the MAML code uses), or minus the squared
        distance (as the MAML paper's text states; it penalises being far away more).
    scaled_actions : bool
        False: the action is the velocity itself, clipped to ``[-max_action, max_action]``
        (a policy then needs a standard deviation of about ``max_action`` for the noise not
        to swamp its steering).

    Notes
    -----
    Goals come from the counter-based generator: goal ``i`` of iteration ``k`` with seed ``s``
    is keyed by ``(s, k, i)``. The settings are read-only (the core holds them); environments
    with equal settings compare equal, and pickle and copy rebuild through the constructor.

    Examples
    --------
    >>> import metafast as mf
    >>> env = mf.rl.Navigation2D(goal_range=(-0.5, 0.5))
    >>> env.sample_goals(3, seed=0).shape
    (3, 2)
    """

    def __init__(self, goal_range: tuple[float, float] = (-0.5, 0.5), max_action: float = 0.1,
                 tolerance: float = 0.01, horizon: int = 100, reward: str = "distance",
                 scaled_actions: bool = True) -> None:
        # Types here; the core checks the ranges (one message for each).
        self._goal_range = _validation.two_reals(goal_range, "goal_range")
        self._max_action = _validation.real(max_action, "max_action")
        self._tolerance = _validation.real(tolerance, "tolerance")
        self._horizon = _validation.int64(horizon, "horizon")
        if reward not in ("distance", "squared"):
            raise ValueError(f"reward must be 'distance' or 'squared', got {reward!r}")
        self._reward = reward
        self._scaled_actions = _validation.boolean(scaled_actions, "scaled_actions")
        self._impl = _core.Navigation2D(*self._goal_range, self._max_action, self._tolerance, self._horizon,
                                        reward == "squared", self._scaled_actions)

    @property
    def goal_range(self) -> tuple[float, float]:
        """Range of each coordinate of the goals."""
        return self._goal_range

    @property
    def max_action(self) -> float:
        """Largest velocity per coordinate and step."""
        return self._max_action

    @property
    def tolerance(self) -> float:
        """Distance per coordinate at which the goal counts as reached."""
        return self._tolerance

    @property
    def horizon(self) -> int:
        """Steps per episode at most."""
        return self._horizon

    @property
    def reward(self) -> str:
        """"distance" or "squared"."""
        return self._reward

    @property
    def scaled_actions(self) -> bool:
        """Whether an action is a fraction of ``max_action`` (True) or the velocity itself."""
        return self._scaled_actions

    def _settings(self) -> dict[str, Any]:
        return dict(goal_range=self._goal_range, max_action=self._max_action, tolerance=self._tolerance,
                    horizon=self._horizon, reward=self._reward, scaled_actions=self._scaled_actions)

    def __repr__(self) -> str:
        return "Navigation2D(" + ", ".join(f"{name}={value!r}" for name, value in self._settings().items()) + ")"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Navigation2D):
            return NotImplemented
        return self._settings() == other._settings()

    def __hash__(self) -> int:
        return hash(tuple(self._settings().values()))

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle and copy rebuild through the constructor: a payload meets the checks that user
        # input meets, and every copy (copy.copy too) gets a core object of its own.
        return (type(self), tuple(self._settings().values()))

    def sample_goals(self, num_tasks: int, seed: int = 0, iteration: int = 0) -> np.ndarray:
        """The goals of ``num_tasks`` tasks, as training draws them.

        Parameters
        ----------
        num_tasks : int
            Number of goals, in [1, 2**24].
        seed : int
            The learner's seed.
        iteration : int
            The meta-iteration.

        Returns
        -------
        numpy.ndarray, shape (num_tasks, 2)
            Goal ``i`` is keyed by ``(seed, iteration, i)``.
        """
        return self._impl.sample_goals(_validation.count(num_tasks, "num_tasks"), _validation.seed(seed),
                                       _validation.seed(iteration, "iteration"))

    def step(self, positions: Any, actions: Any, goals: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One step for many agents at once.

        Parameters
        ----------
        positions, actions, goals : array_like, shape (agents, 2)
            Where the agents are, the velocities they choose (clipped) and their goals: floats or
            integers of any dtype, converted to the environment's float64 (other dtypes, such as
            bool, are a TypeError).

        Returns
        -------
        positions : numpy.ndarray, shape (agents, 2)
            The new positions.
        rewards : numpy.ndarray, shape (agents,)
            The rewards of the step.
        reached : numpy.ndarray of bool, shape (agents,)
            Whether each agent is now within ``tolerance`` of its goal.
        """
        arrays = [_validation.numbers_as(a, name, np.dtype(np.float64))
                  for a, name in ((positions, "positions"), (actions, "actions"), (goals, "goals"))]
        return self._impl.step(*arrays)
