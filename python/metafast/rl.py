"""Meta-SGD for reinforcement learning: the 2D navigation task family, a Gaussian policy with
its policy-gradient surrogate (gradient and exact Hessian-vector product), and the MetaSGDRL
learner with native rollouts, all computed by the C++ core."""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np

from . import _core, _memory, _validation, io
from ._docs import shared_docs
from ._optimizers import MetaOptimizer
from .learner import Callback
from .evaluation import EvaluationReport
from .inner_learning_rates import InnerLearningRates, default_alpha_lr
from .mlp import initial_theta
from .mlp import MLP


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
    is keyed by ``(s, k, i)``.
    """

    def __init__(self, goal_range: tuple[float, float] = (-0.5, 0.5), max_action: float = 0.1,
                 tolerance: float = 0.01, horizon: int = 100, reward: str = "distance",
                 scaled_actions: bool = True) -> None:
        # Types here; the core checks the ranges (one message for each).
        self.goal_range = _validation.two_reals(goal_range, "goal_range")
        self.max_action = _validation.real(max_action, "max_action")
        self.tolerance = _validation.real(tolerance, "tolerance")
        self.horizon = _validation.int64(horizon, "horizon")
        if reward not in ("distance", "squared"):
            raise ValueError(f"reward must be 'distance' or 'squared', got {reward!r}")
        self.reward = reward
        self.scaled_actions = _validation.boolean(scaled_actions, "scaled_actions")
        self._impl = _core.Navigation2D(*self.goal_range, self.max_action, self.tolerance, self.horizon,
                                        reward == "squared", self.scaled_actions)

    def sample_goals(self, num_tasks: int, seed: int = 0, iteration: int = 0) -> np.ndarray:
        """The goals of ``num_tasks`` tasks, as training draws them.

        Parameters
        ----------
        num_tasks : int
            Number of goals.
        seed : int
            The learner's seed.
        iteration : int
            The meta-iteration.

        Returns
        -------
        numpy.ndarray, shape (num_tasks, 2)
            Goal ``i`` is keyed by ``(seed, iteration, i)``.
        """
        return self._impl.sample_goals(_validation.integer(num_tasks, "num_tasks", minimum=1),
                                       _validation.integer(seed, "seed", minimum=0),
                                       _validation.integer(iteration, "iteration", minimum=0))

    def step(self, positions: Any, actions: Any, goals: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One step for many agents at once.

        Parameters
        ----------
        positions, actions, goals : array_like, shape (agents, 2)
            Where the agents are, the velocities they choose (clipped) and their goals.

        Returns
        -------
        positions : numpy.ndarray, shape (agents, 2)
            The new positions.
        rewards : numpy.ndarray, shape (agents,)
            The rewards of the step.
        reached : numpy.ndarray of bool, shape (agents,)
            Whether each agent is now within ``tolerance`` of its goal.
        """
        arrays = [_validation.floats(a, name, np.dtype(np.float64), owner="the environment")
                  for a, name in ((positions, "positions"), (actions, "actions"), (goals, "goals"))]
        return self._impl.step(*arrays)


