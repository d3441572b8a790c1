"""TaskBatch: a meta-batch of few-shot tasks as NumPy arrays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _validation


_ARRAYS = ("x_support", "y_support", "x_query", "y_query")


@dataclass(frozen=True)
class TaskBatch:
    """A batch of ``T`` tasks, each a support set (to adapt on) and a query set (to score on).

    Parameters
    ----------
    x_support : array, shape (T, K, in) or (T, K, C, H, W)
        Input rows, or a ConvNet's images (learners flatten them, copying once).
    y_support : array, shape (T, K, out) of floats, or (T, K) of integer class labels (integer
        targets are always read as labels: pass regression targets as floats)
    x_query : array, shape (T, Q, in) or (T, Q, C, H, W)
    y_query : array, shape (T, Q, out) or (T, Q), like ``y_support``

    Floating arrays keep their dtype (float32 or float64; lists become float64); labels
    become int64. Learners convert a batch to their own dtype when they use it.

    Examples
    --------
    >>> import numpy as np, metafast as mf
    >>> x = np.random.default_rng(0).uniform(-5, 5, size=(4, 10, 1))
    >>> batch = mf.TaskBatch(x[:, :5], np.sin(x[:, :5]), x[:, 5:], np.sin(x[:, 5:]))
    >>> batch.num_tasks, batch.support_size, batch.query_size
    (4, 5, 5)
    """

    x_support: np.ndarray
    y_support: np.ndarray
    x_query: np.ndarray
    y_query: np.ndarray

    def __post_init__(self) -> None:
        xs = _validation.float_array(self.x_support, "x_support")
        xq = _validation.float_array(self.x_query, "x_query")
        ys, yq = _validation.as_array(self.y_support, "y_support"), _validation.as_array(self.y_query, "y_query")
        labels = ys.dtype.kind in "iu"
        if labels != (yq.dtype.kind in "iu"):
            raise TypeError("y_support and y_query must both be integer labels or both be floats")
        if labels:
            ys, yq = _validation.labels(ys, "y_support"), _validation.labels(yq, "y_query")
        else:
            ys, yq = _validation.float_array(ys, "y_support"), _validation.float_array(yq, "y_query")
        for name, array, ndim in (("x_support", xs, max(xs.ndim, 3)), ("x_query", xq, max(xq.ndim, 3)),
                                  ("y_support", ys, 2 if labels else 3), ("y_query", yq, 2 if labels else 3)):
            if array.ndim != ndim:
                if labels and name.startswith("y"):
                    raise ValueError(f"integer {name} is read as class labels of shape (tasks, rows), got shape "
                                     f"{array.shape}; for regression targets pass floats, e.g. "
                                     f"{name}.astype(float)")
                kind = "(tasks, rows)" if ndim == 2 else "(tasks, rows, width)"
                raise ValueError(f"{name} must have shape {kind}, got {array.shape}")
            if 0 in array.shape:
                raise ValueError(f"{name} must not be empty, got shape {array.shape}")
        if not xs.shape[0] == xq.shape[0] == ys.shape[0] == yq.shape[0]:
            raise ValueError(
                "all arrays must hold the same number of tasks, got "
                f"{xs.shape[0]}, {ys.shape[0]}, {xq.shape[0]}, {yq.shape[0]}"
            )
        if ys.shape[1] != xs.shape[1] or yq.shape[1] != xq.shape[1]:
            raise ValueError(
                f"y_support and y_query must have as many rows as x_support and x_query, got "
                f"{ys.shape[1]} vs {xs.shape[1]} and {yq.shape[1]} vs {xq.shape[1]}"
            )
        if xs.shape[2:] != xq.shape[2:]:
            raise ValueError(f"support and query sets must have the same input shape, got x_support of shape "
                             f"{xs.shape[2:]} and x_query of shape {xq.shape[2:]} per row")
        if not labels and ys.shape[2] != yq.shape[2]:
            raise ValueError(f"support and query sets must have the same output width, got y_support of width "
                             f"{ys.shape[2]} and y_query of width {yq.shape[2]}")
        for name, value in (("x_support", xs), ("y_support", ys), ("x_query", xq), ("y_query", yq)):
            object.__setattr__(self, name, value)

    @property
    def num_tasks(self) -> int:
        """Tasks in the batch, ``T``."""
        return self.x_support.shape[0]

    @property
    def support_size(self) -> int:
        """Rows of each support set, ``K``."""
        return self.x_support.shape[1]

    @property
    def query_size(self) -> int:
        """Rows of each query set, ``Q``."""
        return self.x_query.shape[1]

    @property
    def input_width(self) -> int:
        """Values in an input row (C·H·W for images)."""
        return int(np.prod(self.x_support.shape[2:]))

    @property
    def has_labels(self) -> bool:
        """Whether the targets are integer class labels rather than floats."""
        return self.y_support.ndim == 2

    @property
    def dtype(self) -> np.dtype:
        """Dtype of the inputs (float32 or float64)."""
        return self.x_support.dtype

    def __len__(self) -> int:
        return self.num_tasks

    def __repr__(self) -> str:
        arrays = ", ".join(f"{name} {getattr(self, name).dtype} {getattr(self, name).shape}" for name in _ARRAYS)
        return f"TaskBatch({self.num_tasks} tasks: {arrays})"

    def __eq__(self, other: object) -> bool:
        """Batches are equal when their arrays have the same dtypes, shapes and values (NaN
        equal to NaN)."""
        if not isinstance(other, TaskBatch):
            return NotImplemented
        return all(_validation.same_array(getattr(self, name), getattr(other, name)) for name in _ARRAYS)

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt through the constructor, so a pickled payload meets the checks user input meets.
        return (type(self), tuple(getattr(self, name) for name in _ARRAYS))

    def __getitem__(self, index: Any) -> TaskBatch:
        """The tasks selected by ``index``.

        Parameters
        ----------
        index : int, slice or array of indices
            Which tasks; an int keeps a task axis of length 1.

        Returns
        -------
        TaskBatch
            The selected tasks.
        """
        if isinstance(index, (int, np.integer)):
            if not -self.num_tasks <= index < self.num_tasks:
                raise IndexError(f"task {index} is out of range for a batch of {self.num_tasks} tasks")
            index = slice(index, index + 1 if index != -1 else None)
        return TaskBatch(self.x_support[index], self.y_support[index], self.x_query[index], self.y_query[index])

    def astype(self, dtype: Any) -> TaskBatch:
        """The batch with its floating arrays in ``dtype``.

        Parameters
        ----------
        dtype : {"float32", "float64"}
            The new dtype of the inputs and float targets (labels stay int64). Finite values
            beyond its range raise ValueError.

        Returns
        -------
        TaskBatch
            A new batch (the arrays are copied only where the dtype changes).
        """
        dtype = _validation.float_dtype(dtype)

        def cast(array: np.ndarray, name: str) -> np.ndarray:
            return array if array.dtype.kind == "i" else _validation.converted(array, dtype, name)

        return TaskBatch(cast(self.x_support, "x_support"), cast(self.y_support, "y_support"),
                         cast(self.x_query, "x_query"), cast(self.y_query, "y_query"))

