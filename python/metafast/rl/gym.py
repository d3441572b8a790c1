"""Bring your own environment: GymTasks, a task family of objects with the Gymnasium interface,
and the backend that runs MetaSGDRL on them. The environment steps in Python, one trajectory
after another; the surrogate's gradient and Hessian-vector product run in the core
(``policy_surrogate``, ``policy_surrogate_hvp``), the advantages by the core's rules
(:mod:`.advantages`), and the meta-gradient through the inner steps in the core's order of
operations (tests/test_rl_gym.py holds both equal to the core on the core's trajectories)."""

from __future__ import annotations

import copy
import math
import pickle
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from .. import _core, _validation
from .._optimizers import MetaOptimizer
from .advantages import surrogate_weights
from .policy import GaussianPolicy

INTERFACE = "an environment with the Gymnasium interface (reset(seed=None) and step(action))"


class GymTasks:
    """Bring your own environment: a task family of objects with the Gymnasium interface.

    Parameters
    ----------
    sample_task : callable
        ``sample_task(rng) -> environment``: a new task, from a ``numpy.random.Generator``.
        The environment has ``reset(seed=None) -> (observation, info)`` and
        ``step(action) -> (observation, reward, terminated, truncated, info)``; observations
        and actions are 1-D float arrays, rewards finite real numbers.
    horizon : int
        Steps per episode at most.

    Notes
    -----
    :class:`MetaSGDRL` runs such tasks on a slower path: the environment steps in Python, one
    trajectory after another, while the policy, the surrogate, its gradient and its
    Hessian-vector product still run in C++. A GymTasks pickles when its ``sample_task`` does
    (a function defined at the top level of a module, not a lambda); copies share it.

    Examples
    --------
    >>> import numpy as np, metafast as mf
    >>> class LineWorld:  # a point on a line steers toward its goal
    ...     def __init__(self, goal):
    ...         self.goal, self.x = goal, 0.0
    ...     def reset(self, seed=None):
    ...         self.x = 0.0
    ...         return np.array([self.x]), {}
    ...     def step(self, action):
    ...         self.x += float(np.clip(action[0], -0.1, 0.1))
    ...         return np.array([self.x]), -abs(self.x - self.goal), False, False, {}
    >>> tasks = mf.rl.GymTasks(lambda rng: LineWorld(rng.uniform(-0.5, 0.5)), horizon=20)
    >>> learner = mf.rl.MetaSGDRL(mf.MLP([1, 16, 1]), env=tasks, inner_trajectories=4)
    >>> learner.fit(iterations=2, meta_batch=2, progress=False).shape
    (2,)
    """

    def __init__(self, sample_task: Callable[[np.random.Generator], Any], horizon: int = 100) -> None:
        if not callable(sample_task):
            raise TypeError(f"sample_task must be a callable sample_task(rng) -> environment, got "
                            f"{type(sample_task).__name__}")
        self._sample_task = sample_task
        self._horizon = _validation.integer(horizon, "horizon", minimum=1, maximum=2**24)

    @property
    def sample_task(self) -> Callable[[np.random.Generator], Any]:
        """``sample_task(rng) -> environment``."""
        return self._sample_task

    @property
    def horizon(self) -> int:
        """Steps per episode at most."""
        return self._horizon

    def __repr__(self) -> str:
        return f"GymTasks({_callable_name(self._sample_task)}, horizon={self._horizon})"

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        # Rebuilt through the constructor. The user's callable is pickled by reference; when it
        # cannot be (a lambda, a local function), say so rather than let pickle's lookup fail.
        try:
            pickle.dumps(self._sample_task, protocol if isinstance(protocol, int) else pickle.DEFAULT_PROTOCOL)
        except Exception as error:  # noqa: BLE001 - whatever pickle raises, one clear error
            raise TypeError(f"this GymTasks cannot be pickled: its sample_task {_callable_name(self._sample_task)} "
                            f"cannot ({type(error).__name__}: {error}); define sample_task at the top level of a "
                            "module (not as a lambda or inside a function) to pickle it") from None
        return (type(self), (self._sample_task, self._horizon))

    def __copy__(self) -> GymTasks:
        return type(self)(self._sample_task, self._horizon)

    def __deepcopy__(self, memo: dict[int, Any]) -> GymTasks:
        return type(self)(copy.deepcopy(self._sample_task, memo), self._horizon)

    def sample(self, rng: np.random.Generator) -> Any:
        """A new task: ``sample_task(rng)``, checked to be an environment."""
        return checked_environment(self._sample_task(rng), "GymTasks' sample_task(rng) returned")