class GaussianPolicy:
    """``pi(a | s) = N(mu(s), diag(exp(2 log_std)))``, the policy of :class:`MetaSGDRL`.

    ``model`` gives the mean; a learned state-independent ``log_std``, one per action
    dimension, follows the model's parameters in the flat vector ``theta`` (so it has its own
    Meta-SGD alpha).

    Parameters
    ----------
    model : MLP
        The mean network; its output activation must be "identity".

    Notes
    -----
    The surrogate on fixed samples is ``L = -(1/N) sum_t A_t log pi(a_t | s_t)`` over the
    samples of N trajectories with advantages A_t (docs/math.md, section 4).
    """

    def __init__(self, model: MLP) -> None:
        if not isinstance(model, MLP):
            raise TypeError(f"model must be a metafast.MLP, got {type(model).__name__}")
        if model.output != "identity":
            raise ValueError(f"the mean network needs output activation 'identity', got {model.output!r}")
        self.model = model

    @property
    def action_dim(self) -> int:
        """Dimensions of an action (the model's outputs)."""
        return self.model.sizes[-1]

    @property
    def num_params(self) -> int:
        """Length of theta: the model's parameters and one log_std per action dimension."""
        return self.model.num_params + self.action_dim

    def init(self, seed: int = 0, dtype: Any = "float64", log_std: float = 0.0) -> np.ndarray:
        """Initial policy parameters.

        Parameters
        ----------
        seed : int
            Seed of the model's initial parameters (``model.init(seed)``).
        dtype : {"float32", "float64"}
            Their precision.
        log_std : float
            The initial log standard deviation of every action dimension.

        Returns
        -------
        numpy.ndarray, shape (num_params,)
            The model's initial parameters followed by ``log_std`` for every action dimension.
        """
        params = self.model.init(seed=seed, dtype=dtype)
        value = _validation.real(log_std, "log_std")
        return np.concatenate([params, np.full(self.action_dim, value, dtype=params.dtype)])

    def surrogate(self, theta: Any, states: Any, actions: Any, advantages: Any,
                  num_trajectories: int) -> tuple[np.floating, np.ndarray]:
        """The surrogate loss and its gradient.

        Parameters
        ----------
        theta : numpy.ndarray, shape (num_params,)
            Policy parameters (float32 or float64; the samples are converted to its dtype).
        states : array_like, shape (samples, observations)
            The states of all samples.
        actions : array_like, shape (samples, action_dim)
            The actions taken in them.
        advantages : array_like, shape (samples,)
            Their advantages (finite).
        num_trajectories : int
            N, the trajectories the samples come from.

        Returns
        -------
        loss : numpy.floating
            ``-(1/N) sum_t A_t log pi(a_t | s_t)``.
        grad : numpy.ndarray, shape (num_params,)
            Its gradient with respect to theta.
        """
        theta, arrays = self._arrays(theta, states, actions, advantages, num_trajectories)
        loss, grad = _core.policy_surrogate(self.model._impl, theta, *arrays)
        return theta.dtype.type(loss), grad

    def surrogate_hvp(self, theta: Any, states: Any, actions: Any, advantages: Any, num_trajectories: int,
                      v: Any) -> np.ndarray:
        """The exact Hessian-vector product of the surrogate (R-operator, Gaussian seed).

        Parameters
        ----------
        theta, states, actions, advantages, num_trajectories
            As for :meth:`surrogate`.
        v : array_like, shape (num_params,)
            The vector, in theta's dtype.

        Returns
        -------
        numpy.ndarray, shape (num_params,)
            ``H v``, with ``H`` the surrogate's Hessian with respect to theta.
        """
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


class GymTasks:
    """Bring your own environment: a task family of objects with the Gymnasium interface.

    Parameters
    ----------
    sample_task : callable
        ``sample_task(rng) -> environment``: a new task, from a ``numpy.random.Generator``.
        The environment has ``reset(seed=None) -> (observation, info)`` and
        ``step(action) -> (observation, reward, terminated, truncated, info)``; observations
        and actions are 1-D float arrays.
    horizon : int
        Steps per episode at most.

    Notes
    -----
    :class:`MetaSGDRL` runs such tasks on a slower path: the environment steps in Python, one
    trajectory after another, while the policy, the surrogate, its gradient and its
    Hessian-vector product still run in C++.
    """

    def __init__(self, sample_task: Any, horizon: int = 100) -> None:
        if not callable(sample_task):
            raise TypeError("sample_task must be a callable sample_task(rng) -> environment")
        self.sample_task = sample_task
        self.horizon = _validation.integer(horizon, "horizon", minimum=1, maximum=2**24)


