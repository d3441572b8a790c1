"""Meta-SGD (Li et al. 2017): learn the initial parameters theta and a per-parameter
learning rate alpha so that ``theta' = theta - alpha * grad L_support(theta)`` fits a new task."""

from __future__ import annotations

import time
from typing import Any, Callable, Optional, Sequence

import numpy as np
from tqdm.auto import tqdm

from . import _core, _validation, io
from .errors import TrainingDivergedError
from .evaluation import EvaluationReport
from .mlp import MLP
from .task_batch import TaskBatch
from .tasks import TaskFamily, Tasks, check_tasks, sample_with

Callback = Callable[[Any, int, float], Optional[bool]]

# fit() hands the core chunks of meta-iterations sized to take about this long, so progress
# bars, callbacks and Ctrl-C are served a few times a second.
CHUNK_SECONDS = 0.1


class MetaSGD:
    """Meta-SGD with an exact meta-gradient through any number of inner steps.

    Parameters
    ----------
    model : MLP
        The network; its parameters are theta.
    loss : {"mse", "bce", "softmax_ce"}
        Loss of the support (inner) and query (outer) sets.
    inner_steps : int
        Adaptation steps ``theta <- theta - alpha * grad L_support(theta)`` (same alpha each step).
    alpha_init : float or (low, high)
        Initial learning rates: one value for all parameters, or uniform per parameter.
    first_order : bool
        Drop the Hessian terms of the meta-gradient (the alpha gradient keeps its exact form).
    meta_optimizer : {"adam", "sgd"}
        Update of ``[theta, alpha]`` with the mean meta-gradient over a meta-batch.
    meta_lr : float
        Meta learning rate (beta).
    dtype : {"float32", "float64"}
        Precision of all computations. Floating data is converted to it.
    seed : int
        Seeds theta (``model.init(seed)``), alpha and the task stream of ``fit``.
    num_threads : int or None
        Threads over the tasks of a meta-batch (None: all cores). Results do not depend on it.
    adam_betas, adam_eps
        Adam's hyperparameters.

    Notes
    -----
    The meta-gradient is the exact reverse pass through the inner loop, with Hessian-vector
    products from Pearlmutter's R-operator: for ``j = J-1 .. 0``,
    ``g_alpha -= g_j * v`` and ``v <- v - H_j (alpha * v)``, from ``v = grad L_query(theta_J)``.
    The book "Hands-On Meta Learning with Python" updates alpha with theta's meta-gradient;
    that is not the gradient with respect to alpha, and metafast does not copy it (see
    ``metafast.reference.book_metasgd`` for a port of that listing).

    Reference: Z. Li, F. Zhou, F. Chen, H. Li (2017), "Meta-SGD: Learning to Learn Quickly for
    Few-Shot Learning", arXiv:1707.09835.

    Examples
    --------
    >>> import metafast as mf
    >>> learner = mf.MetaSGD(mf.MLP([1, 40, 40, 1]), loss="mse", meta_lr=1e-3)
    >>> history = learner.fit(mf.tasks.Sinusoid(), iterations=100, meta_batch=25, progress=False)
    >>> report = learner.evaluate(mf.tasks.Sinusoid(), num_tasks=100, steps=(0, 1))
    """

    def __init__(self, model: MLP, loss: str = "mse", inner_steps: int = 1, alpha_init: float | tuple[float, float] = 0.01,
                 first_order: bool = False, meta_optimizer: str = "adam", meta_lr: float = 1e-3,
                 dtype: Any = "float32", seed: int = 0, num_threads: int | None = None,
                 adam_betas: tuple[float, float] = (0.9, 0.999), adam_eps: float = 1e-8) -> None:
        if not isinstance(model, MLP):
            raise TypeError(f"model must be a metafast.MLP, got {type(model).__name__}")
        self._model = model
        self._loss = _validation.string(loss, "loss")
        self._inner_steps = _validation.integer(inner_steps, "inner_steps", minimum=1)
        self._first_order = _validation.boolean(first_order, "first_order")
        self._meta_optimizer = _validation.string(meta_optimizer, "meta_optimizer")
        self._meta_lr = _validation.real(meta_lr, "meta_lr", minimum=0.0, exclusive=True)
        self._dtype = _validation.float_dtype(dtype)
        self._seed = _validation.integer(seed, "seed", minimum=0)
        betas = _validation.pair(adam_betas, "adam_betas")
        if not 0 <= betas[0] < 1 or not 0 <= betas[1] < 1:
            raise ValueError(f"adam_betas must lie in [0, 1), got {betas}")
        self._adam_betas = betas
        self._adam_eps = _validation.real(adam_eps, "adam_eps", minimum=0.0, exclusive=True)
        self._alpha_init = self._check_alpha_init(alpha_init)
        impl_class = _core.MetaSGDFloat32 if self._dtype == np.float32 else _core.MetaSGDFloat64
        self._impl = impl_class(model._impl, self._loss, self._inner_steps, self._first_order, self._meta_optimizer,
                                self._meta_lr, betas[0], betas[1], self._adam_eps,
                                _validation.num_threads(num_threads))
        self._impl.set_params(model.init(self._seed, self._dtype), self._initial_alpha())
        self._iteration = 0
        self._history: list[np.ndarray] = []

    # ----------------------------------------------------------------- state
    @property
    def model(self) -> MLP:
        return self._model

    @property
    def loss(self) -> str:
        return self._loss

    @property
    def inner_steps(self) -> int:
        return self._inner_steps

    @property
    def first_order(self) -> bool:
        return self._first_order

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def theta(self) -> np.ndarray:
        """Initial parameters (a copy; assign to change them)."""
        return self._impl.get_params()[0]

    @theta.setter
    def theta(self, value: Any) -> None:
        self._impl.set_params(self._vector(value, "theta"), self._impl.get_params()[1])

    @property
    def alpha(self) -> np.ndarray:
        """Per-parameter inner learning rates (a copy; assign to change them)."""
        return self._impl.get_params()[1]

    @alpha.setter
    def alpha(self, value: Any) -> None:
        self._impl.set_params(self._impl.get_params()[0], self._vector(value, "alpha"))

    @property
    def num_threads(self) -> int:
        return self._impl.num_threads

    @num_threads.setter
    def num_threads(self, value: int | None) -> None:
        self._impl.num_threads = _validation.num_threads(value)

    @property
    def iteration(self) -> int:
        """Meta-iterations taken so far; ``fit`` continues the task stream from here."""
        return self._iteration

    @property
    def history(self) -> np.ndarray:
        """Mean query loss of every meta-iteration taken so far."""
        return np.concatenate(self._history) if self._history else np.empty(0)

    # --------------------------------------------------------------- training
    def meta_gradient(self, batch: TaskBatch) -> tuple[np.floating, np.ndarray, np.ndarray]:
        """Mean query loss after adaptation and its exact gradients with respect to theta and
        alpha, averaged over the tasks of ``batch``. Changes nothing."""
        loss, g_theta, g_alpha = self._impl.meta_gradient(*self._arrays(batch))
        return self._dtype.type(loss), g_theta, g_alpha

    def meta_step(self, batch: TaskBatch) -> float:
        """One meta-iteration on ``batch``: returns the mean query loss before the update.
        Raises TrainingDivergedError, changing nothing, if the result is not finite."""
        updated, loss = self._impl.meta_step(*self._arrays(batch))
        if not updated:
            raise TrainingDivergedError(self._iteration)
        self._record(np.array([loss]))
        return loss

    def fit(self, tasks: Tasks, iterations: int = 10_000, meta_batch: int = 25, progress: bool = True,
            callback: Callback | None = None) -> np.ndarray:
        """Meta-trains for ``iterations`` meta-iterations of ``meta_batch`` tasks each.

        Parameters
        ----------
        tasks : TaskFamily or callable
            A built-in family (fast path: whole chunks of iterations run in C++ without the
            GIL) or ``sampler(num_tasks, rng) -> TaskBatch`` (one call per iteration; ``rng``
            is seeded from ``(seed, iteration)``).
        progress : bool
            Show a tqdm progress bar.
        callback : callable, optional
            ``callback(learner, iteration, loss)``, called between chunks (a few times a second)
            and after the last iteration; return True to stop training.

        Returns
        -------
        numpy.ndarray
            The mean query loss of each meta-iteration run by this call.
        """
        tasks = check_tasks(tasks)
        iterations = _validation.integer(iterations, "iterations", minimum=0)
        meta_batch = _validation.integer(meta_batch, "meta_batch", minimum=1)
        first = self._iteration
        chunk = 1
        with tqdm(total=iterations, disable=not progress, desc="Meta-SGD", unit="it", leave=False) as bar:
            while self._iteration - first < iterations:
                count = min(chunk, iterations - (self._iteration - first))
                started = time.perf_counter()
                losses = self._run_chunk(tasks, count, meta_batch)
                elapsed = time.perf_counter() - started
                bar.update(len(losses))
                bar.set_postfix(loss=f"{losses[-1]:.4g}")
                chunk = max(1, int(chunk * 2 if elapsed < CHUNK_SECONDS / 2 else chunk // 2 if elapsed > 2 * CHUNK_SECONDS else chunk))
                if callback is not None and callback(self, self._iteration, float(losses[-1])):
                    break
        return self.history[first:]

    def _run_chunk(self, tasks: Any, count: int, meta_batch: int) -> np.ndarray:
        if isinstance(tasks, TaskFamily):
            losses, diverged = self._impl.fit(tasks._impl, self._seed, self._iteration, count, meta_batch)
            self._record(losses)
            if diverged:
                raise TrainingDivergedError(self._iteration)
            return losses
        for _ in range(count):
            rng = np.random.default_rng([self._seed, self._iteration])
            self.meta_step(sample_with(tasks, meta_batch, rng))
        return self._history[-1]

    def _record(self, losses: np.ndarray) -> None:
        if len(losses):
            self._history.append(np.asarray(losses, dtype=np.float64))
            self._iteration += len(losses)

    # ------------------------------------------------------------- adaptation
    def adapt(self, x_support: Any, y_support: Any, steps: int | None = None) -> np.ndarray:
        """theta' for one new task: ``steps`` (default ``inner_steps``) updates
        ``theta <- theta - alpha * grad L(theta)`` on ``(x_support, y_support)``."""
        steps = self._inner_steps if steps is None else _validation.integer(steps, "steps", minimum=0)
        x = _validation.floats(np.asarray(x_support).astype(self._dtype, copy=False), "x_support", self._dtype)
        return self._impl.adapt(x, self._targets(y_support, "y_support"), steps)

    def predict(self, x: Any, params: np.ndarray | None = None) -> np.ndarray:
        """Model outputs for ``x`` with ``params`` (default: the meta-learned theta)."""
        params = self.theta if params is None else self._vector(params, "params")
        return self._model.forward(params, np.asarray(x).astype(self._dtype, copy=False))

    def evaluate(self, tasks: Tasks | TaskBatch, num_tasks: int = 600, steps: Sequence[int] = (0, 1, 5, 10),
                 seed: int = 123) -> EvaluationReport:
        """Query loss (and accuracy, for bce and softmax_ce) after each number of adaptation
        ``steps``, as mean and 95% confidence interval over ``num_tasks`` held-out tasks.

        Tasks come from ``tasks.sample(num_tasks, seed=seed)`` (use a seed that training did not
        use), from a sampler called with ``np.random.default_rng(seed)``, or are the given
        TaskBatch itself. alpha is learned for ``inner_steps`` steps; many more steps can
        diverge, and a task whose adaptation overflows counts as an infinite loss.
        """
        tasks = check_tasks(tasks, allow_batch=True)
        counts = sorted({_validation.integer(s, "steps[i]", minimum=0) for s in steps})
        if not counts:
            raise ValueError("steps must name at least one number of adaptation steps")
        num_tasks = _validation.integer(num_tasks, "num_tasks", minimum=1)
        seed = _validation.integer(seed, "seed", minimum=0)
        if isinstance(tasks, TaskBatch):
            batch = tasks
        elif isinstance(tasks, TaskFamily):
            batch = tasks.sample(num_tasks, seed=seed, dtype=self._dtype, num_threads=self.num_threads)
        else:
            batch = sample_with(tasks, num_tasks, np.random.default_rng(seed))
        losses, accuracies = self._impl.evaluate(*self._arrays(batch), counts)
        return EvaluationReport.from_samples(tuple(counts), losses, None if self._loss == "mse" else accuracies)

    # -------------------------------------------------------------------- I/O
    def save(self, path: io.PathLike) -> None:
        """Writes the learner (config, theta, alpha, optimizer state, history) atomically."""
        m, v, step = self._impl.get_optimizer_state()
        theta, alpha = self._impl.get_params()
        io.write_archive(path, self._config(), dict(
            theta=theta, alpha=alpha, optimizer_m=m, optimizer_v=v, optimizer_step=np.array(step),
            iteration=np.array(self._iteration), history=self.history))

    def _config(self) -> dict[str, Any]:
        model = self._model
        return dict(kind="MetaSGD", model=dict(sizes=list(model.sizes), activation=model.activation,
                                               output=model.output, bias=model.bias),
                    loss=self._loss, inner_steps=self._inner_steps, alpha_init=self._alpha_init,
                    first_order=self._first_order, meta_optimizer=self._meta_optimizer, meta_lr=self._meta_lr,
                    dtype=self._dtype.name, seed=self._seed, adam_betas=list(self._adam_betas),
                    adam_eps=self._adam_eps)

    @classmethod
    def _from_saved(cls, config: dict[str, Any], arrays: dict[str, np.ndarray], num_threads: int | None) -> MetaSGD:
        settings = {k: v for k, v in config.items() if k not in ("kind", "model")}
        settings["adam_betas"] = tuple(settings["adam_betas"])
        if isinstance(settings["alpha_init"], list):
            settings["alpha_init"] = tuple(settings["alpha_init"])
        learner = cls(MLP(**config["model"]), num_threads=num_threads, **settings)
        learner._impl.set_params(arrays["theta"], arrays["alpha"])
        learner._impl.set_optimizer_state(arrays["optimizer_m"], arrays["optimizer_v"], int(arrays["optimizer_step"]))
        learner._iteration = int(arrays["iteration"])
        history = np.asarray(arrays["history"], dtype=np.float64)
        if history.shape != (learner._iteration,):
            raise ValueError("the saved history does not match the saved iteration count")
        learner._history = [history] if len(history) else []
        return learner

    # ---------------------------------------------------------------- helpers
    def _check_alpha_init(self, value: Any) -> float | tuple[float, float]:
        if isinstance(value, (tuple, list)):
            low, high = _validation.pair(value, "alpha_init")
            return (low, high)
        return _validation.real(value, "alpha_init")

    def _initial_alpha(self) -> np.ndarray:
        size = self._model.num_params
        if isinstance(self._alpha_init, tuple):
            rng = np.random.default_rng([self._seed, 1])  # a stream apart from theta's
            return rng.uniform(*self._alpha_init, size).astype(self._dtype)
        return np.full(size, self._alpha_init, dtype=self._dtype)

    def _vector(self, value: Any, name: str) -> np.ndarray:
        array = np.asarray(value)
        if array.dtype.kind != "f":
            raise TypeError(f"{name} must be a floating-point array, got dtype {array.dtype}")
        return np.ascontiguousarray(array, dtype=self._dtype)

    def _targets(self, y: Any, name: str) -> np.ndarray:
        if self._loss == "softmax_ce":
            return _validation.labels(y, name)
        array = np.asarray(y)
        if array.dtype.kind not in "fiu":
            raise TypeError(f"{name} must be a numeric array, got dtype {array.dtype}")
        return np.ascontiguousarray(array, dtype=self._dtype)

    def _arrays(self, batch: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if not isinstance(batch, TaskBatch):
            raise TypeError(f"batch must be a metafast.TaskBatch, got {type(batch).__name__}")
        if batch.has_labels != (self._loss == "softmax_ce"):
            raise ValueError("the batch has integer class labels: use loss 'softmax_ce'" if batch.has_labels
                             else f"loss '{self._loss}' needs integer class labels in the batch")
        if batch.dtype != self._dtype:
            batch = batch.astype(self._dtype)
        return batch.x_support, batch.y_support, batch.x_query, batch.y_query
