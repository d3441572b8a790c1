"""Built-in task families, sampled natively by the C++ core.

Task ``i`` of meta-iteration ``k`` in a run seeded with ``s`` comes from a counter-based
random stream keyed by ``(s, k, i)``: a batch is the same whatever the number of threads,
and ``family.sample(T, seed=s, iteration=k)`` returns exactly the tasks that
``fit(family, meta_batch=T)`` of a learner seeded with ``s`` trains on at iteration ``k``.

Anywhere a family is accepted, a Python callable ``sampler(num_tasks, rng) -> TaskBatch``
works too (``rng`` is a seeded ``numpy.random.Generator``); it runs on a slower path that
returns to Python once per meta-iteration.
"""

from __future__ import annotations

from typing import Any, Callable, Union

import numpy as np

from . import _core, _memory, _validation
from ._docs import shared_docs
from .task_batch import TaskBatch

Sampler = Callable[[int, np.random.Generator], TaskBatch]


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
            Dtype of the floating arrays (integer labels stay int64).
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
        _memory.check(num_tasks * self._values_per_task() * 8, f"sampling {num_tasks} tasks")
        arrays = _core.sample_tasks(self._impl, num_tasks, seed, iteration, dtype.name, threads)
        return TaskBatch(*arrays)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self._fields().items())
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._fields() == other._fields()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(self._fields().items())))

    def _fields(self) -> dict[str, Any]:
        raise NotImplementedError

    def _rows_per_task(self) -> int:
        """Rows of a task's larger set (support or query): what a network's pass over it holds."""
        fields = self._fields()
        return max(fields["support"], fields["query"]) * fields.get("ways", 1)

    def _values_per_task(self) -> int:
        """Numbers one task holds (inputs and targets of its support and query rows)."""
        fields = self._fields()
        width = fields.get("dim", 1) + 1
        rows = (fields["support"] + fields["query"]) * fields.get("ways", 1)
        return rows * width


class Sinusoid(TaskFamily):
    """Sine-wave regression: ``y = A sin(x - phi)`` (Finn et al. 2017; Li et al. 2017).

    Parameters
    ----------
    amplitude, phase : (low, high)
        ``A ~ U[amplitude]`` and ``phi ~ U[phase]`` per task.
    x_range : (low, high)
        Inputs are uniform in this range, or, with ``grid=G``, drawn uniformly with
        replacement from ``np.linspace(low, high, G)``.
    support, query : int
        Points in the support and query sets.
    grid : int or None
        Number of grid points (None: continuous inputs).
    phase_sign : {-1, +1}
        ``y = A sin(x + phase_sign * phi)``: -1 (the default) is the MAML/Meta-SGD
        convention ``sin(x - phi)``; +1 is the book's ``sin(x + phi)``.

    See Also
    --------
    Sinusoid.book : the book's variant (grid of 100 points, ``sin(x + phi)``).
    """

    def __init__(self, amplitude: tuple[float, float] = (0.1, 5.0), phase: tuple[float, float] = (0.0, np.pi),
                 x_range: tuple[float, float] = (-5.0, 5.0), support: int = 10, query: int = 10,
                 grid: int | None = None, phase_sign: int = -1) -> None:
        # Types here; the core checks the ranges (one message for each).
        self.amplitude = _validation.two_reals(amplitude, "amplitude")
        self.phase = _validation.two_reals(phase, "phase")
        self.x_range = _validation.two_reals(x_range, "x_range")
        self.support = _validation.int64(support, "support")
        self.query = _validation.int64(query, "query")
        self.grid = None if grid is None else _validation.int64(grid, "grid")
        self.phase_sign = _validation.int64(phase_sign, "phase_sign")
        self._impl = _core.Sinusoid(*self.amplitude, *self.phase, *self.x_range, self.grid, self.phase_sign,
                                    self.support, self.query)

    @classmethod
    def book(cls, support: int = 50, query: int = 50) -> Sinusoid:
        """The book's sine tasks: amplitude U[0.1, 5], phase U[0, pi], ``y = A sin(x + phi)``,
        x drawn from ``np.linspace(-5, 5, 100)``.

        Parameters
        ----------
        support, query : int
            Points in the support and query sets (the book uses 50 points per task).

        Returns
        -------
        Sinusoid
            ``Sinusoid(support=support, query=query, grid=100, phase_sign=+1)``.
        """
        return cls(support=support, query=query, grid=100, phase_sign=+1)

    def _fields(self) -> dict[str, Any]:
        return dict(amplitude=self.amplitude, phase=self.phase, x_range=self.x_range, support=self.support,
                    query=self.query, grid=self.grid, phase_sign=self.phase_sign)


