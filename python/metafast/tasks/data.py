"""Task families drawn from the user's own data: N-way K-shot episodes from a labelled array,
regression tasks from rows grouped by task, and a fixed pool of tasks (a TaskBatch), all
sampled natively by the core from the same (seed, iteration, task) streams as the synthetic
families; and the split of classes into meta-train, meta-validation and meta-test sets."""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np

from .. import _core, _validation
from ..mlp import MAX_WIDTH
from ..task_batch import TaskBatch
from .family import TaskFamily


class DataFamily(TaskFamily):
    """A family drawn from arrays the user gave. It keeps private copies of them (so later
    changes to the user's arrays do not reach it): one in the core, which tasks are drawn from
    without copying per task, and a read-only one that pickle and copy rebuild the family from
    (so the family holds its data twice). A pickled family holds its data; a learner saved
    after training on it records the family's configuration and a SHA-256 fingerprint of the
    data, not the data: :func:`metafast.load` gives such a learner ``tasks = None`` and the
    record in ``tasks_config``.

    The data keeps its dtype; tasks are drawn in the dtype asked for. A family records the
    largest magnitude of its float64 arrays when it is built, and refuses float32 tasks (a
    ValueError naming the array) when that magnitude is beyond float32's range, instead of
    returning infinities."""

    _holds_user_data = True
    fingerprint: str
    # The largest finite magnitude in each float64 array of the data, recorded when the family is
    # built: the check of float32 sampling (float32 data always fits).
    _magnitudes: dict[str, float]

    def _record_magnitudes(self, **arrays: np.ndarray) -> None:
        self._magnitudes = {name: _validation.largest_magnitude(array) for name, array in arrays.items()
                            if array.dtype.kind == "f" and array.dtype.itemsize == 8}

    def _check_dtype(self, dtype: np.dtype) -> None:
        for name, largest in self._magnitudes.items():
            _validation.check_range(largest, dtype, name, f": {type(self).__name__} cannot draw {dtype} tasks "
                                                          f"from it; sample in float64 or rescale the data")

    def __repr__(self) -> str:
        def shown(value: Any) -> str:
            if isinstance(value, tuple) and len(value) > 8:
                return f"({', '.join(map(repr, value[:4]))}, ... {len(value)} in all)"
            if isinstance(value, str) and len(value) > 16:  # the fingerprint: its start tells them apart
                return repr(value[:12] + "...")
            return repr(value)

        fields = ", ".join(f"{k}={shown(v)}" for k, v in self._fields().items())
        return f"{type(self).__name__}({fields})"

    def _config(self) -> dict[str, Any]:
        config = {k: list(v) if isinstance(v, tuple) else v for k, v in super()._config().items()}  # as JSON reads back
        return dict(config, data_stored=False)


def split_classes(labels: Any, parts: Sequence[float], seed: int = 0) -> tuple[np.ndarray, ...]:
    """Splits the classes of ``labels`` into disjoint sets, such as meta-train, meta-validation
    and meta-test classes (the Omniglot and mini-ImageNet protocols), so that evaluation is on
    classes never seen in meta-training.

    Parameters
    ----------
    labels : array_like of int
        The labels of the data set (or task ids: any integer ids).
    parts : sequence of int or of float
        Classes in each set: counts (ints, at most the number of classes in all) or fractions
        (floats in (0, 1], summing to at most 1; each set gets the rounded-down share, and at
        least one class).
    seed : int
        Seeds the random order of the classes.

    Returns
    -------
    tuple of numpy.ndarray
        One sorted int64 array of class ids per part, disjoint.

    Examples
    --------
    >>> import numpy as np, metafast as mf
    >>> train, test = mf.tasks.split_classes(np.arange(10).repeat(3), parts=(6, 4), seed=0)
    >>> len(train), len(test), set(train) & set(test)
    (6, 4, set())
    """
    classes = np.unique(_validation.integer_ids(labels, "labels"))
    if not isinstance(parts, (list, tuple)) or not parts:
        raise TypeError(f"parts must be a non-empty sequence of counts or fractions, got {parts!r}")
    if all(isinstance(p, (int, np.integer)) and not isinstance(p, bool) for p in parts):
        sizes = [int(p) for p in parts]
        if min(sizes) < 1 or sum(sizes) > len(classes):
            raise ValueError(f"parts must be counts >= 1 summing to at most the {len(classes)} classes, got {parts}")
    else:
        fractions = [_validation.real(p, "parts") for p in parts]
        if min(fractions) <= 0 or sum(fractions) > 1 + 1e-12:
            raise ValueError(f"parts must be fractions in (0, 1] summing to at most 1, got {parts}")
        sizes = [max(1, int(f * len(classes))) for f in fractions]
        if sum(sizes) > len(classes):
            raise ValueError(f"{len(classes)} classes cannot be split into {len(parts)} non-empty parts")
    order = np.random.default_rng(_validation.seed(seed)).permutation(classes)
    bounds = np.cumsum([0, *sizes])
    return tuple(np.sort(order[bounds[i]:bounds[i + 1]]) for i in range(len(sizes)))