def _callable_name(function: Any) -> str:
    name = getattr(function, "__qualname__", None)
    module = getattr(function, "__module__", None)
    return f"{module}.{name}" if isinstance(name, str) and module else repr(function)


def checked_environment(env: Any, what: str) -> Any:
    """``env`` when it has callable ``reset`` and ``step``; otherwise a TypeError saying ``what``
    gave it and what was expected."""
    if not (callable(getattr(env, "reset", None)) and callable(getattr(env, "step", None))):
        raise TypeError(f"{what} {type(env).__name__} {env!r:.80}: expected {INTERFACE}")
    return env


# ------------------------------------------------------------- the environment's outputs
def _observation(value: Any, call: str, width: int) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"the environment's {call} returned an observation of type {type(value).__name__} "
                        f"({value!r:.80}); expected a 1-D array of {width} numbers (the policy model's inputs)") from None
    if array.shape != (width,):
        raise ValueError(f"the environment's {call} returned an observation of shape {array.shape}; expected shape "
                         f"({width},) (the policy model's inputs)")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"the environment's {call} returned an observation with NaN or infinity ({array!r:.80}); "
                         "expected finite numbers")
    return array


def _reward(value: Any) -> float:
    try:
        if isinstance(value, (str, bytes)) or np.ndim(value) != 0:
            raise TypeError
        reward = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"the environment's step returned a reward of type {type(value).__name__} ({value!r:.80}); "
                        "expected a real number") from None
    if not math.isfinite(reward):
        raise ValueError(f"the environment's step returned a reward of {reward}; expected a finite number")
    return reward


def _result(value: Any, call: str, fields: str) -> tuple[Any, ...]:
    size = fields.count(",") + 1
    if not isinstance(value, tuple) or len(value) != size:
        got = f"a tuple of {len(value)}" if isinstance(value, tuple) else type(value).__name__
        raise TypeError(f"the environment's {call} must return ({fields}), the Gymnasium interface; got {got}")
    return value


class Trajectories(NamedTuple):
    """Trajectories laid end to end: each row one step."""

    observations: np.ndarray  # (rows, observations), float64
    actions: np.ndarray  # (rows, action_dim), float64
    rewards: np.ndarray  # (rows,), float64
    lengths: list[int]  # steps of each trajectory


def collect(policy: GaussianPolicy, theta: np.ndarray, env: Any, trajectories: int, horizon: int,
            rng: np.random.Generator) -> Trajectories:
    """``trajectories`` episodes of the Gaussian policy theta in ``env``, each of at most
    ``horizon`` steps, the environment seeded and the action noise drawn from ``rng``; every
    output of the environment checked."""
    model = policy.model
    params = theta[: model.num_params].astype(np.float64)
    std = np.exp(theta[model.num_params:].astype(np.float64))
    width = model.sizes[0]
    observations, actions, rewards, lengths = [], [], [], []
    for _ in range(trajectories):
        observation = _observation(_result(env.reset(seed=int(rng.integers(2**31))), "reset",
                                           "observation, info")[0], "reset", width)
        length = 0
        for _ in range(horizon):
            mean = model.forward(params, observation[None])[0]
            action = mean + std * rng.normal(size=mean.shape)
            observations.append(observation)
            actions.append(action)
            result = _result(env.step(action), "step", "observation, reward, terminated, truncated, info")
            rewards.append(_reward(result[1]))
            length += 1
            if result[2] or result[3]:
                break
            observation = _observation(result[0], "step", width)
        lengths.append(length)
    return Trajectories(np.array(observations), np.array(actions), np.array(rewards), lengths)