def _python_rollout(policy: GaussianPolicy, theta: np.ndarray, env: Any, trajectories: int, horizon: int,
                    gamma: float, normalize: bool, rng: np.random.Generator,
                    gae_lambda: float = 1.0) -> tuple[tuple[np.ndarray, ...], float]:
    """Trajectories of a Python environment: the surrogate's (states, actions, weights) with
    returns-to-go minus MAML's linear feature baseline (or GAE(gae_lambda) on it), and the
    mean return."""
    params = theta[: policy.model.num_params].astype(np.float64)
    std = np.exp(theta[policy.model.num_params:].astype(np.float64))
    states, actions, returns, features, lengths, all_rewards, total = [], [], [], [], [], [], 0.0
    for _ in range(trajectories):
        observation, _ = env.reset(seed=int(rng.integers(2**31)))
        rewards = []
        for t in range(horizon):
            observation = np.asarray(observation, dtype=np.float64)
            mean = policy.model.forward(params, observation[None])[0]
            action = mean + std * rng.normal(size=mean.shape)
            states.append(observation)
            actions.append(action)
            tau = t / 100.0
            features.append(np.concatenate([observation, observation**2, [tau, tau**2, tau**3, 1.0]]))
            observation, reward, terminated, truncated, _ = env.step(action)
            rewards.append(float(reward))
            if terminated or truncated:
                break
        future, backwards = 0.0, []
        for reward in reversed(rewards):
            future = reward + gamma * future
            backwards.append(future)
        returns.extend(backwards[::-1])
        lengths.append(len(rewards))
        all_rewards.extend(rewards)
        total += sum(rewards)
    returns, features = np.array(returns), np.array(features)
    baseline = features @ np.linalg.solve(features.T @ features + 1e-5 * np.eye(features.shape[1]), features.T @ returns)
    advantages = returns - baseline
    if gae_lambda < 1:
        advantages = generalized_advantages(np.array(all_rewards), baseline, lengths, gamma, gae_lambda)
    if normalize:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    dtype = theta.dtype
    return ((np.array(states, dtype=dtype), np.array(actions, dtype=dtype), advantages.astype(dtype)),
            total / trajectories)


def generalized_advantages(rewards: np.ndarray, values: np.ndarray, lengths: list[int], gamma: float,
                           gae_lambda: float) -> np.ndarray:
    """GAE(lambda) of trajectories laid end to end (``lengths`` steps each):
    A_t = delta_t + gamma lambda A_{t+1}, delta_t = r_t + gamma b_{t+1} - b_t, with b = 0 after
    a trajectory's last step."""
    advantages, start = np.empty_like(values), 0
    for length in lengths:
        advantage, next_value = 0.0, 0.0
        for t in reversed(range(start, start + length)):
            advantage = rewards[t] + gamma * next_value - values[t] + gamma * gae_lambda * advantage
            advantages[t], next_value = advantage, values[t]
        start += length
    return advantages


class _PythonBackend:
    """MetaSGDRL's slow path for GymTasks: the same interface as the core's learner, with the
    environment in Python and the policy maths in C++ (through GaussianPolicy)."""

    num_threads = 1

    def __init__(self, policy: GaussianPolicy, tasks: GymTasks, trajectories: int, gamma: float, first_order: bool,
                 normalize: bool, optimizer: str, lr: float, beta1: float, beta2: float, eps: float, seed: int,
                 dtype: np.dtype, alpha_lr: float, inner_steps: int, gae_lambda: float) -> None:
        _core.check_rl_settings(trajectories, gamma, optimizer, lr, beta1, beta2, eps)
        if not 1 <= inner_steps <= 100:
            raise ValueError(f"inner_steps must lie in [1, 100], got {inner_steps}")
        self.inner_steps = inner_steps
        self.policy, self.tasks, self.seed, self.dtype = policy, tasks, seed, dtype
        if not 0 <= gae_lambda <= 1:
            raise ValueError(f"gae_lambda must lie in [0, 1], got {gae_lambda}")
        self.rollout_settings = (trajectories, tasks.horizon, gamma, normalize, gae_lambda)
        self.first_order = first_order
        size = 2 * policy.num_params
        rates = np.repeat([lr, alpha_lr], policy.num_params)  # theta's, then alpha's
        self.optimizer = MetaOptimizer(optimizer, size, dtype, rates, (beta1, beta2), eps)
        self.params = np.zeros(size, dtype=dtype)

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

    def _rollout(self, theta: np.ndarray, env: Any, rng: np.random.Generator, trajectories: int | None = None):
        count, horizon, gamma, normalize, gae_lambda = self.rollout_settings
        return _python_rollout(self.policy, theta, env, trajectories or count, horizon, gamma, normalize, rng,
                               gae_lambda)

    def _adapt_step(self, theta: np.ndarray, alpha: np.ndarray, env: Any, rng: np.random.Generator):
        train, _ = self._rollout(theta, env, rng)
        grad = self.policy.surrogate(theta, *train, self.rollout_settings[0])[1]
        return theta - alpha * grad, train, grad

    def fit(self, first_iteration: int, count: int, meta_batch: int) -> tuple[np.ndarray, bool, bool]:
        q, n = self.policy.num_params, self.rollout_settings[0]
        returns = []
        for k in range(count):
            theta, alpha = self.params[:q], self.params[q:]
            grads, scores = [], []
            for i in range(meta_batch):
                rng = np.random.default_rng([self.seed, first_iteration + k, i])
                env = self.tasks.sample_task(rng)
                path, adapted = [], theta  # (theta_j, its samples, the gradient at it) of each step
                for _ in range(self.inner_steps):
                    step_from = adapted
                    adapted, train, grad = self._adapt_step(step_from, alpha, env, rng)
                    path.append((step_from, train, grad))
                valid, score = self._rollout(adapted, env, rng)
                v = self.policy.surrogate(adapted, *valid, n)[1]
                g_alpha = np.zeros_like(v)
                for at, train, grad in reversed(path):
                    g_alpha -= grad * v
                    if not self.first_order:
                        v = v - self.policy.surrogate_hvp(at, *train, n, alpha * v)
                grads.append(np.concatenate([v, g_alpha]))
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

    def evaluate(self, seed: int, num_tasks: int, steps: list[int], trajectories: int) -> np.ndarray:
        q = self.policy.num_params
        returns = np.empty((num_tasks, len(steps)))
        for i in range(num_tasks):
            rng = np.random.default_rng([seed, 0, i])
            env = self.tasks.sample_task(rng)
            theta, done = self.params[:q].copy(), 0
            for c, target in enumerate(steps):
                for _ in range(target - done):
                    theta = self._adapt_step(theta, self.params[q:], env, rng)[0]
                done = target
                returns[i, c] = self._rollout(theta, env, rng, trajectories)[1]
        return returns

    def adapt(self, env: Any, steps: int, seed: int, iteration: int) -> np.ndarray:
        q = self.policy.num_params
        rng = np.random.default_rng([seed, iteration, 0])
        theta = self.params[:q].copy()
        for _ in range(steps):
            theta = self._adapt_step(theta, self.params[q:], env, rng)[0]
        return theta


