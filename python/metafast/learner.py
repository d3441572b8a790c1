"""What every meta-learner shares: the model and its dtype, the chunked training loop with
progress bar, callback and Ctrl-C, adaptation, evaluation, and saving."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
from tqdm.auto import tqdm

from . import _memory, _validation, io
from .errors import TrainingDivergedError
from .evaluation import EvaluationReport
from .mlp import MLP
from .task_batch import TaskBatch
from .tasks import TaskFamily, Tasks, check_tasks, family_from_config, sample_with

Callback = Callable[[Any, int, float], Optional[bool]]

# fit() hands the core chunks of meta-iterations sized to take about this long, so progress
# bars, callbacks and Ctrl-C are served a few times a second.
CHUNK_SECONDS = 0.1


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Holds Ctrl-C (SIGINT) back until the caller asks, so that it never lands between the
    core's update of the parameters and the record of that update. Only the main thread can
    own signal handlers; elsewhere Ctrl-C is left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    received: list[bool] = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: received.append(True))
    try:
        yield lambda: bool(received)
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def run_in_chunks(learner: Any, iterations: int, progress: bool, callback: Callback | None,
                  run_chunk: Callable[[int, int], np.ndarray], checkpoint: Any = None,
                  checkpoint_every: int | None = None, on_divergence: str = "raise") -> np.ndarray:
    """The training loop of every learner: ``run_chunk(count, done)`` runs ``count``
    meta-iterations in the core and records them; chunks are sized to take about
    CHUNK_SECONDS, so the progress bar, the callback and Ctrl-C are served a few times a second.
    Chunks also end on multiples of ``checkpoint_every``, where the learner is saved to
    ``checkpoint``. With ``on_divergence="skip"`` a non-finite meta-iteration is passed over
    (no update, NaN in the history) instead of raising. Returns the history of this call."""
    if on_divergence not in ("raise", "skip"):
        raise ValueError(f"on_divergence must be 'raise' or 'skip', got {on_divergence!r}")
    if checkpoint_every is not None:
        checkpoint_every = _validation.integer(checkpoint_every, "checkpoint_every", minimum=1)
        if checkpoint is None:
            raise ValueError("checkpoint_every needs a checkpoint path")
    first = learner._iteration
    chunk = 1
    with tqdm(total=iterations, disable=not progress, desc=learner._progress_label, unit="it", leave=False) as bar, \
            _deferred_interrupt() as interrupted:
        while learner._iteration - first < iterations:
            if interrupted():  # between chunks, with the learner consistent
                raise KeyboardInterrupt
            done = learner._iteration - first
            count = min(chunk, iterations - done)
            if checkpoint_every:
                count = min(count, checkpoint_every - learner._iteration % checkpoint_every)
            started = time.perf_counter()
            with learner._lock:
                before = learner._iteration
                try:
                    losses = run_chunk(count, done)
                except TrainingDivergedError:
                    if on_divergence == "raise":
                        raise
                    learner._history.append(np.array([np.nan]))  # the bad batch, skipped
                    learner._iteration += 1
                    losses = learner.history[before:]
            elapsed = time.perf_counter() - started
            bar.update(len(losses))
            bar.set_postfix({learner._progress_metric: f"{losses[-1]:.4g}"})
            if elapsed < CHUNK_SECONDS / 2:
                chunk *= 2
            elif elapsed > 2 * CHUNK_SECONDS:
                chunk = max(1, chunk // 2)
            if checkpoint_every and learner._iteration % checkpoint_every == 0:
                learner.save(checkpoint)
            if callback is not None and callback(learner, learner._iteration, float(losses[-1])):
                break
    return learner.history[first:]


def restore_progress(learner: Any, arrays: dict[str, np.ndarray]) -> None:
    """Sets a loaded learner's iteration count and history from a saved file."""
    learner._iteration = int(arrays["iteration"])
    history = np.asarray(arrays["history"], dtype=np.float64)
    if history.shape != (learner._iteration,):
        raise ValueError("the saved history does not match the saved iteration count")
    learner._history = [history] if len(history) else []