Samples = tuple[np.ndarray, np.ndarray, np.ndarray]  # the surrogate's (states, actions, weights A_t / N)
Rollout = Callable[[np.ndarray], tuple[Samples, float]]  # theta -> (its samples, their mean return)


def task_meta_gradient(policy: GaussianPolicy, theta: np.ndarray, alpha: np.ndarray, rollout: Rollout,
                       inner_steps: int, first_order: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """One task's meta-gradient ``(g_theta, g_alpha)`` and the mean return after adaptation, as
    the core's ``rl_task_meta_gradient`` computes it: for each inner step j a rollout at
    theta_j and theta_{j+1} = theta_j - alpha * grad_j; a rollout at the adapted theta_k; then
    back through the steps on their fixed samples, g_alpha gathering -grad_j * g and
    g <- g - H_j (alpha * g) (``first_order`` keeps g)."""
    mlp = policy.model._impl
    path, adapted = [], theta
    for _ in range(inner_steps):
        samples, _ = rollout(adapted)
        grad = _core.policy_surrogate(mlp, adapted, *samples)[1]
        path.append((adapted, samples, grad))
        adapted = adapted - alpha * grad
    samples, score = rollout(adapted)
    g = _core.policy_surrogate(mlp, adapted, *samples)[1]
    g_alpha = np.zeros_like(g)
    for at, samples, grad in reversed(path):
        g_alpha -= grad * g
        if not first_order:
            g = g - _core.policy_surrogate_hvp(mlp, at, *samples, alpha * g)
    return g, g_alpha, score


class GymBackend:
    """MetaSGDRL's slow path for GymTasks: the interface of the core's learner, with the
    environment in Python and the policy maths in the core."""

    def __init__(self, policy: GaussianPolicy, tasks: GymTasks, trajectories: int, gamma: float, first_order: bool,
                 normalize: bool, optimizer: str, lr: float, beta1: float, beta2: float, eps: float, seed: int,
                 dtype: np.dtype, alpha_lr: float, inner_steps: int, gae_lambda: float) -> None:
        # The ranges the core's learner checks for Navigation2D, with its messages.
        _core.check_rl_settings(trajectories, gamma, optimizer, lr, beta1, beta2, eps, inner_steps, gae_lambda, alpha_lr)
        self.policy, self.tasks, self.seed, self.dtype = policy, tasks, seed, dtype
        self.trajectories, self.gamma, self.normalize, self.gae_lambda = trajectories, gamma, normalize, gae_lambda
        self.inner_steps, self.first_order = inner_steps, first_order
        size = 2 * policy.num_params
        rates = np.repeat([lr, alpha_lr], policy.num_params)  # theta's, then alpha's
        self.optimizer = MetaOptimizer(optimizer, size, dtype, rates, (beta1, beta2), eps)
        self.params = np.zeros(size, dtype=dtype)

    @property
    def num_threads(self) -> int:
        """Python environments run on one thread, whatever is asked."""
        return 1

    @num_threads.setter
    def num_threads(self, value: int) -> None:
        pass

    def get_params(self) -> tuple[np.ndarray, np.ndarray]:
        q = self.policy.num_params
        return self.params[:q].copy(), self.params[q:].copy()

    def set_params(self, theta: np.ndarray, alpha: np.ndarray) -> None:
        q = self.policy.num_params
        for name, value in (("theta", theta), ("alpha", alpha)):
            if value.shape != (q,):
                raise ValueError(f"{name} must have shape ({q},), got {value.shape}")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"{name} contains NaN or infinity")
        self.params = np.concatenate([theta, alpha]).astype(self.dtype)

    def get_optimizer_state(self) -> tuple[np.ndarray, np.ndarray, int]:
        m, v, step = self.optimizer.state
        return m.copy(), v.copy(), step

    def set_optimizer_state(self, m: np.ndarray, v: np.ndarray, step: int) -> None:
        self.optimizer.state = (np.asarray(m, dtype=self.dtype).copy(), np.asarray(v, dtype=self.dtype).copy(),
                                int(step))

    def rollout(self, theta: np.ndarray, env: Any, rng: np.random.Generator,
                trajectories: int | None = None) -> tuple[Samples, float]:
        """The surrogate's samples of fresh trajectories of theta, in theta's dtype (weights
        computed in float64 and rounded once, as the core does), and their mean return."""
        count = trajectories or self.trajectories
        run = collect(self.policy, theta, env, count, self.tasks.horizon, rng)
        weights = surrogate_weights(run.rewards, run.observations, run.lengths, self.gamma, self.gae_lambda,
                                    self.normalize)
        dtype = theta.dtype
        samples = (run.observations.astype(dtype), run.actions.astype(dtype), weights.astype(dtype))
        return samples, float(run.rewards.sum()) / count

    def _adapted(self, theta: np.ndarray, alpha: np.ndarray, env: Any, rng: np.random.Generator, steps: range,
                 trajectories: int | None = None, alpha_scales: Sequence[float] = (1.0,)) -> np.ndarray:
        """theta after adaptation steps ``steps`` (their numbers from 0), each on ``trajectories``
        trajectories with alpha scaled by ``alpha_scales`` (the last repeating), as the core."""
        for step in steps:
            samples, _ = self.rollout(theta, env, rng, trajectories)
            scale = alpha_scales[min(step, len(alpha_scales) - 1)]
            scaled = alpha if scale == 1.0 else alpha.dtype.type(scale) * alpha
            theta = theta - scaled * _core.policy_surrogate(self.policy.model._impl, theta, *samples)[1]
        return theta

    def fit(self, first_iteration: int, count: int, meta_batch: int) -> tuple[np.ndarray, bool, bool]:
        q = self.policy.num_params
        returns = []
        for k in range(count):
            theta, alpha = self.params[:q], self.params[q:]
            grads, scores = [], []
            for i in range(meta_batch):
                rng = np.random.default_rng([self.seed, first_iteration + k, i])
                env = self.tasks.sample(rng)
                g_theta, g_alpha, score = task_meta_gradient(
                    self.policy, theta, alpha, lambda at: self.rollout(at, env, rng),  # noqa: B023 - called here
                    self.inner_steps, self.first_order)
                grads.append(np.concatenate([g_theta, g_alpha]))
                scores.append(score)
            mean_grad = np.sum(grads, axis=0) / meta_batch
            params = None
            if np.all(np.isfinite(mean_grad)) and np.all(np.isfinite(scores)):
                params = self.optimizer.update(self.params, mean_grad)
            if params is None:
                return np.array(returns), True, False
            self.params = params
            returns.append(float(np.mean(scores)))
        return np.array(returns), False, False

    def evaluate(self, seed: int, num_tasks: int, steps: list[int], trajectories: int, inner_trajectories: int = 0,
                 alpha_scales: Sequence[float] = (1.0,)) -> np.ndarray:
        q = self.policy.num_params
        returns = np.empty((num_tasks, len(steps)))
        for i in range(num_tasks):
            rng = np.random.default_rng([seed, 0, i])
            env = self.tasks.sample(rng)
            theta, done = self.params[:q].copy(), 0
            for c, target in enumerate(steps):
                theta = self._adapted(theta, self.params[q:], env, rng, range(done, target), inner_trajectories or None,
                                      alpha_scales)
                done = target
                returns[i, c] = self.rollout(theta, env, rng, trajectories)[1]
        return returns

    def adapt(self, env: Any, steps: int, seed: int, iteration: int, inner_trajectories: int = 0,
              alpha_scales: Sequence[float] = (1.0,)) -> np.ndarray:
        q = self.policy.num_params
        rng = np.random.default_rng([seed, iteration, 0])
        return self._adapted(self.params[:q].copy(), self.params[q:], env, rng, range(steps), inner_trajectories or None,
                             alpha_scales)