@shared_docs
class LinearBinary(TaskFamily):
    """Binary classification by a random hyperplane per task: ``w ~ N(0, I)``,
    ``x ~ U[-1, 1]^dim``, ``y = 1[x . w > 0]``. Targets have shape ``(rows, 1)``; use loss
    ``"bce"`` with a logistic model such as ``MLP([dim, 1], activation="identity", bias=False)``.

    Parameters
    ----------
    {binary task parameters}
    """

    loss = "bce"

    def __init__(self, dim: int = 50, support: int = 10, query: int = 10) -> None:
        # Types here; the core checks the ranges (one message for each).
        self.dim = _validation.int64(dim, "dim")
        self.support = _validation.int64(support, "support")
        self.query = _validation.int64(query, "query")
        self._impl = _core.LinearBinary(self.dim, self.support, self.query)

    def _fields(self) -> dict[str, Any]:
        return dict(dim=self.dim, support=self.support, query=self.query)


@shared_docs
class SeedBinary(LinearBinary):
    """The book's binary tasks exactly: ``x ~ U[0, 1)^dim`` and fair-coin labels that do not
    depend on ``x`` (there is nothing to learn but the label frequencies of a task; use it to
    reproduce the book, and :class:`LinearBinary` to see learning).

    Parameters
    ----------
    {binary task parameters}
    """

    def __init__(self, dim: int = 50, support: int = 10, query: int = 10) -> None:
        super().__init__(dim, support, query)
        self._impl = _core.SeedBinary(self.dim, self.support, self.query)


class GaussianNWay(TaskFamily):
    """N-way classification: per task, fresh class centres ``c_k ~ N(0, I_dim)``; a point of
    class ``k`` is ``c_k + spread * N(0, I_dim)``. ``support`` and ``query`` count points
    *per class* (so a task has ``ways * support`` support rows); row ``r`` has label
    ``r % ways``. Labels are integers: use loss ``"softmax_ce"`` and a model with ``ways``
    outputs.

    Parameters
    ----------
    ways : int
        Classes per task (at least 2).
    dim : int
        Input width.
    support, query : int
        Points per class in the support and query sets.
    spread : float
        Standard deviation of the points around their class centre (at least 0).
    """

    loss = "softmax_ce"

    def __init__(self, ways: int = 5, dim: int = 8, support: int = 1, query: int = 15, spread: float = 0.5) -> None:
        # Types here; the core checks the ranges (one message for each).
        self.ways = _validation.int64(ways, "ways")
        self.dim = _validation.int64(dim, "dim")
        self.support = _validation.int64(support, "support")
        self.query = _validation.int64(query, "query")
        self.spread = _validation.real(spread, "spread")
        self._impl = _core.GaussianNWay(self.ways, self.dim, self.support, self.query, self.spread)

    def _fields(self) -> dict[str, Any]:
        return dict(ways=self.ways, dim=self.dim, support=self.support, query=self.query, spread=self.spread)


Tasks = Union[TaskFamily, Sampler]

FAMILIES = {cls.__name__: cls for cls in (Sinusoid, LinearBinary, SeedBinary, GaussianNWay)}


def family_from_config(config: dict[str, Any]) -> TaskFamily:
    """Rebuilds a family from ``dict(family=class name, **fields)`` (as saved with a learner).

    Parameters
    ----------
    config : dict
        ``family``, the class name (a key of ``FAMILIES``), and the family's fields.

    Returns
    -------
    TaskFamily
        A family equal to the one saved.
    """
    fields = dict(config)
    name = fields.pop("family", None)
    if name not in FAMILIES:
        raise ValueError(f"unknown task family {name!r}")
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
