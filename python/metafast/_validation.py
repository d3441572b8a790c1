"""Argument checks shared by the public API.

Every check raises TypeError (wrong kind of thing) or ValueError (right kind, wrong value)
with the argument's name and what was expected. Shapes are checked once, in the compiled
core, which sees the architecture; these helpers settle types and memory layout.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_dtype(dtype: Any, name: str = "dtype") -> np.dtype:
    """The float32 or float64 dtype that `dtype` names."""
    try:
        resolved = None if dtype is None else np.dtype(dtype)  # np.dtype(None) is float64
    except TypeError:
        resolved = None
    if resolved is None or not any(resolved == allowed for allowed in FLOAT_DTYPES):
        raise TypeError(f"{name} must be 'float32' or 'float64', got {dtype!r}")
    return resolved


def string(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    return value


def boolean(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def integer(value: Any, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value}")
    return int(value)


MAX_SEED = 2**64 - 1  # seeds and iteration counters key a 64-bit counter-based generator
MAX_COUNT = 2**24     # tasks per batch, steps: far beyond any sensible run, far below overflow


def int64(value: Any, name: str) -> int:
    """An integer the core can take as a signed 64-bit count (whose range it checks)."""
    value = integer(value, name)
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"{name} must fit in 64 bits, got {value}")
    return value


def seed(value: Any, name: str = "seed") -> int:
    return integer(value, name, minimum=0, maximum=MAX_SEED)


def count(value: Any, name: str, minimum: int = 1) -> int:
    return integer(value, name, minimum=minimum, maximum=MAX_COUNT)


def params(value: Any, name: str = "theta") -> np.ndarray:
    """A parameter vector as a C-contiguous float32 or float64 array (its own dtype kept)."""
    array = value if isinstance(value, np.ndarray) else _as_array(value, name, np.float64)
    dtype = array.dtype
    if dtype.kind != "f" or dtype.itemsize not in (4, 8):
        raise TypeError(f"{name} must be a float32 or float64 array, got dtype {dtype}")
    return np.ascontiguousarray(array, dtype=dtype.type)


def largest_magnitude(array: np.ndarray) -> float:
    """The largest absolute value among the finite values of a floating array (0.0 if none)."""
    if array.size == 0:
        return 0.0
    with np.errstate(invalid="ignore"):
        largest = float(np.max(np.abs(array)))
    if np.isfinite(largest):
        return largest
    finite = array[np.isfinite(array)]
    return float(np.max(np.abs(finite))) if finite.size else 0.0


def check_range(largest: float, dtype: Any, name: str, hint: str = "") -> None:
    """The one check that finite values of magnitude up to `largest` stay finite in `dtype`
    (1e39 in float32 would become infinity): ValueError naming `name` otherwise. `converted`
    and the data-set task families (which record their data's magnitude when built and check
    it when asked for float32 tasks) both use it."""
    dtype = np.dtype(dtype)
    with np.errstate(over="ignore"):
        overflows = bool(np.isinf(dtype.type(largest)))
    if overflows:
        raise ValueError(f"{name} has values beyond the range of {dtype} (largest magnitude {largest:.4g}, "
                         f"above {dtype}'s maximum {np.finfo(dtype).max:.4g}){hint}")


def converted(array: np.ndarray, dtype: np.dtype, name: str) -> np.ndarray:
    """`array` (numeric) as a C-contiguous array of `dtype`; finite values beyond the range of
    `dtype` (1e300 into float32) are a ValueError (`check_range`), not infinities."""
    if array.dtype.kind == "f" and array.dtype.itemsize > np.dtype(dtype).itemsize:
        check_range(largest_magnitude(array), dtype, name)
    return np.ascontiguousarray(array, dtype=dtype)


def numbers_as(value: Any, name: str, dtype: np.dtype) -> np.ndarray:
    """`value` (an array or nested sequences of floats or integers) as a C-contiguous array of
    `dtype`, converted whatever its own dtype: integers exactly where `dtype` holds them, float64
    into float32 with `check_range` (a ValueError rather than infinities). Other dtypes (bool,
    object, strings) are a TypeError naming `name`."""
    array = as_array(value, name)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold numbers (floats or integers), got dtype {array.dtype}")
    return converted(array, dtype, name)


def same_array(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two arrays have the same dtype, shape and values, NaN equal to NaN (the equality
    of the value objects that hold arrays: TaskBatch, EvaluationReport)."""
    return (a.dtype == b.dtype and a.shape == b.shape
            and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")))


def float_array(value: Any, name: str) -> np.ndarray:
    """A float32 or float64 array, C-contiguous, in its own dtype (integers become float64)."""
    array = as_array(value, name)
    if array.dtype.kind in "iu":  # integer features are exact in float64
        array = array.astype(np.float64)
    if array.dtype.kind != "f" or array.dtype.itemsize not in (4, 8):
        raise TypeError(f"{name} must be a float32 or float64 array, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=array.dtype.type)


def integer_ids(value: Any, name: str) -> np.ndarray:
    """Integer ids (class labels or task ids of a data set) as a C-contiguous int64 array."""
    array = as_array(value, name)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {array.dtype}")
    if array.dtype.kind == "u" and array.size and array.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} holds an id too large for int64")
    return np.ascontiguousarray(array, dtype=np.int64)


def labels(value: Any, name: str = "y") -> np.ndarray:
    """Integer class labels as a C-contiguous int64 array."""
    array = as_array(value, name)
    if array.dtype.kind not in "iu":
        raise TypeError(
            f"{name} must hold integer class labels for softmax_ce, got dtype {array.dtype}"
        )
    if array.dtype.kind == "u" and array.size and array.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} holds a label too large for int64")
    return np.ascontiguousarray(array, dtype=np.int64)


