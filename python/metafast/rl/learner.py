"""MetaSGDRL, Meta-SGD for reinforcement learning (Li et al. 2017, section 4.3): the learner
over the core's native rollouts on Navigation2D, or over Python environments (GymTasks,
through :mod:`.gym`), and the warning when a fit ends with clearly lower returns."""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np

from .. import _core, _memory, _validation, io
from .._docs import shared_docs
from ..evaluation import EvaluationReport
from ..inner_learning_rates import InnerLearningRates, default_alpha_lr
from .._archive_checks import Refused
from ..learner import Callback
from ..mlp import MLP, initial_theta
from .gym import GymBackend, GymTasks, checked_environment
from .navigation import Navigation2D
from .policy import GaussianPolicy

MAX_TRAJECTORIES = 2**16  # per rollout: the core's bound
MAX_ALPHA_SCALES = 10_000  # the core's bound

# TRPO's settings (meta_optimizer="trpo"), as the constructor and the saved file name them.
TRPO_OPTIONS = ("max_kl", "cg_iterations", "cg_damping", "line_search_steps", "line_search_ratio")


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
        The mean network's initial parameters: a scheme of :meth:`metafast.MLP.init` (``"glorot"``, the
        default, as the MAML code's policies; ``"he"``, ``"pytorch"``, ``("normal", std)``) or
        the parameters themselves. Glorot keeps the initial mean actions small, so the untrained
        policy barely moves; He's larger ones drive it away from every goal.
    alpha_lr : float, optional
        alpha's meta learning rate; by default ``meta_lr * alpha_init`` (``meta_lr`` when
        ``alpha_init`` is 0): Adam moves every entry by about its learning rate per update,
        whatever its size, so alpha moves at the pace theta moves relative to its size.
        0 keeps alpha at ``alpha_init`` (MAML's fixed inner step; with "trpo" the search then
        runs in theta alone).
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
    meta_optimizer : {"adam", "sgd", "trpo"}
        Update of ``[theta, alpha]`` from the mean meta-gradient over a meta-batch. "trpo" is
        the papers' meta-update: the natural-gradient direction of the post-adaptation
        surrogate (conjugate gradient on the Fisher-vector product of the mean KL divergence
        of the adapted policies, exact through the inner steps), then a backtracking line
        search that takes a step only if the surrogate improves and the mean KL stays within
        ``max_kl``; alpha is part of the direction unless ``alpha_lr`` is 0, and ``meta_lr``
        is unused. On Navigation2D, in one process or many (``fit(comm=...)``, every sum of
        the search relayed in task order) (docs/math.md, section 4, "TRPO's meta-update").
    meta_lr : float
        Meta learning rate (beta) of Adam and SGD.
    max_kl, cg_iterations, cg_damping, line_search_steps, line_search_ratio : optional
        TRPO's trust region (mean KL), conjugate-gradient iterations, damping of the
        Fisher-vector product, backtracking steps and the factor each shrinks the step by;
        MAML's defaults: 0.01, 10, 1e-5, 15, 0.8.
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
                 gae_lambda: float | None = None, max_kl: float = 0.01, cg_iterations: int = 10,
                 cg_damping: float = 1e-5, line_search_steps: int = 15, line_search_ratio: float = 0.8) -> None:
        super().__init__(model, dtype, seed)
        self._check_learner_memory(model.num_params + model.sizes[-1], 1)
        self.policy = GaussianPolicy(model)
        self.env = Navigation2D() if env is None else env
        if not isinstance(self.env, (Navigation2D, GymTasks)):
            raise TypeError(f"env must be a metafast.rl.Navigation2D or GymTasks, got {type(self.env).__name__}")
        self._settings = dict(
            # Types here; the core checks the ranges (one message for each).
            inner_trajectories=_validation.int64(inner_trajectories, "inner_trajectories"),
            gamma=_validation.real(gamma, "gamma"),
            alpha_init=self._checked_alpha_init(_validation.real(alpha_init, "alpha_init")),
            log_std_init=_validation.real(log_std_init, "log_std_init"),
            first_order=_validation.boolean(first_order, "first_order"),
            normalize_advantages=_validation.boolean(normalize_advantages, "normalize_advantages"),
            meta_optimizer=_validation.string(meta_optimizer, "meta_optimizer"),
            meta_lr=_validation.real(meta_lr, "meta_lr"),
            adam_betas=_validation.two_reals(adam_betas, "adam_betas"),
            adam_eps=_validation.real(adam_eps, "adam_eps"))
        self._settings["inner_steps"] = _validation.int64(inner_steps, "inner_steps")
        self._settings.update(max_kl=_validation.real(max_kl, "max_kl"),
                              cg_iterations=_validation.int64(cg_iterations, "cg_iterations"),
                              cg_damping=_validation.real(cg_damping, "cg_damping"),
                              line_search_steps=_validation.int64(line_search_steps, "line_search_steps"),
                              line_search_ratio=_validation.real(line_search_ratio, "line_search_ratio"))
        trpo = {name: self._settings[name] for name in TRPO_OPTIONS}
        if gae_lambda is None:
            # GAE's lower variance helps the one step on 20 trajectories; its bias from the linear
            # baseline hurts the later, finer steps (2D navigation: 0.65 gives -10.5 after one
            # step, against -11.8 with 1; with two steps 1 gives -5.6 after both, 0.65 -8.6).
            gae_lambda = 0.65 if self._settings["inner_steps"] == 1 else 1.0
        self._settings["gae_lambda"] = _validation.real(gae_lambda, "gae_lambda")
        self._alpha_lr = self._settings["alpha_lr"] = default_alpha_lr(
            alpha_lr, self._settings["meta_lr"], self._settings["alpha_init"], scaled=True)
        mean_network, self._settings["init"] = initial_theta(model, init, self._seed, self._dtype)
        options = (self._settings["inner_trajectories"], self._settings["gamma"], self._settings["first_order"],
                   self._settings["normalize_advantages"], self._settings["meta_optimizer"], self._settings["meta_lr"],
                   *self._settings["adam_betas"], self._settings["adam_eps"], self._seed)
        threads = self._threads(num_threads)
        if isinstance(self.env, GymTasks):
            if self._settings["meta_optimizer"] == "trpo":
                raise ValueError("meta_optimizer='trpo' needs the native Navigation2D tasks, not GymTasks")
            self._impl: Any = GymBackend(self.policy, self.env, *options, dtype=self._dtype,
                                         alpha_lr=self._alpha_lr, inner_steps=self._settings["inner_steps"],
                                         gae_lambda=self._settings["gae_lambda"])
        else:
            impl_class = _core.MetaSGDRLFloat32 if self._dtype == np.float32 else _core.MetaSGDRLFloat64
            self._impl = impl_class(model._impl, self.env._impl, *options, threads,
                                    alpha_lr=self._alpha_lr, inner_steps=self._settings["inner_steps"],
                                    gae_lambda=self._settings["gae_lambda"], **trpo)
        log_std = np.full(self.policy.action_dim, self._settings["log_std_init"], dtype=self._dtype)
        theta = np.concatenate([mean_network, log_std])
        self._impl.set_params(theta, np.full(theta.size, self._settings["alpha_init"], dtype=self._dtype))

    @classmethod
    def _learner_bytes(cls, num_params: int, alpha_vectors: int, dtype: np.dtype) -> int:
        impl_class = _core.MetaSGDRLFloat32 if dtype == np.float32 else _core.MetaSGDRLFloat64
        return impl_class.learner_bytes(num_params)  # theta is the policy's: the network's and log_std

    @property
    def inner_trajectories(self) -> int:
        """Trajectories per rollout, for each inner step and for the outer surrogate."""
        return self._settings["inner_trajectories"]

    @property
    def gamma(self) -> float:
        """Discount of the returns-to-go."""
        return self._settings["gamma"]

    @property
    def alpha_init(self) -> float:
        """alpha's initial value, for every parameter."""
        return self._settings["alpha_init"]

    @property
    def log_std_init(self) -> float:
        """The policy's initial log standard deviation."""
        return self._settings["log_std_init"]

    @property
    def first_order(self) -> bool:
        """Whether the meta-gradient drops the surrogate's Hessian-vector product."""
        return self._settings["first_order"]

    @property
    def normalize_advantages(self) -> bool:
        """Whether each batch's advantages are standardised."""
        return self._settings["normalize_advantages"]

    @property
    def meta_optimizer(self) -> str:
        """The meta-update: "adam", "sgd" or "trpo"."""
        return self._settings["meta_optimizer"]

    @property
    def max_kl(self) -> float:
        """TRPO's trust region: the largest mean KL divergence of the adapted policies a step makes."""
        return self._settings["max_kl"]

    @property
    def cg_iterations(self) -> int:
        """TRPO's conjugate-gradient iterations for the search direction."""
        return self._settings["cg_iterations"]

    @property
    def cg_damping(self) -> float:
        """TRPO's damping of the Fisher-vector product (F + cg_damping I)."""
        return self._settings["cg_damping"]

    @property
    def line_search_steps(self) -> int:
        """TRPO's backtracking steps at most."""
        return self._settings["line_search_steps"]

    @property
    def line_search_ratio(self) -> float:
        """The factor each of TRPO's backtracking steps shrinks the step by."""
        return self._settings["line_search_ratio"]

    @property
    def meta_lr(self) -> float:
        """The meta-optimizer's learning rate (of theta)."""
        return self._settings["meta_lr"]

    @property
    def adam_betas(self) -> tuple[float, float]:
        """Adam's decay rates in the meta-optimizer."""
        return self._settings["adam_betas"]

    @property
    def adam_eps(self) -> float:
        """Adam's epsilon in the meta-optimizer."""
        return self._settings["adam_eps"]

    @property
    def inner_steps(self) -> int:
        """Adaptation steps in meta-training."""
        return self._settings["inner_steps"]

    @property
    def gae_lambda(self) -> float:
        """GAE's lambda (1: returns-to-go minus the baseline), the default resolved."""
        return self._settings["gae_lambda"]

    @property
    def init(self) -> Any:
        """The mean network's initialisation scheme; None for an explicit theta."""
        return self._settings["init"]

    def _check_rollouts(self, trajectories: int, meta_batch: int) -> None:
        """The memory check of rollouts of ``trajectories`` trajectories on every thread (each
        task's inner steps and the rollout after them, their samples and network passes) and of
        ``meta_batch`` task slots, before any is made: the core's sizes (also the estimate for
        rollouts collected in Python)."""
        impl_class = _core.MetaSGDRLFloat32 if self._dtype == np.float32 else _core.MetaSGDRLFloat64
        needed = impl_class.training_bytes(self._model._impl, self.env.horizon, self._settings["inner_steps"], meta_batch,
                                           trajectories, self.num_threads,
                                           trpo=self._settings["meta_optimizer"] == "trpo" and meta_batch > 0)
        _memory.check(needed, f"rollouts of {trajectories} trajectories of up to {self.env.horizon:,} steps")

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

    def adapt(self, task: Any, steps: int = 1, seed: int = 0, inner_trajectories: int | None = None,
              alpha_scales: Sequence[float] | None = None) -> np.ndarray:
        """Policy parameters adapted to one task.

        Parameters
        ----------
        task : array_like or environment
            A goal ``(x, y)`` for Navigation2D; an environment object for GymTasks.
        steps : int
            Inner steps, each on ``inner_trajectories`` fresh trajectories.
        seed : int
            Seed of the action noise.
        inner_trajectories : int, optional
            Trajectories of each step; by default the learner's ``inner_trajectories``.
        alpha_scales : sequence of float, optional
            Factors on alpha for the first, second, ... step, the last repeating for the
            steps after it; by default alpha as trained. MAML's evaluation halves its fixed
            step after the first: ``(1, 0.5)``.

        Returns
        -------
        numpy.ndarray
            The adapted parameters, in the layout of theta.
        """
        if isinstance(self.env, Navigation2D):
            try:
                task = np.array(_validation.two_reals(task, "task"), dtype=np.float64)
            except TypeError:
                raise TypeError(f"task must be a goal (x, y) of two numbers for Navigation2D tasks, got "
                                f"{type(task).__name__} {task!r:.80}") from None
        else:
            task = checked_environment(task, "task must be an environment for GymTasks tasks, got")
        steps = _validation.count(steps, "steps", minimum=0)
        schedule = self._schedule(inner_trajectories, alpha_scales)
        adapted = self._impl.adapt(task, steps, _validation.seed(seed), 0, *schedule)
        if not np.all(np.isfinite(adapted)):
            raise ValueError("the adaptation diverged: the adapted policy parameters are not finite "
                             "(a task far outside the goal range, or a smaller alpha needed)")
        return adapted

    def evaluate(self, num_tasks: int = 40, steps: Sequence[int] = (0, 1, 2, 3), trajectories: int = 40,
                 seed: int = 123, inner_trajectories: int | None = None,
                 alpha_scales: Sequence[float] | None = None) -> EvaluationReport:
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
        inner_trajectories : int, optional
            Trajectories of each adaptation step; by default the learner's
            ``inner_trajectories`` (MAML's evaluation: 40).
        alpha_scales : sequence of float, optional
            Factors on alpha for the first, second, ... adaptation step, the last repeating;
            by default alpha as trained. MAML's evaluation: ``(1, 0.5)``, its fixed step and
            then half of it.

        Returns
        -------
        EvaluationReport
            One row per number of steps, in increasing order; its ``loss`` fields hold returns.
        """
        counts = _validation.step_counts(steps)
        trajectories = _validation.int64(trajectories, "trajectories")  # its range: the core's check
        num_tasks = _validation.count(num_tasks, "num_tasks")
        schedule = self._schedule(inner_trajectories, alpha_scales)
        self._check_rollouts(trajectories, 0)  # the core checks trajectories' range here, for both backends
        if schedule[0] > trajectories:  # adaptation's rollouts are the larger
            self._check_rollouts(schedule[0], 0)
        _memory.check(8 * num_tasks * len(counts), f"an evaluation of {num_tasks:,} tasks at {len(counts):,} step counts")
        returns = self._impl.evaluate(_validation.seed(seed), num_tasks, counts, trajectories, *schedule)
        return EvaluationReport.from_samples(tuple(counts), returns, None, metric="return")

    def _schedule(self, inner_trajectories: int | None, alpha_scales: Sequence[float] | None) -> tuple[int, list[float]]:
        """``(trajectories, alpha_scales)`` of evaluate's and adapt's steps, checked."""
        if inner_trajectories is None:
            inner_trajectories = self._settings["inner_trajectories"]
        inner_trajectories = _validation.integer(inner_trajectories, "inner_trajectories", minimum=1,
                                                 maximum=MAX_TRAJECTORIES)
        if alpha_scales is None:
            return inner_trajectories, [1.0]
        if isinstance(alpha_scales, (str, bytes)) or not hasattr(alpha_scales, "__iter__"):
            raise TypeError(f"alpha_scales must be a sequence of factors on alpha, e.g. (1, 0.5), got {alpha_scales!r}")
        scales = [_validation.real(scale, f"alpha_scales[{i}]", minimum=0.0) for i, scale in enumerate(alpha_scales)]
        if not 1 <= len(scales) <= MAX_ALPHA_SCALES:
            raise ValueError(f"alpha_scales must hold 1 to {MAX_ALPHA_SCALES:,} factors, got {len(scales)}")
        return inner_trajectories, scales

    def save(self, path: io.PathLike) -> None:
        """Writes the learner to one ``.npz`` file, atomically (see :meth:`Learner.save
        <metafast.MetaSGD.save>`); a learner on Python environments (GymTasks) pickles
        instead: its environments are code, which a model file does not hold."""
        if isinstance(self.env, GymTasks):
            raise TypeError("a MetaSGDRL on Python environments cannot be saved to a file: its environments are "
                            "code; pickle the learner instead (its GymTasks pickles when sample_task does)")
        super().save(path)

    # Hooks of Learner.
    def _hyperparameters(self) -> dict[str, Any]:
        env = self.env
        described: Any = "python" if isinstance(env, GymTasks) else dict(
            goal_range=list(env.goal_range), max_action=env.max_action, tolerance=env.tolerance, horizon=env.horizon,
            reward=env.reward, scaled_actions=env.scaled_actions)
        return dict(env=described, **self._settings)

    def _pickled_tasks(self) -> Any:
        return self.env if isinstance(self.env, GymTasks) else None

    @classmethod
    def _rebuilt(cls, config: dict[str, Any], arrays: dict[str, np.ndarray], num_threads: int | None,
                 tasks: Any = None) -> Any:
        if config.get("env") == "python" or tasks is not None:  # Python environments: they come by pickle
            if tasks is None:
                raise Refused("records Python environments (GymTasks), which only a pickle of the learner carries")
            if config.get("env") != "python" or not isinstance(tasks, GymTasks):
                raise Refused(f"holds {type(tasks).__name__} beside a state whose environments are "
                              f"{'Python ones (GymTasks)' if config.get('env') == 'python' else 'Navigation2D'}")
            config = dict(config, env=tasks)
        return cls._from_saved(config, arrays, num_threads)

    @classmethod
    def _from_saved(cls, config: dict[str, Any], arrays: dict[str, np.ndarray], num_threads: int | None) -> Any:
        # Files from before scaled actions, alpha_lr and GAE hold velocity actions, alpha at meta_lr
        # and the papers' advantages.
        env = config["env"]
        if not isinstance(env, GymTasks):
            env = Navigation2D(**{"scaled_actions": False, **env})
        config = {"alpha_lr": config.get("meta_lr"), "gae_lambda": 1.0, **config, "env": env}
        return super()._from_saved(config, arrays, num_threads)