def _chosen(ids: np.ndarray, subset: Any, name: str) -> np.ndarray:
    """The ids a family draws from: ``subset`` (checked by the core) or every id of the data."""
    if subset is None:
        return np.unique(ids)
    chosen = _validation.integer_ids(subset, name)
    if chosen.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of ids, got shape {chosen.shape}")
    return chosen


def _rows(value: Any, name: str, rows: int | None = None, vector_ok: bool = False, images_ok: bool = False) -> np.ndarray:
    """``value`` as floats of shape (rows, width), or with images_ok (rows, C, H, W) too."""
    array = _validation.float_array(value, name)
    if vector_ok and array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2 and not (images_ok and array.ndim == 4):
        shapes = "(rows, width) or (rows, C, H, W)" if images_ok else "(rows, width)"
        raise ValueError(f"{name} must have shape {shapes}, got {array.shape}")
    if rows is not None and array.shape[0] != rows:
        raise ValueError(f"{name} must have {rows} rows (one per row of the data), got {array.shape[0]}")
    return array


def _flat(rows: np.ndarray) -> np.ndarray:
    """Rows of any shape as (rows, width) in C order, the core's form (images flattened)."""
    return np.ascontiguousarray(rows.reshape(len(rows), -1))


def _private(array: np.ndarray) -> np.ndarray:
    """A read-only copy of ``array``: the data that pickle and copy rebuild a family from."""
    copy = np.array(array, order="C", copy=True)
    copy.flags.writeable = False
    return copy


def _within_unit(y: np.ndarray) -> bool:
    """Whether float targets can be bce's probabilities."""
    return bool(np.all((y >= 0) & (y <= 1)))