def as_array(value: Any, name: str, dtype: Any = None) -> np.ndarray:
    """``np.asarray(value, dtype)`` (an array of that dtype is returned as it is) with NumPy's
    conversion errors named: a ragged nesting such as ``[[1.0], [1.0, 2.0]]`` is a ValueError
    "`name` must be a rectangular numeric array", and values that are not numbers keep their
    error type with "`name` must be an array of numbers" in front of NumPy's reason."""
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as error:
        if isinstance(error, ValueError) and "inhomogeneous" in str(error):
            raise ValueError(f"{name} must be a rectangular numeric array, but its nested sequences have different "
                             f"lengths") from None
        raise type(error)(f"{name} must be an array of numbers: {error}") from None


def _as_array(value: Any, name: str, dtype: Any) -> np.ndarray:
    return np.ascontiguousarray(as_array(value, name, dtype))


def real(value: Any, name: str, minimum: float | None = None, exclusive: bool = False) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    try:
        value = float(value)
    except OverflowError:  # an int beyond any float
        raise ValueError(f"{name} must be finite, got {value}") from None
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and (value <= minimum if exclusive else value < minimum):
        raise ValueError(f"{name} must be {'>' if exclusive else '>='} {minimum}, got {value}")
    return value


def _two_numbers(value: Any, name: str, expected: str) -> tuple[float, float]:
    """Two finite numbers from a sequence of two (a list, a tuple or a 1-D array); anything else
    (a scalar, a 0-d array, a string, a set, nested sequences) is a TypeError naming `name`."""
    sequence = isinstance(value, np.ndarray) and value.ndim == 1
    sequence |= isinstance(value, Sequence) and not isinstance(value, (str, bytes))
    if not sequence or len(value) != 2 or not all(_is_real(item) for item in value):
        raise TypeError(f"{name} must be {expected}, got {value!r}")
    return real(value[0], f"{name}[0]"), real(value[1], f"{name}[1]")


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def two_reals(value: Any, name: str) -> tuple[float, float]:
    """Two finite numbers, as a tuple (their ranges are the core's to check)."""
    return _two_numbers(value, name, "a pair of numbers")


def pair(value: Any, name: str) -> tuple[float, float]:
    """A (low, high) pair of finite numbers with low <= high."""
    low, high = _two_numbers(value, name, "a (low, high) pair of numbers")
    if low > high:
        raise ValueError(f"{name} must have low <= high, got ({low}, {high})")
    return low, high


def num_threads(value: Any) -> int:
    """None or 0 mean all cores (0 for the core); otherwise a positive count."""
    if value is None:
        return 0
    return integer(value, "num_threads", minimum=0, maximum=1024)


def step_counts(steps: Any) -> list[int]:
    """The distinct numbers of adaptation steps an evaluation reports, in increasing order."""
    if isinstance(steps, (str, bytes)) or not hasattr(steps, "__iter__"):
        raise TypeError(f"steps must be a sequence of step counts, e.g. (0, 1, 5), got {steps!r}")
    counts = sorted({count(s, f"steps[{i}]", minimum=0) for i, s in enumerate(steps)})
    if not counts:
        raise ValueError("steps must name at least one number of adaptation steps")
    return counts