class MetaLearner:
    """Base class of :class:`~metafast.MetaSGD` and :class:`~metafast.Reptile`.

    Subclasses create ``self._impl`` (the C++ learner) and provide the hooks ``_native_fit``,
    ``_step``, ``_default_steps``, ``_config``, ``_state`` and ``_restore``.
    """

    _impl: Any
    _progress_label = "meta-training"
    _progress_metric = "loss"

    def _setup(self, model: Any, loss: Any, dtype: Any, seed: Any) -> None:
        if not isinstance(model, MLP):
            raise TypeError(f"model must be a metafast.MLP, got {type(model).__name__}")
        self._model = model
        self._loss = _validation.string(loss, "loss")
        self._dtype = _validation.float_dtype(dtype)
        self._seed = _validation.seed(seed)
        self._iteration = 0
        self._history: list[np.ndarray] = []
        self._tasks: TaskFamily | None = None
        # One meta-iteration at a time per learner: the iteration counter keys the tasks.
        self._lock = threading.RLock()

    # ----------------------------------------------------------------- state
    @property
    def model(self) -> MLP:
        return self._model

    @property
    def loss(self) -> str:
        return self._loss

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def num_threads(self) -> int:
        """Threads over the tasks of a meta-batch. Results do not depend on it."""
        return self._impl.num_threads

    @num_threads.setter
    def num_threads(self, value: int | None) -> None:
        self._impl.num_threads = _validation.num_threads(value)

    @property
    def iteration(self) -> int:
        """Meta-iterations taken so far; ``fit`` continues the task stream from here."""
        return self._iteration

    @property
    def tasks(self) -> TaskFamily | None:
        """The built-in task family of the last ``fit`` (saved with the learner), if any."""
        return self._tasks

    @property
    def history(self) -> np.ndarray:
        """Mean query loss after adaptation of every meta-iteration taken so far."""
        return np.concatenate(self._history) if self._history else np.empty(0)

    # --------------------------------------------------------------- training
    def meta_step(self, batch: TaskBatch) -> float:
        """One meta-iteration on ``batch``; returns the mean query loss after adaptation.
        Raises TrainingDivergedError, changing nothing, if a result is not finite."""
        arrays = self._arrays(batch)
        with self._lock:
            return self._checked_step(arrays, 0, 0)

    def fit(self, tasks: Tasks, iterations: int = 10_000, meta_batch: int = 25, progress: bool = True,
            callback: Callback | None = None, checkpoint: io.PathLike | None = None,
            checkpoint_every: int | None = None, on_divergence: str = "raise") -> np.ndarray:
        """Meta-trains for ``iterations`` meta-iterations of ``meta_batch`` tasks each.

        Parameters
        ----------
        tasks : TaskFamily or callable
            A built-in family (fast path: whole chunks of iterations run in C++ without the
            GIL) or ``sampler(num_tasks, rng) -> TaskBatch`` (one call per iteration; ``rng``
            is seeded from ``(seed, iteration)``).
        iterations, meta_batch : int
            Meta-iterations to run, and tasks in each.
        progress : bool
            Show a tqdm progress bar.
        callback : callable, optional
            ``callback(learner, iteration, loss)``, called between chunks (a few times a second)
            and after the last iteration; return True to stop training.

        checkpoint, checkpoint_every : path and int, optional
            Save the learner to ``checkpoint`` (atomically) whenever the iteration count reaches
            a multiple of ``checkpoint_every``; ``mf.load(checkpoint).fit(...)`` then resumes bit
            for bit.
        on_divergence : {"raise", "skip"}
            What a non-finite loss or meta-gradient does: stop with TrainingDivergedError
            (naming the iteration, keeping the last finite state), or skip that batch (no
            update, NaN in the history) and go on.

        Ctrl-C (SIGINT) stops training at the end of the current chunk (within about a tenth of
        a second) and raises KeyboardInterrupt; the learner then holds the last completed
        meta-iteration, its history matches, and ``fit`` can simply be called again.

        Returns
        -------
        numpy.ndarray
            The mean query loss after adaptation of each meta-iteration run by this call.
        """
        tasks = check_tasks(tasks)
        iterations = _validation.integer(iterations, "iterations", minimum=0, maximum=_validation.MAX_SEED)
        meta_batch = _validation.count(meta_batch, "meta_batch")

        per_task = 3 * self._model.num_params + (tasks._values_per_task() if isinstance(tasks, TaskFamily) else 0)
        _memory.check(meta_batch * per_task * self._dtype.itemsize, f"a meta-batch of {meta_batch} tasks")

        def run_chunk(count: int, done: int) -> np.ndarray:
            losses = self._run_chunk(tasks, count, meta_batch, done, iterations)
            self._tasks = tasks if isinstance(tasks, TaskFamily) else None  # what save() records
            return losses

        return run_in_chunks(self, iterations, progress, callback, run_chunk, checkpoint, checkpoint_every,
                             on_divergence)

    def _run_chunk(self, tasks: Any, count: int, meta_batch: int, done: int, total: int) -> np.ndarray:
        if isinstance(tasks, TaskFamily):
            losses, diverged = self._native_fit(tasks, count, meta_batch, done, total)
            self._record(losses)
            if diverged:
                raise TrainingDivergedError(self._iteration)
            return losses
        for k in range(count):
            rng = np.random.default_rng([self._seed, self._iteration])
            self._checked_step(self._arrays(sample_with(tasks, meta_batch, rng)), done + k, total)
        return np.concatenate(self._history[-count:])

    def _checked_step(self, arrays: tuple[np.ndarray, ...], position: int, total: int) -> float:
        updated, loss = self._step(arrays, position, total)
        if not updated:
            raise TrainingDivergedError(self._iteration)
        self._record(np.array([loss]))
        return loss

    def _record(self, losses: np.ndarray) -> None:
        if len(losses):
            self._history.append(np.asarray(losses, dtype=np.float64))
            self._iteration += len(losses)

    # ------------------------------------------------------------- adaptation
    def adapt(self, x_support: Any, y_support: Any, steps: int | None = None) -> np.ndarray:
        """Parameters adapted to one new task from its support set (``steps`` inner steps;
        None: as many as in meta-training)."""
        x = self._floats(x_support, "x_support")
        y = self._targets(y_support, "y_support")
        steps = self._default_steps(x.shape[0]) if steps is None else _validation.count(steps, "steps", minimum=0)
        return self._impl.adapt(x, y, steps)

    def predict(self, x: Any, params: np.ndarray | None = None) -> np.ndarray:
        """Model outputs for ``x`` with ``params`` (default: the meta-learned theta)."""
        params = self.theta if params is None else self._floats(params, "params")
        return self._model.forward(params, self._floats(x, "x"))

    def evaluate(self, tasks: Tasks | TaskBatch, num_tasks: int = 600, steps: Sequence[int] = (0, 1, 5, 10),
                 seed: int = 123) -> EvaluationReport:
        """Query loss (and accuracy, for bce and softmax_ce) after each number of adaptation
        ``steps``, as mean and 95% confidence interval over ``num_tasks`` held-out tasks.

        Tasks come from ``tasks.sample(num_tasks, seed=seed)`` (use a seed that training did not
        use), from a sampler called with ``np.random.default_rng(seed)``, or are the given
        TaskBatch itself. Adaptation can diverge when it runs far longer than in
        meta-training; a task whose adaptation overflows counts as an infinite loss.
        """
        tasks = check_tasks(tasks, allow_batch=True)
        counts = sorted({_validation.count(s, "steps[i]", minimum=0) for s in steps})
        if not counts:
            raise ValueError("steps must name at least one number of adaptation steps")
        num_tasks = _validation.count(num_tasks, "num_tasks")
        seed = _validation.seed(seed)
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
        """Writes the learner (configuration, parameters, optimizer state, history) to one
        ``.npz`` file, atomically; :func:`metafast.load` restores it exactly."""
        model = self._model
        config = dict(kind=type(self).__name__, model=dict(sizes=list(model.sizes), activation=model.activation,
                                                          output=model.output, bias=model.bias), **self._config())
        if self._tasks is not None:
            config["tasks"] = dict(family=type(self._tasks).__name__, **self._tasks._fields())
        io.write_archive(path, config, dict(self._state(), iteration=np.array(self._iteration), history=self.history))

    @classmethod
    def _from_saved(cls, config: dict[str, Any], arrays: dict[str, np.ndarray], num_threads: int | None) -> Any:
        settings = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()
                    if k not in ("kind", "model", "tasks")}
        learner = cls(MLP(**config["model"]), num_threads=num_threads, **settings)
        if "tasks" in config:
            learner._tasks = family_from_config(config["tasks"])
        learner._restore(arrays)
        restore_progress(learner, arrays)
        return learner

    # ---------------------------------------------------------------- helpers
    def _floats(self, value: Any, name: str) -> np.ndarray:
        """Floating data in the learner's dtype (learners convert; MLP functions do not)."""
        array = np.asarray(value)
        if array.dtype.kind not in "fiu":
            raise TypeError(f"{name} must be a numeric array, got dtype {array.dtype}")
        return _validation.converted(array, self._dtype, name)

    def _targets(self, y: Any, name: str) -> np.ndarray:
        return _validation.labels(y, name) if self._loss == "softmax_ce" else self._floats(y, name)

    def _arrays(self, batch: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if not isinstance(batch, TaskBatch):
            raise TypeError(f"batch must be a metafast.TaskBatch, got {type(batch).__name__}")
        if batch.has_labels != (self._loss == "softmax_ce"):
            raise ValueError("the batch has integer class labels: use loss 'softmax_ce'" if batch.has_labels
                             else f"loss '{self._loss}' needs integer class labels in the batch")
        if batch.dtype != self._dtype:
            batch = batch.astype(self._dtype)
        return batch.x_support, batch.y_support, batch.x_query, batch.y_query

    # Hooks for subclasses.
    theta: np.ndarray

    def _native_fit(self, family: TaskFamily, count: int, meta_batch: int, done: int, total: int) -> tuple[np.ndarray, bool]:
        raise NotImplementedError

    def _step(self, arrays: tuple[np.ndarray, ...], position: int, total: int) -> tuple[bool, float]:
        raise NotImplementedError

    def _default_steps(self, rows: int) -> int:
        raise NotImplementedError

    def _config(self) -> dict[str, Any]:
        raise NotImplementedError

    def _state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError
