"""The interface every task family shares, and the checks of what learners accept as tasks: a
family, a Python sampler or (for evaluation and ``fit``) a TaskBatch."""

from __future__ import annotations

from typing import Any, Callable, Union

import numpy as np

from .. import _core, _memory, _validation
from ..task_batch import TaskBatch

Sampler = Callable[[int, np.random.Generator], TaskBatch]

# Every family class by name, as saved files name them (filled by TaskFamily's subclasses).
FAMILIES: dict[str, type[TaskFamily]] = {}


class TaskFamily:
    """Base class of the built-in families: a distribution over few-shot tasks, sampled by the
    core. Families compare equal when they are of one class with equal fields (``repr`` shows
    them), so a learner can record and rebuild the family it was trained on.

    Attributes
    ----------
    loss : str
        The loss that suits the family's targets: ``"mse"``, ``"bce"`` or ``"softmax_ce"``.
    """

    _impl: Any
    #: The loss that suits the family's targets.
    loss: str = "mse"

    # Families drawn from the user's data keep it out of saved files (see _config).
    _holds_user_data = False
    _unit_targets = True  # whether every target lies in [0, 1], as loss "bce" needs

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        FAMILIES[cls.__name__] = cls

    def sample(self, num_tasks: int, seed: int = 0, iteration: int = 0, dtype: Any = "float64",
               num_threads: int | None = None) -> TaskBatch:
        """``num_tasks`` tasks keyed by ``(seed, iteration, task index)``.

        Parameters
        ----------
        num_tasks : int
            Tasks to draw (at least 1).
        seed : int
            Seed of the run; with ``iteration``, the tasks a learner seeded with ``seed``
            trains on at that meta-iteration.
        iteration : int
            Meta-iteration whose tasks to draw.
        dtype : {"float32", "float64"}
            Dtype of the floating arrays (integer labels stay int64). A data-set family whose
            data holds finite values beyond float32's range refuses float32 (ValueError naming
            the array) rather than return infinities.
        num_threads : int or None
            Threads that draw the tasks (None: all cores). The tasks do not depend on it.

        Returns
        -------
        TaskBatch
            The tasks, task ``i`` keyed by ``(seed, iteration, i)``.
        """
        num_tasks = _validation.count(num_tasks, "num_tasks")
        seed = _validation.seed(seed)
        iteration = _validation.seed(iteration, "iteration")
        dtype = _validation.float_dtype(dtype)
        threads = _validation.num_threads(num_threads)
        self._check_dtype(dtype)
        _memory.check(self._sample_bytes(num_tasks, dtype), f"sampling {num_tasks:,} tasks")
        arrays = _core.sample_tasks(self._impl, num_tasks, seed, iteration, dtype.name, threads)
        return TaskBatch(*arrays)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self._fields().items())
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._fields() == other._fields()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(self._fields().items())))

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle and copy rebuild through the constructor: a payload meets the checks that user
        # input meets, and every copy (copy.copy too) gets a core object of its own.
        return (_rebuilt, (type(self), self._arguments()))

    def _fields(self) -> dict[str, Any]:
        raise NotImplementedError

    def _arguments(self) -> dict[str, Any]:
        """The constructor's keyword arguments that rebuild the family (for pickle and copy)."""
        return self._fields()

    def _check_dtype(self, dtype: np.dtype) -> None:
        """Raises ValueError if tasks in ``dtype`` would turn finite data into infinities (only
        data-set families can); whatever draws tasks natively in a dtype calls it first."""

    def _config(self) -> dict[str, Any]:
        """What a saved learner records of the family it was trained on: the class name and
        the fields, from which :func:`family_from_config` rebuilds it."""
        return dict(family=type(self).__name__, **self._fields())

    def _sample_bytes(self, num_tasks: int, dtype: Any) -> int:
        """Bytes a draw of ``num_tasks`` tasks in ``dtype`` allocates (the core's sizes)."""
        return int(_core.sample_bytes(self._impl, num_tasks, np.dtype(dtype).name))


Tasks = Union[TaskFamily, Sampler]


def _rebuilt(cls: Any, arguments: Any) -> TaskFamily:
    """A family that pickle or copy rebuilds: ``cls(**arguments)``, checked as user input is."""
    if not (isinstance(cls, type) and issubclass(cls, TaskFamily)):
        raise TypeError(f"a pickled task family must name a TaskFamily class, got {cls!r}")
    if not isinstance(arguments, dict):
        raise TypeError(f"a pickled task family's arguments must be a dict, got {type(arguments).__name__}")
    return cls(**arguments)


def family_from_config(config: dict[str, Any]) -> TaskFamily | None:
    """Rebuilds a family from what a saved learner recorded of it (``TaskFamily._config``).

    Parameters
    ----------
    config : dict
        ``family``, the class name (a key of ``FAMILIES``), and the family's fields.

    Returns
    -------
    TaskFamily or None
        A family equal to the one saved; None for a family drawn from the user's data, which
        the file describes but does not hold.
    """
    fields = dict(config)
    name = fields.pop("family", None)
    if name not in FAMILIES:
        raise ValueError(f"unknown task family {name!r}")
    if FAMILIES[name]._holds_user_data:
        return None
    return FAMILIES[name](**fields)


def sample_with(sampler: Sampler, num_tasks: int, rng: np.random.Generator) -> TaskBatch:
    """Calls a user's sampler and checks that it returned a TaskBatch.

    Parameters
    ----------
    sampler : callable
        ``sampler(num_tasks, rng) -> TaskBatch``.
    num_tasks : int
        Tasks to ask for.
    rng : numpy.random.Generator
        Passed to the sampler.

    Returns
    -------
    TaskBatch
        What the sampler returned; anything else raises TypeError.
    """
    batch = sampler(num_tasks, rng)
    if not isinstance(batch, TaskBatch):
        raise TypeError(f"a task sampler must return a metafast.TaskBatch, got {type(batch).__name__}")
    if batch.num_tasks != num_tasks:
        raise ValueError(f"the task sampler was asked for {num_tasks} tasks but returned {batch.num_tasks}")
    return batch


def check_tasks(tasks: Any, allow_batch: bool = False) -> Any:
    """Checks that ``tasks`` is something learners can draw tasks from.

    Parameters
    ----------
    tasks : TaskFamily, callable or TaskBatch
        A family, a sampler ``sampler(num_tasks, rng) -> TaskBatch``, or (with
        ``allow_batch``) a TaskBatch.
    allow_batch : bool
        Accept a TaskBatch too (as ``evaluate`` does).

    Returns
    -------
    TaskFamily, callable or TaskBatch
        ``tasks`` itself; anything else raises TypeError.
    """
    if isinstance(tasks, TaskFamily) or (allow_batch and isinstance(tasks, TaskBatch)):
        return tasks
    if isinstance(tasks, type) and issubclass(tasks, TaskFamily):
        raise TypeError(f"tasks must be a task family, not the class {tasks.__name__}: give {tasks.__name__}()")
    if callable(tasks):
        return tasks
    allowed = "a task family, a TaskBatch" if allow_batch else "a task family"
    raise TypeError(f"tasks must be {allowed} or a callable sampler(num_tasks, rng) -> TaskBatch, "
                    f"got {type(tasks).__name__}")
