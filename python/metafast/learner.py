"""The base of every learner, supervised and RL: the model, its dtype and seed, the record of
meta-iterations (their count and history), the chunked training loop (progress bar, callback,
Ctrl-C, checkpoints, divergence), and saving with the optimizer state to one file."""

from __future__ import annotations

import inspect
import threading
import time
from typing import Any, Callable, Optional

import numpy as np
from tqdm.auto import tqdm

from . import _memory, _registry, _validation, io
from ._archive_checks import Refused
from ._atomic_file import check_destination
from ._interrupts import deferred_interrupt
from ._share import Share, Status, raise_agreed_error
from .errors import TrainingDivergedError
from .mlp import MLP
from .networks import Network, check_network, network_config, network_from_config

Callback = Callable[[Any, int, float], Optional[bool]]

# Training hands the core chunks of meta-iterations sized to take about this long, so progress
# bars, callbacks and Ctrl-C are served a few times a second.
CHUNK_SECONDS = 0.1


class Learner:
    """Base class of every metafast learner.

    A learner holds a network, computes in one floating dtype, draws everything random from one
    seed, counts the meta-iterations it has taken and records the value of each (its history).
    This class owns that state, the chunked training loop behind every ``fit``, and saving:
    one file with the configuration, the parameters, the optimizer state and the history,
    which :func:`metafast.load` restores exactly.

    Parameters
    ----------
    model : MLP or ConvNet
        The network; its parameters are theta (or their first part). The learners of
        reinforcement learning take an MLP (the policy).
    dtype : {"float32", "float64"}
        Precision of all computations; floating data is converted to it.
    seed : int
        Seeds the initial parameters and every random stream of training.

    Notes
    -----
    A subclass creates ``self._impl``, the core's learner (``get_params``, ``set_params``,
    ``get_optimizer_state``, ``set_optimizer_state``, ``num_threads``), names the vectors
    ``get_params`` returns in ``_param_names`` and its constructor's other keyword arguments
    in ``_hyperparameters``. Each concrete subclass registers itself, by its class name, as
    the kind of learner a saved file can hold; a class statement with ``abstract=True``
    (a base of other learners) does not.
    """

    _impl: Any
    _param_names: tuple[str, ...] = ("theta",)
    _progress_label = "meta-training"
    _divergence_hint = "a smaller meta_lr"  # what to change when training diverges
    _progress_metric = "loss"
    _networks: tuple[type, ...] = (MLP,)  # the networks the learner takes

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not abstract:
            _registry.register(cls)

    def __init__(self, model: Network, dtype: Any, seed: int) -> None:
        self._model = check_network(model, self._networks)
        self._dtype = _validation.float_dtype(dtype)
        self._seed = _validation.seed(seed)
        self._requested_threads: int | None = None  # as asked: None (all cores) travels as such
        self._iteration = 0
        self._meta_batch: int | None = None  # of the last fit: what continuing it bit for bit needs
        self._history: list[np.ndarray] = []
        # The meta-iterations the running fit call covers (None outside fit).
        self._current_fit: range | None = None
        # One meta-iteration at a time per learner (the iteration counter keys the tasks); held
        # for each chunk of training, so that snapshots (save) see one iteration's state.
        self._lock = threading.RLock()
        # One training call at a time: fit and meta_step from several threads run one after
        # another, each doing exactly its own iterations.
        self._training = threading.RLock()
        self._snapshots_waiting: list[None] = []  # saves waiting for the chunk in progress to end

    # ----------------------------------------------------------------- state
    @property
    def model(self) -> Network:
        """The network (:class:`~metafast.MLP` or :class:`~metafast.ConvNet`) whose parameters the
        learner meta-learns."""
        return self._model

    @property
    def dtype(self) -> np.dtype:
        """Precision of all computations (float32 or float64)."""
        return self._dtype

    @property
    def seed(self) -> int:
        """The seed of the initial parameters and of every random stream of training."""
        return self._seed

    @property
    def iteration(self) -> int:
        """Meta-iterations taken so far; ``fit`` continues the task stream from here."""
        return self._iteration

    @property
    def meta_batch(self) -> int | None:
        """Tasks per meta-iteration of the last ``fit`` (saved with the learner; None before any,
        or for a file from before it was recorded): a run continues bit for bit with the same."""
        return self._meta_batch

    @property
    def history(self) -> np.ndarray:
        """The value of every meta-iteration taken so far: the mean query loss after adaptation
        (the mean return after adaptation for reinforcement learning); NaN for a skipped one."""
        return np.concatenate(self._history) if self._history else np.empty(0)

    @property
    def num_threads(self) -> int:
        """Threads over the tasks of a meta-batch (assign None for all cores). Results do not
        depend on it."""
        return self._impl.num_threads

    @num_threads.setter
    def num_threads(self, value: int | None) -> None:
        self._impl.num_threads = self._threads(value)

    def _threads(self, value: int | None) -> int:
        """``num_threads`` checked for the core (0: all cores) and recorded as asked, so that a
        pickle made on one machine uses all the cores of the next."""
        threads = _validation.num_threads(value)
        self._requested_threads = threads or None
        return threads

    @property
    def theta(self) -> np.ndarray:
        """Meta-learned initial parameters (a copy; assign to change them)."""
        return self._params()["theta"]

    @theta.setter
    def theta(self, value: Any) -> None:
        self._set_param("theta", value)

    # --------------------------------------------------------------- training
    def _train(self, iterations: int, run_chunk: Callable[[int], bool], progress: bool, callback: Callback | None,
               checkpoint: io.PathLike | None, checkpoint_every: int | None, on_divergence: str,
               share: Share) -> np.ndarray:
        """The training loop of every ``fit``: runs ``iterations`` meta-iterations in chunks and
        returns their history.

        ``run_chunk(count)`` runs up to ``count`` meta-iterations from ``self.iteration``,
        records them (:meth:`_record`) and returns whether it stopped at one that diverged.
        Chunks are sized to take about CHUNK_SECONDS and end on multiples of
        ``checkpoint_every``. While the loop runs, ``self._current_fit`` is the range of
        meta-iterations it covers. ``share`` is this process's share of each meta-batch: in a
        distributed run the processes agree between chunks (:mod:`metafast._share`), the first
        one writing checkpoints and showing progress.
        """
        iterations = _validation.integer(iterations, "iterations", minimum=0, maximum=_validation.MAX_SEED)
        if on_divergence not in ("raise", "skip"):
            raise ValueError(f"on_divergence must be 'raise' or 'skip', got {on_divergence!r}")
        if checkpoint_every is not None:
            checkpoint_every = _validation.integer(checkpoint_every, "checkpoint_every", minimum=1)
            if checkpoint is None:
                raise ValueError("checkpoint_every needs a checkpoint path")
        elif checkpoint is not None:
            raise ValueError("checkpoint needs checkpoint_every: how many meta-iterations apart to save")
        # One fit (or meta_step) at a time: each runs exactly its iterations, from where the
        # previous one left the learner.
        with self._training:
            run = range(self._iteration, self._iteration + iterations)
            chunk, stop, error = 1, False, None
            if checkpoint_every and share.is_root:  # a bad destination fails now, not after a chunk
                try:
                    check_destination(checkpoint, "checkpoint")  # type: ignore[arg-type]  # checked above
                except (TypeError, ValueError) as failure:
                    error = failure  # raised at the first agreement, by every process
            outer_fit, self._current_fit = self._current_fit, run
            try:
                with tqdm(total=iterations, disable=not (progress and share.is_root), desc=self._progress_label, unit="it",
                          leave=False) as bar, deferred_interrupt() as interrupted:
                    while True:
                        # Between chunks, with the learner consistent: every process agrees on the
                        # next chunk, or on stopping, or on the error one of them met.
                        proposal = min(chunk, run.stop - self._iteration)
                        if checkpoint_every:
                            proposal = min(proposal, checkpoint_every - self._iteration % checkpoint_every)
                        statuses = share.agree(Status(proposal, stop, interrupted(), error))
                        raise_agreed_error(statuses, error)
                        if any(status.interrupted for status in statuses):
                            raise KeyboardInterrupt
                        if statuses[0].stop or self._iteration >= run.stop:
                            break
                        started = time.perf_counter()
                        try:
                            values = self._recorded_chunk(run_chunk, statuses[0].chunk, on_divergence, share)
                        except Exception as failure:  # noqa: BLE001 - raised at the next agreement, by every process
                            error = failure
                            share.abandon()  # where it failed before the exchange, the others wait there
                            continue
                        elapsed = time.perf_counter() - started
                        if not len(values):  # stopped by Ctrl-C in its first meta-iteration
                            continue
                        self._meta_batch = share.total
                        bar.update(len(values))
                        bar.set_postfix({self._progress_metric: f"{values[-1]:.4g}"})
                        if elapsed < CHUNK_SECONDS / 2:
                            chunk *= 2
                        elif elapsed > 2 * CHUNK_SECONDS:
                            chunk = max(1, chunk // 2)
                        try:
                            if checkpoint_every and self._iteration % checkpoint_every == 0 and share.is_root:
                                self.save(checkpoint)  # type: ignore[arg-type]  # not None: checked above
                            if callback is not None:
                                stop = bool(callback(self, self._iteration, float(values[-1])))
                        except Exception as failure:  # noqa: BLE001 - as above
                            error = failure
            finally:
                self._current_fit = outer_fit
            return self.history[run.start:]

    @classmethod
    def _learner_bytes(cls, num_params: int, alpha_vectors: int, dtype: np.dtype) -> int:
        """Bytes the core's learner keeps for its life, for theta of ``num_params`` values and
        ``alpha_vectors`` vectors of alpha as long: the core's own sizes (``learner_bytes``),
        checked before a learner is built and before a file's is loaded."""
        raise NotImplementedError

    def _check_learner_memory(self, num_params: int, alpha_vectors: int) -> None:
        """ValueError, before anything is allocated, when the learner would not fit in memory."""
        _memory.check(self._learner_bytes(num_params, alpha_vectors, self._dtype),
                      f"a {type(self).__name__} learner of {num_params:,} parameters")

    def _share_of(self, meta_batch: int, comm: Any) -> Share:
        """This process's share of meta-batches of ``meta_batch`` tasks: all of them, or with an
        MPI communicator its part of a distributed run (checked to be the same run on every
        process)."""
        if comm is None:
            return Share(meta_batch)
        from . import distributed  # mpi4py is needed only here

        return distributed.share_of(self, comm, meta_batch)

    def _recorded_chunk(self, run_chunk: Callable[[int], bool], count: int, on_divergence: str,
                        share: Share) -> np.ndarray:
        """One chunk of the training loop; returns the values it recorded."""
        while self._snapshots_waiting:  # a lock is not fair: let waiting saves in first
            time.sleep(0.0001)
        with self._lock:
            recorded = len(self._history)
            diverged = run_chunk(count)
            share.raise_if_failed_elsewhere()  # after recording what this process completed
            if diverged:
                if on_divergence == "raise":
                    raise TrainingDivergedError(self._iteration, hint=self._divergence_hint)
                self._record(np.array([np.nan]))  # the bad batch, skipped: no update
            return np.concatenate(self._history[recorded:]) if len(self._history) > recorded else np.empty(0)

    def _record(self, values: np.ndarray) -> None:
        """Counts meta-iterations that ran and keeps their values in the history."""
        if len(values):
            self._history.append(np.asarray(values, dtype=np.float64))
            self._iteration += len(values)

    # -------------------------------------------------------------------- I/O
    def save(self, path: io.PathLike) -> None:
        """Writes the learner to one ``.npz`` file, atomically.

        The file holds the configuration, the parameters, the optimizer state and the history
        (format: :mod:`metafast.io`); :func:`metafast.load` restores the learner exactly, so
        training resumes bit for bit.

        Parameters
        ----------
        path : str or path-like
            The file to write (replaced if it exists).
        """
        io.write_archive(path, *self._snapshot())

    def _snapshot(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The file's config and arrays, of one meta-iteration even while another thread trains."""
        self._snapshots_waiting.append(None)  # list.append and pop are atomic, += is not
        try:
            with self._lock:
                return self._config(), self._state()
        finally:
            self._snapshots_waiting.pop()

    # ------------------------------------------------------- pickle and copy
    def __reduce__(self) -> tuple[Any, ...]:
        """Pickles (and ``copy.copy``/``copy.deepcopy`` copies) as the bytes :meth:`save` writes,
        which unpickling reads through the same checks as :func:`metafast.load`: the copy is
        independent of this learner and continues training bit for bit as it would."""
        return io.unpickled_learner, (io.archive_bytes(*self._snapshot()), self._pickled_tasks(), self._requested_threads)

    def _pickled_tasks(self) -> Any:
        """What a pickle holds beside the file's bytes: the tasks the learner trains on, which
        the file describes but does not hold (None: nothing)."""
        return None

    @classmethod
    def _rebuilt(cls, config: dict[str, Any], arrays: dict[str, np.ndarray], num_threads: int | None,
                 tasks: Any = None) -> Any:
        """The learner of a checked file (``tasks`` None) or pickle (``tasks`` what
        :meth:`_pickled_tasks` gave)."""
        learner = cls._from_saved(config, arrays, num_threads)
        if tasks is not None:
            learner._attach_tasks(tasks)
        return learner

    def _attach_tasks(self, tasks: Any) -> None:
        """Gives an unpickled learner the tasks its pickle held beside the file's bytes."""
        raise Refused(f"holds {type(tasks).__name__} beside its state, where a {type(self).__name__} has none")

    def __repr__(self) -> str:
        """The class, the model, the settings that differ from the constructor's defaults, the
        dtype, seed and iteration."""
        defaults = {name: parameter.default for name, parameter in inspect.signature(type(self)).parameters.items()}
        shown = [f"{name}={getattr(self, name, value)!r}" for name, value in self._hyperparameters().items()
                 if name in defaults and not _same(value, defaults[name])]
        shown += [f"dtype={self._dtype.name!r}", f"seed={self._seed}", f"iteration={self._iteration}"]
        return f"{type(self).__name__}({self._model!r}, {', '.join(shown)})"

    def _config(self) -> dict[str, Any]:
        """The file's ``config``: the kind of learner, its model and its constructor's arguments."""
        recorded = {} if self._meta_batch is None else dict(meta_batch=self._meta_batch)
        return dict(kind=type(self).__name__, dtype=self._dtype.name, seed=self._seed, **recorded,
                    model=network_config(self._model), **self._hyperparameters())

    def _state(self) -> dict[str, np.ndarray]:
        """The file's arrays: parameters, optimizer state, iteration count and history."""
        m, v, step = self._impl.get_optimizer_state()
        return dict(self._params(), optimizer_m=m, optimizer_v=v, optimizer_step=np.array(step),
                    iteration=np.array(self._iteration), history=self.history)

    @classmethod
    def _from_saved(cls, config: dict[str, Any], arrays: dict[str, np.ndarray], num_threads: int | None) -> Any:
        """The learner a file holds: built from its config, then given the saved state."""
        arguments = {key: tuple(value) if isinstance(value, list) else value for key, value in config.items()
                     if key not in ("kind", "model", "meta_batch")}
        learner = cls(network_from_config(config["model"]), num_threads=num_threads, **arguments)  # type: ignore[call-arg]
        learner._restore(arrays)
        if "meta_batch" in config:
            learner._meta_batch = _validation.count(config["meta_batch"], "meta_batch")
        return learner

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self._impl.set_params(*(arrays[name] for name in self._param_names))
        self._impl.set_optimizer_state(arrays["optimizer_m"], arrays["optimizer_v"], int(arrays["optimizer_step"]))
        self._iteration = int(arrays["iteration"])
        history = np.asarray(arrays["history"], dtype=np.float64)
        if history.shape != (self._iteration,):
            raise ValueError("the saved history does not match the saved iteration count")
        self._history = [history] if len(history) else []

    def _hyperparameters(self) -> dict[str, Any]:
        """The constructor's keyword arguments beyond model, dtype, seed and num_threads, as
        JSON values; the constructor accepts them back (lists as tuples)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- helpers
    def _params(self) -> dict[str, np.ndarray]:
        """The core's parameter vectors (copies), by the names of ``_param_names``."""
        values = self._impl.get_params()
        return dict(zip(self._param_names, values if isinstance(values, tuple) else (values,)))

    def _set_param(self, name: str, value: Any) -> None:
        """Replaces one parameter vector; the core checks its shape and values."""
        params = self._params()
        params[name] = self._floats(value, name)
        self._impl.set_params(*params.values())

    def _floats(self, value: Any, name: str) -> np.ndarray:
        """Numeric data in the learner's dtype, as the MLP's functions convert it."""
        return _validation.numbers_as(value, name, self._dtype)


def _same(value: Any, default: Any) -> bool:
    """Whether a setting as a file records it (lists as tuples) equals a signature default."""
    if isinstance(value, list):
        value = tuple(value)
    try:
        return bool(value == default)
    except (TypeError, ValueError):  # arrays and other values without a plain equality
        return False