def _fingerprint(*arrays: np.ndarray) -> str:
    """SHA-256 of the arrays' dtypes, shapes and bytes: what a saved learner records of its data."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
    return digest.hexdigest()


class Classification(DataFamily):
    """N-way K-shot classification episodes drawn from a labelled data set.

    Each task draws ``ways`` classes without replacement from ``classes``, relabels them
    ``0 .. ways-1`` in the order drawn, and draws ``shots + query`` examples of each without
    replacement: the first ``shots`` go to the support set, the rest to the query set. Row
    ``r`` of either set has label ``r % ways``. Use loss ``"softmax_ce"`` and a model with
    ``ways`` outputs.

    Parameters
    ----------
    features : array_like, shape (rows, width) or (rows, C, H, W)
        The examples (images, for a ConvNet; embeddings from a frozen network, sensor windows);
        float32 and float64 are kept as they are, integers become float64. Must be finite
        (and within float32's range for float32 tasks).
    labels : array_like of int, shape (rows,)
        The class of each example (any integers).
    ways : int
        Classes per task (at least 2).
    shots : int
        Support examples per class.
    query : int
        Query examples per class.
    classes : array_like of int, optional
        The classes to draw from (default: all), e.g. one part of :func:`split_classes`.
        Each needs at least ``shots + query`` examples, and there must be at least ``ways``.
    rotations : int
        For square images (rows, C, H, H): each class is drawn in ``rotations`` orientations,
        quarter turns ``0 .. rotations - 1`` counterclockwise (``np.rot90`` over H and W), each
        orientation a class of its own: 4 is the Omniglot meta-training protocol of MAML,
        Meta-SGD and Reptile. 1 (the default) draws the images as they are.
    shift : int
        For square images: every drawn image is moved by a random offset of up to ``shift``
        pixels down or up and right or left (each offset uniform in ``[-shift, shift]``), the
        uncovered pixels 0 (the background of ink-high images). 0 (the default): no shift.
    within : array_like, shape (rows,), optional
        A group of every row (ints or strings; every row of a class in one group), such as the
        alphabet of each character: then all ``ways`` classes of a task come from one group,
        drawn uniformly among the groups that have enough classes (Lake et al.'s one-shot
        classification within an alphabet).

    Examples
    --------
    >>> import numpy as np, metafast as mf
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(200, 4)), np.arange(200) % 10
    >>> train, test = mf.tasks.split_classes(y, parts=(6, 4))
    >>> family = mf.tasks.Classification(x, y, ways=3, shots=1, query=5, classes=train)
    >>> batch = family.sample(8, seed=1)
    >>> batch.x_support.shape, batch.y_query.shape
    ((8, 3, 4), (8, 15))
    """

    loss = "softmax_ce"

    def __init__(self, features: Any, labels: Any, ways: int = 5, shots: int = 1, query: int = 15,
                 classes: Any = None, rotations: int = 1, shift: int = 0, within: Any = None) -> None:
        features = _rows(features, "features", images_ok=True)
        self.input_shape = features.shape[1:]  # (width,) or images' (C, H, W), which a ConvNet checks
        labels = _validation.integer_ids(labels, "labels")
        if labels.shape != (features.shape[0],):
            raise ValueError(f"labels must have shape ({features.shape[0]},) (one per row of features), "
                             f"got {labels.shape}")
        chosen = _chosen(labels, classes, "classes")
        self.ways = _validation.int64(ways, "ways")
        self.shots = _validation.int64(shots, "shots")
        self.query = _validation.int64(query, "query")
        self.rotations = _validation.integer(rotations, "rotations", minimum=1, maximum=4)
        self.shift = _validation.integer(shift, "shift", minimum=0)
        groups = _groups(within, len(features))
        channels, side = _square_images(self.input_shape)
        self._impl = _core.Classification(_flat(features), labels, chosen, self.ways, self.shots, self.query,
                                          channels, side, self.rotations, self.shift,
                                          np.zeros(0, np.int64) if groups is None else groups)
        self.classes = tuple(int(c) for c in chosen)
        self.num_rows, self.width = len(features), int(np.prod(self.input_shape))
        self.fingerprint = _fingerprint(features, labels, *(() if groups is None else (groups,)))
        self._features, self._labels = _private(features), _private(labels)
        self._within = None if groups is None else _private(groups)
        self._record_magnitudes(features=features)

    def _fields(self) -> dict[str, Any]:
        images = dict(input_shape=self.input_shape) if len(self.input_shape) == 3 else {}
        augmented = {name: value for name, value in (("rotations", self.rotations), ("shift", self.shift))
                     if value != (1 if name == "rotations" else 0)}
        within = {} if self._within is None else dict(within=True)
        return dict(ways=self.ways, shots=self.shots, query=self.query, classes=self.classes, rows=self.num_rows,
                    width=self.width, **images, **augmented, **within, fingerprint=self.fingerprint)

    def _arguments(self) -> dict[str, Any]:
        return dict(features=self._features, labels=self._labels, ways=self.ways, shots=self.shots, query=self.query,
                    classes=np.array(self.classes, dtype=np.int64), rotations=self.rotations, shift=self.shift,
                    within=self._within)


def _groups(within: Any, rows: int) -> np.ndarray | None:
    """``within`` (any ids or names, one per row) as int64 group ids, or None."""
    if within is None:
        return None
    values = np.asarray(within)
    if values.shape != (rows,):
        raise ValueError(f"within must have shape ({rows},) (a group per row of features), got {values.shape}")
    if values.dtype.kind not in "iuUSO":
        raise TypeError(f"within must hold integer ids or names, got dtype {values.dtype}")
    return np.unique(values, return_inverse=True)[1].astype(np.int64).reshape(rows)


def _square_images(shape: tuple[int, ...]) -> tuple[int, int]:
    """(channels, side) of square images' rows, (0, 0) for other rows (which cannot be turned
    or shifted: the core says so if asked)."""
    if len(shape) == 3 and shape[1] == shape[2]:
        return int(shape[0]), int(shape[1])
    return 0, 0


class Regression(DataFamily):
    """Regression tasks from a pool of functions given as rows grouped by task.

    Each task picks one task id uniformly from ``tasks`` and draws ``support + query`` of its
    rows without replacement: the first ``support`` go to the support set, the rest to the
    query set. Use loss ``"mse"``.

    Parameters
    ----------
    x : array_like, shape (rows, inputs)
        Inputs (float32 or float64; integers become float64). Must be finite (and within
        float32's range for float32 tasks).
    y : array_like, shape (rows, outputs) or (rows,)
        Targets of the same rows; a 1-D ``y`` is one output, ``y.reshape(-1, 1)``. Must be
        finite (and within float32's range for float32 tasks).
    task_ids : array_like of int, shape (rows,)
        Which task (function) each row belongs to.
    support, query : int
        Rows per support and query set.
    tasks : array_like of int, optional
        The task ids to draw from (default: all), e.g. one part of :func:`split_classes`
        applied to ``task_ids``. Each needs at least ``support + query`` rows.
    """

    loss = "mse"

    def __init__(self, x: Any, y: Any, task_ids: Any, support: int = 10, query: int = 10, tasks: Any = None) -> None:
        x = _rows(x, "x", images_ok=True)
        y = _rows(y, "y", rows=x.shape[0], vector_ok=True)
        ids = _validation.integer_ids(task_ids, "task_ids")
        if ids.shape != (x.shape[0],):
            raise ValueError(f"task_ids must have shape ({x.shape[0]},) (one per row of x), got {ids.shape}")
        chosen = _chosen(ids, tasks, "tasks")
        self.support = _validation.int64(support, "support")
        self.query = _validation.int64(query, "query")
        self.input_shape = x.shape[1:]  # (width,) or images' (C, H, W), which a ConvNet checks
        self._impl = _core.Regression(_flat(x), y, ids, chosen, self.support, self.query)
        self.tasks = tuple(int(t) for t in chosen)
        self.num_rows, self.input_width = len(x), int(np.prod(self.input_shape))
        self.output_width = y.shape[1]
        self.fingerprint = _fingerprint(x, y, ids)
        self._unit_targets = _within_unit(y)
        self._x, self._y, self._task_ids = _private(x), _private(y), _private(ids)
        self._record_magnitudes(x=x, y=y)

    def _fields(self) -> dict[str, Any]:
        images = dict(input_shape=self.input_shape) if len(self.input_shape) == 3 else {}
        return dict(support=self.support, query=self.query, tasks=self.tasks, rows=self.num_rows,
                    inputs=self.input_width, outputs=self.output_width, **images, fingerprint=self.fingerprint)

    def _arguments(self) -> dict[str, Any]:
        return dict(x=self._x, y=self._y, task_ids=self._task_ids, support=self.support, query=self.query,
                    tasks=np.array(self.tasks, dtype=np.int64))


def _pool_classes(batch: TaskBatch, classes: Any) -> int:
    """The class count of a pool with labels: ``classes``, or the largest label + 1, at most a
    model's widest output (the core checks that every label lies below it)."""
    if classes is not None:
        return _validation.integer(classes, "classes", minimum=1, maximum=MAX_WIDTH)
    name, largest = max(("y_support", int(batch.y_support.max())), ("y_query", int(batch.y_query.max())),
                        key=lambda item: item[1])
    if largest >= MAX_WIDTH:
        raise ValueError(f"{name} holds the label {largest}, so the pool would have {largest + 1} classes, more than "
                         f"a model's {MAX_WIDTH} outputs: labels must lie in [0, classes) with classes <= {MAX_WIDTH}")
    return largest + 1


class TaskPool(DataFamily):
    """A fixed pool of tasks: each task of a meta-batch is one of the pool's, drawn uniformly
    and independently (with replacement) from the task stream. ``fit(batch)`` on a TaskBatch
    trains on ``TaskPool(batch)``.

    Parameters
    ----------
    batch : TaskBatch
        The pool.
    classes : int, optional
        For a pool with integer labels: the number of classes (the model's outputs, at most
        16777216); labels must lie in ``[0, classes)``. Default: the largest label + 1.
    """

    def __init__(self, batch: TaskBatch, classes: int | None = None) -> None:
        if not isinstance(batch, TaskBatch):
            raise TypeError(f"batch must be a metafast.TaskBatch, got {type(batch).__name__}")
        if batch.has_labels:
            classes = _pool_classes(batch, classes)
        elif classes is not None:
            raise ValueError("classes applies only to a pool with integer labels")
        self.loss = "softmax_ce" if batch.has_labels else "mse"
        self.classes = classes
        self._impl = _core.TaskPool(batch.x_support, batch.y_support, batch.x_query, batch.y_query, classes or 0)
        self.num_tasks, self.support_size, self.query_size = batch.num_tasks, batch.support_size, batch.query_size
        self.input_width = batch.input_width
        self.output_width: int = classes if classes is not None else batch.y_support.shape[2]
        self.fingerprint = _fingerprint(batch.x_support, batch.y_support, batch.x_query, batch.y_query)
        self._unit_targets = batch.has_labels or (_within_unit(batch.y_support) and _within_unit(batch.y_query))
        self._batch = TaskBatch(*(_private(getattr(batch, name)) for name in ("x_support", "y_support", "x_query",
                                                                             "y_query")))
        self._record_magnitudes(x_support=batch.x_support, y_support=batch.y_support, x_query=batch.x_query,
                                y_query=batch.y_query)

    def _fields(self) -> dict[str, Any]:
        return dict(tasks=self.num_tasks, support=self.support_size, query=self.query_size, inputs=self.input_width,
                    outputs=self.output_width, fingerprint=self.fingerprint)

    def _arguments(self) -> dict[str, Any]:
        return dict(batch=self._batch, classes=self.classes)

