"""What the supervised meta-learners (Meta-SGD, MAML and Reptile) add to every learner: a loss, task
families and samplers to train on, single meta-steps, adaptation, prediction and evaluation."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import _memory, _validation, io
from ._archive_checks import Refused
from ._atomic_file import check_destination
from ._docs import shared_docs
from ._interrupts import deferred_interrupt
from ._share import FailedElsewhere, Share
from .learner import Callback, Learner
from .errors import TrainingDivergedError
from .evaluation import EvaluationReport
from .networks import NETWORKS, Network
from .task_batch import TaskBatch
from .tasks import Sampler, TaskFamily, TaskPool, Tasks, check_tasks, family_from_config, sample_with


class SupervisedLearner(Learner, abstract=True):
    """Base class of the supervised learners: :class:`~metafast.MetaSGD`, :class:`~metafast.MAML`
    and :class:`~metafast.Reptile`.

    Parameters
    ----------
    model, dtype, seed
        As for :class:`~metafast.learner.Learner`; the seed also keys the task stream of ``fit``.
    loss : {"mse", "bce", "softmax_ce"}
        Loss of the support and query sets.

    Notes
    -----
    Besides the hooks of :class:`~metafast.learner.Learner`, a subclass provides ``_step``
    (one meta-iteration on a batch), ``_native_fit`` (a chunk of meta-iterations on a
    built-in family, in the core) and ``_adapted`` (the core's adaptation, with the inner
    loop of meta-training when no step count is given).
    """

    _adam_betas: tuple[float, float]  # set by the subclass, whose Adam they configure
    _adam_eps: float
    _networks = NETWORKS

    def __init__(self, model: Network, loss: str, dtype: Any, seed: int) -> None:
        super().__init__(model, dtype, seed)
        self._loss = _validation.string(loss, "loss")
        self._tasks: TaskFamily | None = None
        self._tasks_config: dict[str, Any] | None = None

    @property
    def loss(self) -> str:
        """Loss of the support and query sets: "mse", "bce" or "softmax_ce"."""
        return self._loss

    @property
    def adam_betas(self) -> tuple[float, float]:
        """Adam's decay rates of its two moments: in the meta-optimizer (Meta-SGD, MAML) or the
        inner loop (Reptile)."""
        return self._adam_betas

    @property
    def adam_eps(self) -> float:
        """Adam's epsilon: in the meta-optimizer (Meta-SGD, MAML) or the inner loop (Reptile)."""
        return self._adam_eps

    @property
    def tasks(self) -> TaskFamily | None:
        """The task family of the last ``fit``, if it was one (not a Python sampler). A learner
        loaded from a file has the synthetic family it was saved with, but None for a family
        drawn from the user's data, which the file describes (``tasks_config``) but does not
        hold."""
        return self._tasks

    @property
    def tasks_config(self) -> dict[str, Any] | None:
        """What a saved file records of the family of the last ``fit``: its class name and
        fields (for a data-set family: its configuration, the data's size and SHA-256
        fingerprint, and ``data_stored=False``); None after a Python sampler or no fit."""
        if self._tasks is not None:
            return self._tasks._config()
        return None if self._tasks_config is None else dict(self._tasks_config)

    # --------------------------------------------------------------- training
    def meta_step(self, batch: TaskBatch) -> float:
        """One meta-iteration on the tasks of ``batch``.

        Parameters
        ----------
        batch : TaskBatch
            The meta-batch (converted to the learner's dtype).

        Returns
        -------
        float
            The mean query loss after adaptation.

        Raises
        ------
        TrainingDivergedError
            If a result is not finite; the learner is then left unchanged.
        """
        arrays = self._arrays(batch)
        # Ctrl-C waits until the step is recorded: the learner holds it whole or not at all.
        with self._training, deferred_interrupt(), self._lock:
            loss = self._recorded_step(arrays, Share(len(arrays[0])))
        if loss is None:
            raise TrainingDivergedError(self._iteration, hint=self._divergence_hint)
        return loss

    @shared_docs
    def fit(self, tasks: Tasks, iterations: int = 10_000, meta_batch: int = 25, progress: bool = True,
            callback: Callback | None = None, checkpoint: io.PathLike | None = None,
            checkpoint_every: int | None = None, on_divergence: str = "raise", comm: Any = None) -> np.ndarray:
        """Meta-trains for ``iterations`` meta-iterations of ``meta_batch`` tasks each.

        Parameters
        ----------
        tasks : TaskFamily, TaskBatch or callable
            A task family (fast path: whole chunks of iterations run in C++ without the
            GIL); a TaskBatch, a fixed pool whose tasks each meta-batch draws uniformly with
            replacement (``mf.tasks.TaskPool``, also native); or ``sampler(num_tasks, rng) ->
            TaskBatch`` (one call per iteration; ``rng`` is seeded from ``(seed, iteration)``).
        iterations : int
            Meta-iterations to run.
        meta_batch : int
            Tasks in each.
        {training loop parameters}
        {comm parameter}

        Returns
        -------
        numpy.ndarray
            The mean query loss after adaptation of each meta-iteration run by this call.

        Notes
        -----
        {training loop notes}
        """
        tasks = self._native_family(check_tasks(tasks, allow_batch=True))
        meta_batch = _validation.count(meta_batch, "meta_batch")
        # The core sizes the run: task slots, every thread's workspace, a family's sampled batch.
        family = tasks._impl if isinstance(tasks, TaskFamily) else None
        _memory.check(self._impl.bytes_needed(meta_batch, family), f"a meta-batch of {meta_batch} tasks")

        share = self._share_of(meta_batch, comm)

        def run_chunk(count: int) -> bool:
            before = self._iteration
            if isinstance(tasks, TaskFamily):
                losses, diverged = self._native_fit(tasks, count, share)
                self._record(losses)
            else:
                diverged = self._sampled_fit(tasks, count, share)
            if self._iteration > before:  # what save() records; a fit that ran nothing keeps the last
                self._tasks = tasks if isinstance(tasks, TaskFamily) else None
                self._tasks_config = None
            return diverged

        return self._train(iterations, run_chunk, progress, callback, checkpoint, checkpoint_every, on_divergence,
                           share)

    def _native_family(self, tasks: Any) -> Any:
        """``tasks`` as fit draws from it: a TaskBatch becomes a TaskPool in the learner's
        dtype; a family's targets must suit the loss."""
        if isinstance(tasks, TaskBatch):
            classes = self._model.output_width if tasks.has_labels else None
            tasks = TaskPool(TaskBatch(*self._arrays(tasks)), classes=classes)  # checked, in the learner's dtype
        if isinstance(tasks, TaskFamily):
            tasks._check_dtype(self._dtype)  # data beyond float32's range, named before training
            self._model._check_rows_shape(getattr(tasks, "input_shape", None), "the tasks' rows")
        if isinstance(tasks, TaskFamily) and self._loss == "bce" and not tasks._unit_targets:
            raise ValueError("loss 'bce' needs targets in [0, 1], but the tasks' targets leave that range: use 'mse'")
        return tasks

    def _sampled_fit(self, sampler: Sampler, count: int, share: Share) -> bool:
        """``count`` meta-iterations on the batches of a Python sampler; True if one diverged.
        Every process draws the whole batch (the same, from the same generator) and computes
        its share; they agree that all have it before the core combines them."""
        for _ in range(count):
            rng = np.random.default_rng([self._seed, self._iteration])
            try:
                arrays, error = self._arrays(sample_with(sampler, share.total, rng)), None
            except Exception as failure:  # noqa: BLE001 - reported to every process, then raised
                arrays, error = None, failure
            if not share.all_ok(error is None):
                raise error if error is not None else FailedElsewhere
            if self._recorded_step(arrays, share) is None:
                return True
        return False

    def _recorded_step(self, arrays: tuple[np.ndarray, ...], share: Share) -> float | None:
        """One meta-iteration, recorded; None, changing nothing, if it diverged."""
        self._check_run_memory(arrays, len(arrays[0]), f"a meta-batch of {len(arrays[0])} tasks")
        updated, loss = self._step(arrays, share)
        share.raise_if_failed_elsewhere()
        if not updated:
            return None
        self._record(np.array([loss]))
        return loss

    # ------------------------------------------------------------- adaptation
    def adapt(self, x_support: Any, y_support: Any, steps: int | None = None) -> np.ndarray:
        """Parameters adapted to one new task from its support set.

        Parameters
        ----------
        x_support : array_like, shape (rows, inputs) or (rows, C, H, W)
            The support inputs (a ConvNet's images, or its flat rows).
        y_support : array_like
            The support targets: shape (rows, outputs), or (rows,) integer labels for
            softmax_ce.
        steps : int, optional
            Adaptation steps; None: as many as in meta-training.

        Returns
        -------
        numpy.ndarray
            The adapted parameters, in the layout of theta.
        """
        x = self._inputs(x_support, "x_support")
        y = self._targets(y_support, "y_support")
        self._check_run_memory((x,), 1, f"an adaptation on {len(x):,} rows")
        steps = None if steps is None else _validation.count(steps, "steps", minimum=0)
        params = self._adapted(x, y, steps)
        if steps is not None and not np.all(np.isfinite(params)):
            self._diverged_beyond_training([steps], [1.0])
        return params

    def predict(self, x: Any, params: np.ndarray | None = None, *, batch_norm: str = "batch",
                x_support: Any = None) -> np.ndarray:
        """Model outputs.

        Parameters
        ----------
        x : array_like, shape (rows, inputs) or (rows, C, H, W)
            The inputs.
        params : array_like, optional
            Parameters to use, such as those :meth:`adapt` returns; default: theta.
        batch_norm : {"batch", "support"}
            Where a ConvNet's batch normalisation takes its statistics: ``"batch"``, the rows
            of ``x`` (as meta-training scores the query set: each prediction depends on the
            other rows of ``x``); ``"support"``, the rows of ``x_support`` (each row's
            prediction depends on that row and the support set alone). Networks without batch
            normalisation give the same outputs either way.
        x_support : array_like, optional
            The support inputs, for ``batch_norm="support"``.

        Returns
        -------
        numpy.ndarray, shape (rows, outputs)
            The model's outputs.
        """
        params = self.theta if params is None else self._floats(params, "params")
        x = self._inputs(x, "x")
        if batch_norm not in ("batch", "support"):
            raise ValueError(f"batch_norm must be 'batch' or 'support', got {batch_norm!r}")
        if batch_norm == "batch":
            if x_support is not None:
                raise ValueError("x_support applies only with batch_norm='support'")
            return self._model.forward(params, x)
        if x_support is None:
            raise ValueError("batch_norm='support' needs x_support, the support set whose statistics it uses")
        support = self._inputs(x_support, "x_support")
        if not getattr(self._model, "batch_norm", False):
            return self._model.forward(params, x)
        both = np.concatenate([support, x])
        self._model._pass_arguments(params, both)  # the memory check before the core allocates
        return self._model._impl.forward(params, both, statistics_rows=len(support))[len(support):]

    def evaluate(self, tasks: Tasks | TaskBatch, num_tasks: int | None = None, steps: Sequence[int] | None = None,
                 seed: int = 123) -> EvaluationReport:
        """Query loss (and accuracy, for bce and softmax_ce) after each number of adaptation
        steps, as mean and 95% confidence interval over held-out tasks.

        Parameters
        ----------
        tasks : TaskFamily, callable or TaskBatch
            Where the tasks come from: ``tasks.sample(num_tasks, seed=seed)``, a sampler called
            with ``np.random.default_rng(seed)``, or the given TaskBatch itself.
        num_tasks : int, optional
            Tasks to draw (default 600); for a TaskBatch, its first ``num_tasks`` tasks
            (default: all of them).
        steps : sequence of int, optional
            Numbers of adaptation steps to report. None: (0, 1, 5, 10), or for Meta-SGD 0, 1
            and its ``inner_steps`` (its step sizes are learned for those).
        seed : int
            Seed of the held-out tasks; use one that training did not use.

        Returns
        -------
        EvaluationReport
            One row per number of steps, in increasing order.

        Notes
        -----
        Adaptation can diverge when it runs far longer than in meta-training; a task whose
        adaptation overflows counts as an infinite loss. Where tasks adapted with more steps
        than Meta-SGD meta-trained with diverge, it warns
        (:class:`~metafast.BeyondTrainedStepsWarning`).
        """
        tasks = check_tasks(tasks, allow_batch=True)
        counts = _validation.step_counts(self._default_evaluation_steps() if steps is None else steps)
        if num_tasks is not None:
            num_tasks = _validation.count(num_tasks, "num_tasks")
        seed = _validation.seed(seed)
        self._check_evaluation_memory(tasks, num_tasks, len(counts) + 1)
        if isinstance(tasks, TaskBatch):
            if num_tasks is not None and num_tasks > tasks.num_tasks:
                raise ValueError(f"num_tasks is {num_tasks}, but the batch holds only {tasks.num_tasks} tasks")
            batch = tasks if num_tasks is None else tasks[:num_tasks]
        elif isinstance(tasks, TaskFamily):
            batch = tasks.sample(num_tasks or 600, seed=seed, dtype=self._dtype, num_threads=self.num_threads)
        else:
            batch = sample_with(tasks, num_tasks or 600, np.random.default_rng(seed))
        # Step 0 too, always: an adaptation diverged when its loss left that one far behind.
        evaluated = counts if counts[0] == 0 else [0, *counts]
        arrays = self._arrays(batch)
        self._check_run_memory(arrays, 1, f"an evaluation on tasks of {max(len(arrays[0][0]), len(arrays[2][0])):,} rows")
        losses, accuracies = self._impl.evaluate(*arrays, evaluated)
        shown = slice(len(evaluated) - len(counts), None)
        report = EvaluationReport.from_samples(tuple(counts), losses[:, shown],
                                               None if self._loss == "mse" else accuracies[:, shown],
                                               before=losses[:, 0])
        self._diverged_beyond_training(counts, report.diverged)
        return report

    def _check_evaluation_memory(self, tasks: Any, num_tasks: int | None, columns: int) -> None:
        """ValueError before an evaluation draws tasks or allocates its results (a loss and an
        accuracy per task and number of steps, in float64) beyond the memory available."""
        count = (tasks.num_tasks if num_tasks is None else num_tasks) if isinstance(tasks, TaskBatch) else (num_tasks or 600)
        drawn = tasks._sample_bytes(count, self._dtype) if isinstance(tasks, TaskFamily) else 0
        _memory.check(2 * 8 * count * columns + drawn, f"an evaluation of {count:,} tasks at {columns - 1:,} step counts")

    def export_onnx(self, path: io.PathLike | None, x_support: Any, y_support: Any, steps: int | None = None) -> Any:
        """Adapts to a support set and exports the adapted model as ONNX
        (:meth:`MLP.to_onnx <metafast.MLP.to_onnx>`; needs the ``onnx`` extra).

        Parameters
        ----------
        path : str or path-like or None
            The file to write, atomically; None: write nothing.
        x_support, y_support, steps
            As for :meth:`adapt`.

        Returns
        -------
        onnx.ModelProto
            The adapted model: onnxruntime gives ``predict(x, adapt(x_support, y_support, steps))``.
        """
        if not hasattr(self._model, "to_onnx"):
            raise TypeError(f"export_onnx exports an MLP; this learner's model is a {type(self._model).__name__}")
        if path is not None:
            check_destination(path, "path")  # before adapting
        return self._model.to_onnx(self.adapt(x_support, y_support, steps), path)

    # -------------------------------------------------------------------- I/O
    def _config(self) -> dict[str, Any]:
        config = super()._config()
        tasks = self.tasks_config
        if tasks is not None:
            config["tasks"] = tasks
        return config

    @classmethod
    def _from_saved(cls, config: dict[str, Any], arrays: dict[str, np.ndarray], num_threads: int | None) -> Any:
        arguments = {key: value for key, value in config.items() if key != "tasks"}
        learner = super()._from_saved(arguments, arrays, num_threads)
        if "tasks" in config:
            learner._tasks = family_from_config(config["tasks"])
            learner._tasks_config = None if learner._tasks is not None else dict(config["tasks"])
        return learner

    def _pickled_tasks(self) -> Any:
        return self._tasks

    def _attach_tasks(self, tasks: Any) -> None:
        """Gives an unpickled learner the family of its last fit, which must be the one its
        state describes (a data-set family's data is not in the state)."""
        if not isinstance(tasks, TaskFamily):
            raise Refused(f"holds {type(tasks).__name__} where the task family of its last fit belongs")
        if tasks._config() != self.tasks_config:
            raise Refused("holds a task family that is not the one its state describes")
        self._tasks, self._tasks_config = tasks, None

    # ---------------------------------------------------------------- helpers
    def _targets(self, y: Any, name: str) -> np.ndarray:
        if self._loss == "softmax_ce":
            return _validation.labels(y, name)
        targets = self._floats(y, name)
        if targets.ndim == 1 and self._model.output_width == 1:  # one output: (rows,) as the families accept
            targets = targets.reshape(-1, 1)
        return targets

    def _check_run_memory(self, arrays: tuple[np.ndarray, ...], tasks: int, what: str) -> None:
        """ValueError before the core runs `tasks` tasks at once on the x arrays among `arrays`
        (a task batch's, or one task's rows) beyond the memory available: the task slots and
        every thread's workspaces, as fit checks a family's."""
        rows = max(len(x[0]) if x.ndim == 3 else len(x) for x in arrays[::2])
        _memory.check(self._impl.bytes_needed(tasks, None, rows), what)

    def _inputs(self, x: Any, name: str) -> np.ndarray:
        """Input rows in the learner's dtype, as the core takes them (a ConvNet's images flat)."""
        return self._model._input_rows(self._floats(x, name), name)

    def _arrays(self, batch: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if not isinstance(batch, TaskBatch):
            raise TypeError(f"batch must be a metafast.TaskBatch, got {type(batch).__name__}")
        if batch.has_labels != (self._loss == "softmax_ce"):
            raise ValueError("the batch has integer class labels: use loss 'softmax_ce'" if batch.has_labels
                             else f"loss '{self._loss}' needs integer class labels in the batch")
        if batch.dtype != self._dtype:
            batch = batch.astype(self._dtype)
        rows = self._model._input_rows  # images as flat rows, copied once here
        return rows(batch.x_support, "x_support", 2), batch.y_support, rows(batch.x_query, "x_query", 2), batch.y_query

    # Hooks for subclasses.
    def _step(self, arrays: tuple[np.ndarray, ...], share: Share) -> tuple[bool, float]:
        """One meta-iteration in the core on this process's share of the batch: (whether it
        updated, the mean query loss of the whole batch)."""
        raise NotImplementedError

    def _native_fit(self, family: TaskFamily, count: int, share: Share) -> tuple[np.ndarray, bool]:
        """``count`` meta-iterations on ``family`` in the core, this process computing its
        share of each meta-batch: (their losses, whether the next one diverged)."""
        raise NotImplementedError

    def _default_evaluation_steps(self) -> tuple[int, ...]:
        """The step counts ``evaluate`` reports by default."""
        return (0, 1, 5, 10)

    def _diverged_beyond_training(self, counts: Sequence[int], diverged: Sequence[float]) -> None:
        """Told the fraction of tasks whose adaptation diverged after each number of steps:
        Meta-SGD warns where that is beyond its trained steps; the others adapt beyond their
        training as they were trained."""

    def _adapted(self, x: np.ndarray, y: np.ndarray, steps: int | None) -> np.ndarray:
        """The core's adaptation by ``steps`` steps (None: the inner loop of meta-training)."""
        raise NotImplementedError