@shared_docs
def warn_if_returns_fell(history: np.ndarray) -> None:
    """Warns (RuntimeWarning) when a fit ended with clearly lower returns than it began with:
    the mean of its last tenth of meta-iterations more than three standard errors below that
    of its first tenth. A policy gradient pushed too far (too large a meta_lr or alpha) saturates
    the policy's actions, after which its gradients carry no signal and it drifts away from
    every goal; the history shows it, but a fit must not end that way silently."""
    window = len(history) // 10
    if window < 5:
        return
    first, last = history[:window], history[-window:]
    spread = np.sqrt((first.var(ddof=1) + last.var(ddof=1)) / window)
    if last.mean() < first.mean() - 3 * spread:
        warnings.warn(f"meta-training lowered the mean return after adaptation from {first.mean():.4g} (the first "
                      f"{window} meta-iterations of this fit) to {last.mean():.4g} (the last {window}): the policy "
                      "is collapsing; try a smaller meta_lr or alpha_init", RuntimeWarning, stacklevel=3)


class MetaSGDRL(InnerLearningRates):
    """Meta-SGD for reinforcement learning (Li et al. 2017, section 4.3) on 2D navigation.

    For each task (a goal), ``inner_trajectories`` trajectories are sampled with theta; the
    surrogate ``L = -(1/N) sum A_t log pi(a_t | s_t)`` (advantages: GAE(``gae_lambda``) with
    ``gamma`` on a linear feature baseline fitted per batch) gives the inner step
    ``theta' = theta - alpha * grad L_train(theta)``; fresh trajectories sampled with theta'
    give the outer surrogate, whose exact gradient with respect to theta and alpha (through the
    inner step, with the surrogate's Hessian-vector product; ``first_order`` drops it) updates
    ``[theta, alpha]`` with Adam or SGD, averaged over ``meta_batch`` tasks per iteration.

    theta is the policy network's parameters followed by a learned log standard deviation per
    action dimension (so it has its own alpha entries). The history records the mean return
    after adaptation of each meta-iteration (higher is better).

    Parameters
    ----------
    model : MLP
        The mean network, identity output; for Navigation2D, 2 inputs (the position) to 2
        outputs; the papers use ``MLP([2, 100, 100, 2], activation="relu")``.
    env : Navigation2D or GymTasks, optional
        The task family (default ``Navigation2D()``), native; or your own environments
        (:class:`GymTasks`), on a slower path: environment steps in Python, one trajectory after
        another, policy maths in C++; one thread, tasks keyed by ``(seed, iteration, task)``
        through ``numpy.random.default_rng``.
    inner_trajectories : int
        Trajectories per rollout, for the inner step and for the outer surrogate.
    gamma : float
        Discount of the returns-to-go, in [0, 1].
    alpha_init : float
        Initial inner learning rate of every parameter (at least 0). The surrogate sums over the
        steps of a trajectory, so its gradient is about the horizon times that of a per-step
        mean (the MAML code's): 0.0015 here is a fast learning rate of 0.15 there (MAML's is 0.1).
        Lower-variance GAE advantages take this larger step well.
    log_std_init : float
        Initial log standard deviation of the policy (in the action units of ``env``: with
        Navigation2D's scaled actions, -0.7 is a noise of 0.5 of the largest velocity: wide
        enough for the 20 trajectories of one step to tell where the goal is).
    first_order : bool
        Drop the surrogate's Hessian-vector product from the meta-gradient.
    init : str, (str, float) or array_like
        The mean network's initial parameters: a scheme of :meth:`MLP.init` (``"glorot"``, the
        default, as the MAML code's policies; ``"he"``, ``"pytorch"``, ``("normal", std)``) or
        the parameters themselves. Glorot keeps the initial mean actions small, so the untrained
        policy barely moves; He's larger ones drive it away from every goal.
    alpha_lr : float, optional
        alpha's meta learning rate; by default ``meta_lr * alpha_init`` (``meta_lr`` when
        ``alpha_init`` is 0): Adam moves every entry by about its learning rate per update,
        whatever its size, so alpha moves at the pace theta moves relative to its size.
    inner_steps : int
        Adaptation steps in meta-training, each on ``inner_trajectories`` fresh trajectories of
        the policy adapted so far; the meta-gradient goes back through all of them on their
        samples (as in the papers' code, the dependence of the sampling itself on theta is not
        differentiated). Meta-train with the number of steps you will adapt with.
    gae_lambda : float, optional
        In [0, 1]. 1: advantages are returns-to-go minus the baseline (the papers'). Below 1,
        generalized advantage estimation on the baseline: ``A_t = sum_l (gamma lambda)^l
        delta_{t+l}``, ``delta_t = r_t + gamma b(s_{t+1}) - b(s_t)``: less variance, more bias
        from the linear baseline. By default 0.65 with one inner step (on 2D navigation the one
        step on 20 trajectories then lands closer to the goal: about -10.5 after it against
        -11.8 with 1) and 1 with more (the bias spoils the later, finer steps).
    normalize_advantages : bool
        Standardise the advantages of each batch (mean 0, standard deviation 1), as the MAML
        code does; the surrogate's scale then does not depend on the size of the returns.
    {meta-optimizer parameters}
    dtype : {"float32", "float64"}
        Precision of the policy's parameters and of its computations.
    seed : int
        Seeds theta (``model.init(seed)``), the goals and the action noise of ``fit``.
    num_threads : int or None
        Threads over the tasks of a meta-batch (None: all cores; GymTasks run on one).
        Results do not depend on it.
    {adam parameters}

    Attributes
    ----------
    policy : GaussianPolicy
        The policy, around ``model``.
    env : Navigation2D or GymTasks
        The task family.
    """

    _progress_label = "Meta-SGD RL"
    _progress_metric = "return"

    def __init__(self, model: MLP, env: Navigation2D | GymTasks | None = None, inner_trajectories: int = 20,
                 gamma: float = 0.99, alpha_init: float = 0.0015, log_std_init: float = -0.7, first_order: bool = False,
                 normalize_advantages: bool = True, meta_optimizer: str = "adam", meta_lr: float = 1e-3,
                 dtype: Any = "float32", seed: int = 0, num_threads: int | None = None,
                 adam_betas: tuple[float, float] = (0.9, 0.999), adam_eps: float = 1e-8,
                 alpha_lr: float | None = None, init: Any = "glorot", inner_steps: int = 1,
                 gae_lambda: float | None = None) -> None:
        super().__init__(model, dtype, seed)
        self.policy = GaussianPolicy(model)
        self.env = Navigation2D() if env is None else env
        if not isinstance(self.env, (Navigation2D, GymTasks)):
            raise TypeError(f"env must be a metafast.rl.Navigation2D or GymTasks, got {type(self.env).__name__}")
        self._settings = dict(
            # Types here; the core checks the ranges (one message for each).
            inner_trajectories=_validation.int64(inner_trajectories, "inner_trajectories"),
            gamma=_validation.real(gamma, "gamma"), alpha_init=_validation.real(alpha_init, "alpha_init", minimum=0.0),
            log_std_init=_validation.real(log_std_init, "log_std_init"),
            first_order=_validation.boolean(first_order, "first_order"),
            normalize_advantages=_validation.boolean(normalize_advantages, "normalize_advantages"),
            meta_optimizer=_validation.string(meta_optimizer, "meta_optimizer"),
            meta_lr=_validation.real(meta_lr, "meta_lr"),
            adam_betas=_validation.two_reals(adam_betas, "adam_betas"),
            adam_eps=_validation.real(adam_eps, "adam_eps"))
        self._settings["inner_steps"] = _validation.int64(inner_steps, "inner_steps")
        if gae_lambda is None:
            # GAE's lower variance helps the one step on 20 trajectories; its bias from the linear
            # baseline hurts the later, finer steps (2D navigation: 0.65 gives -10.5 after one
            # step, against -11.8 with 1; with two steps 1 gives -5.6 after both, 0.65 -8.6).
            gae_lambda = 0.65 if self._settings["inner_steps"] == 1 else 1.0
        self._settings["gae_lambda"] = _validation.real(gae_lambda, "gae_lambda")
        self._settings["alpha_lr"] = default_alpha_lr(alpha_lr, self._settings["meta_lr"],
                                                      self._settings["alpha_init"], scaled=True)
        mean_network, self._settings["init"] = initial_theta(model, init, self._seed, self._dtype)
        options = (self._settings["inner_trajectories"], self._settings["gamma"], self._settings["first_order"],
                   self._settings["normalize_advantages"], self._settings["meta_optimizer"], self._settings["meta_lr"],
                   *self._settings["adam_betas"], self._settings["adam_eps"], self._seed)
        if isinstance(self.env, GymTasks):
            self._impl: Any = _PythonBackend(self.policy, self.env, *options, dtype=self._dtype,
                                             alpha_lr=self._settings["alpha_lr"],
                                             inner_steps=self._settings["inner_steps"],
                                             gae_lambda=self._settings["gae_lambda"])
        else:
            impl_class = _core.MetaSGDRLFloat32 if self._dtype == np.float32 else _core.MetaSGDRLFloat64
            self._impl = impl_class(model._impl, self.env._impl, *options, _validation.num_threads(num_threads),
                                    alpha_lr=self._settings["alpha_lr"], inner_steps=self._settings["inner_steps"],
                                    gae_lambda=self._settings["gae_lambda"])
        log_std = np.full(self.policy.action_dim, self._settings["log_std_init"], dtype=self._dtype)
        theta = np.concatenate([mean_network, log_std])
        self._impl.set_params(theta, np.full(theta.size, self._settings["alpha_init"], dtype=self._dtype))

    @property
    def alpha_lr(self) -> float:
        """alpha's meta learning rate (see the constructor for its default)."""
        return float(self._settings["alpha_lr"])

    def _check_rollouts(self, trajectories: int, meta_batch: int) -> None:
        """The memory check of rollouts of ``trajectories`` trajectories on every thread
        (``inner_steps + 1`` rollouts a task, each its samples and a network pass over them) and
        of ``meta_batch`` task slots, before any is made."""
        samples = trajectories * self.env.horizon
        per_thread = (self._settings["inner_steps"] + 1) * (16 * samples + _memory.workspace_values(self._model.sizes, samples))
        self._check_memory(self.num_threads * per_thread + meta_batch * 4 * self.policy.num_params,
                           f"rollouts of {trajectories} trajectories of up to {self.env.horizon:,} steps")

    @shared_docs
    def fit(self, iterations: int = 100, meta_batch: int = 20, progress: bool = True,
            callback: Callback | None = None, checkpoint: io.PathLike | None = None,
            checkpoint_every: int | None = None, on_divergence: str = "raise", comm: Any = None) -> np.ndarray:
        """Meta-trains for ``iterations`` meta-iterations of ``meta_batch`` tasks each (tasks in
        parallel).

        Parameters
        ----------
        iterations : int
            Meta-iterations to run.
        meta_batch : int
            Tasks (goals) in each.
        {training loop parameters}
        {comm parameter}

        Returns
        -------
        numpy.ndarray
            The mean return after adaptation of each meta-iteration run by this call. A fit
            whose last tenth of meta-iterations returns clearly less than its first tenth warns
            (RuntimeWarning): the policy is collapsing.

        Notes
        -----
        {training loop notes}
        """
        meta_batch = _validation.count(meta_batch, "meta_batch")
        if comm is not None and isinstance(self.env, GymTasks):
            raise ValueError("comm needs the native Navigation2D tasks: GymTasks environments run in one process")
        self._check_rollouts(self._settings["inner_trajectories"], meta_batch)
        share = self._share_of(meta_batch, comm)

        def run_chunk(count: int) -> bool:
            returns, diverged = share.result(self._impl.fit(self._iteration, count, share.count, **share.core()))
            self._record(returns)
            return diverged

        history = self._train(iterations, run_chunk, progress, callback, checkpoint, checkpoint_every,
                              on_divergence, share)
        warn_if_returns_fell(history)
        return history

    def adapt(self, task: Any, steps: int = 1, seed: int = 0) -> np.ndarray:
        """Policy parameters adapted to one task.

        Parameters
        ----------
        task : array_like or environment
            A goal ``(x, y)`` for Navigation2D; an environment object for GymTasks.
        steps : int
            Inner steps, each on ``inner_trajectories`` fresh trajectories.
        seed : int
            Seed of the action noise.

        Returns
        -------
        numpy.ndarray
            The adapted parameters, in the layout of theta.
        """
        if isinstance(self.env, Navigation2D):
            task = np.ascontiguousarray(np.asarray(task, dtype=np.float64))
        adapted = self._impl.adapt(task, _validation.count(steps, "steps", minimum=0), _validation.seed(seed), 0)
        if not np.all(np.isfinite(adapted)):
            raise ValueError("the adaptation diverged: the adapted policy parameters are not finite "
                             "(a task far outside the goal range, or a smaller alpha needed)")
        return adapted

    def evaluate(self, num_tasks: int = 40, steps: Sequence[int] = (0, 1, 2, 3), trajectories: int = 40,
                 seed: int = 123) -> EvaluationReport:
        """Mean return after each number of adaptation steps, with a 95% confidence interval
        over held-out tasks.

        Parameters
        ----------
        num_tasks : int
            Held-out tasks (goals), keyed by ``seed``.
        steps : sequence of int
            Numbers of adaptation steps to report.
        trajectories : int
            Fresh trajectories whose mean return scores each task.
        seed : int
            Seed of the held-out tasks; use one that training did not use.

        Returns
        -------
        EvaluationReport
            One row per number of steps, in increasing order; its ``loss`` fields hold returns.
        """
        counts = _validation.step_counts(steps)
        trajectories = _validation.integer(trajectories, "trajectories", minimum=1, maximum=2**16)
        self._check_rollouts(max(trajectories, self._settings["inner_trajectories"]), 0)
        returns = self._impl.evaluate(_validation.seed(seed), _validation.count(num_tasks, "num_tasks"), counts,
                                      trajectories)
        return EvaluationReport.from_samples(tuple(counts), returns, None, metric="return")

    # Hooks of Learner.
    def _hyperparameters(self) -> dict[str, Any]:
        env = self.env
        if isinstance(env, GymTasks):
            raise TypeError("a MetaSGDRL on Python environments cannot be saved: the environment is code")
        return dict(env=dict(goal_range=list(env.goal_range), max_action=env.max_action, tolerance=env.tolerance,
                             horizon=env.horizon, reward=env.reward, scaled_actions=env.scaled_actions),
                    **self._settings)

    @classmethod
    def _from_saved(cls, config: dict[str, Any], arrays: dict[str, np.ndarray], num_threads: int | None) -> Any:
        # Files from before scaled actions, alpha_lr and GAE hold velocity actions, alpha at meta_lr
        # and the papers' advantages.
        env = Navigation2D(**{"scaled_actions": False, **config["env"]})
        config = {"alpha_lr": config.get("meta_lr"), "gae_lambda": 1.0, **config, "env": env}
        return super()._from_saved(config, arrays, num_threads)
