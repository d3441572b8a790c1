"""The synthetic task families: sine waves, random hyperplanes, the book's coin-flip tasks and
Gaussian N-way classes, each drawn afresh per task by the core."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _core, _validation
from .._docs import shared_docs
from .family import TaskFamily


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
    ``x ~ U[-1, 1]^dim``, ``y = 1[dot(x, w) > 0]``. Targets have shape ``(rows, 1)``; use loss
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
