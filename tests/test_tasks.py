"""Built-in task families and TaskBatch: shapes, the distributions they promise, and
reproducibility from (seed, iteration, task)."""

from __future__ import annotations

import numpy as np
import pytest

import metafast as mf
from metafast.tasks import GaussianNWay, LinearBinary, SeedBinary, Sinusoid

FAMILIES = {
    "sinusoid": Sinusoid(),
    "sinusoid-book": Sinusoid.book(),
    "linear-binary": LinearBinary(dim=7, support=5, query=6),
    "seed-binary": SeedBinary(),
    "gaussian-nway": GaussianNWay(ways=4, dim=3, support=2, query=5),
}


@pytest.mark.parametrize("family", FAMILIES.values(), ids=FAMILIES.keys())
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sample_shapes_and_dtypes(family, dtype):
    batch = family.sample(6, seed=3, dtype=dtype)
    support, query = family.support, family.query
    if isinstance(family, GaussianNWay):
        support, query = family.ways * support, family.ways * query
        assert batch.y_support.shape == (6, support) and batch.y_support.dtype == np.int64
        assert batch.y_query.shape == (6, query)
    else:
        assert batch.y_support.shape == (6, support, 1) and batch.y_support.dtype == dtype
        assert batch.y_query.shape == (6, query, 1)
    width = getattr(family, "dim", 1)
    assert batch.x_support.shape == (6, support, width) and batch.x_support.dtype == dtype
    assert batch.x_query.shape == (6, query, width)


@pytest.mark.parametrize("family", FAMILIES.values(), ids=FAMILIES.keys())
def test_tasks_are_keyed_by_seed_iteration_and_index(family):
    batch = family.sample(5, seed=11, iteration=4)
    again = family.sample(5, seed=11, iteration=4, num_threads=1)
    for name in ("x_support", "y_support", "x_query", "y_query"):
        np.testing.assert_array_equal(getattr(batch, name), getattr(again, name))
    # Task i does not depend on how many tasks are drawn.
    np.testing.assert_array_equal(family.sample(2, seed=11, iteration=4).x_query, batch.x_query[:2])
    assert not np.array_equal(family.sample(5, seed=11, iteration=5).x_support, batch.x_support)
    assert not np.array_equal(family.sample(5, seed=12, iteration=4).x_support, batch.x_support)
    assert not np.array_equal(batch.x_support[0], batch.x_support[1])


def test_float32_tasks_are_rounded_float64_tasks():
    a = Sinusoid().sample(3, seed=1, dtype="float64")
    b = Sinusoid().sample(3, seed=1, dtype="float32")
    np.testing.assert_array_equal(a.x_support.astype(np.float32), b.x_support)


def fit_sine(x, y):
    """Least-squares amplitude and phase of y = A sin(x + s) (as a sin x + b cos x)."""
    coef, *_ = np.linalg.lstsq(np.column_stack([np.sin(x), np.cos(x)]), y, rcond=None)
    return np.hypot(*coef), np.arctan2(coef[1], coef[0])


@pytest.mark.parametrize("sign", [-1, 1])
def test_sinusoid_follows_its_formula(sign):
    family = Sinusoid(amplitude=(1.0, 2.0), phase=(0.2, 1.2), x_range=(-3.0, 4.0), support=40, query=40,
                      phase_sign=sign)
    batch = family.sample(50, seed=0)
    for t in range(50):
        x = np.concatenate([batch.x_support[t, :, 0], batch.x_query[t, :, 0]])
        y = np.concatenate([batch.y_support[t, :, 0], batch.y_query[t, :, 0]])
        amplitude, shift = fit_sine(x, y)
        np.testing.assert_allclose(y, amplitude * np.sin(x + shift), atol=1e-12)
        assert 1.0 <= amplitude <= 2.0
        assert 0.2 <= sign * shift <= 1.2
        assert x.min() >= -3.0 and x.max() < 4.0


def test_sinusoid_book_grid():
    batch = Sinusoid.book().sample(20, seed=2)
    grid = np.linspace(-5, 5, 100)
    x = np.concatenate([batch.x_support.ravel(), batch.x_query.ravel()])
    assert np.abs(x[:, None] - grid[None, :]).min(axis=1).max() < 1e-12
    assert len(np.unique(np.round(x, 9))) > 90  # the whole grid is used
    assert batch.support_size == 50


def test_linear_binary_labels_come_from_a_hyperplane():
    batch = LinearBinary(dim=5, support=2000, query=10).sample(3, seed=0)
    for t in range(3):
        x, y = batch.x_support[t], batch.y_support[t, :, 0]
        assert 0.2 < y.mean() < 0.8
        w, *_ = np.linalg.lstsq(x, 2 * y - 1, rcond=None)
        assert np.mean((x @ w > 0) == (y == 1)) > 0.95
        assert x.min() >= -1 and x.max() <= 1


def test_seed_binary_is_the_books_distribution():
    batch = SeedBinary().sample(200, seed=0)
    assert batch.x_support.min() >= 0 and batch.x_support.max() < 1
    assert set(np.unique(batch.y_support)) == {0.0, 1.0}
    assert abs(batch.y_support.mean() - 0.5) < 0.03
    # Labels carry no information about x.
    corr = np.corrcoef(batch.x_support.reshape(-1, 50).T, batch.y_support.reshape(-1))[-1, :-1]
    assert np.abs(corr).max() < 0.15


def test_gaussian_nway_labels_and_clusters():
    family = GaussianNWay(ways=3, dim=2, support=50, query=1, spread=0.1)
    batch = family.sample(4, seed=0)
    np.testing.assert_array_equal(batch.y_support[0], np.arange(150) % 3)
    for t in range(4):
        for k in range(3):
            points = batch.x_support[t][batch.y_support[t] == k]
            assert points.std(axis=0).max() < 0.15


def test_family_equality_and_repr():
    assert Sinusoid() == Sinusoid() and Sinusoid() != Sinusoid(support=5)
    assert "support=10" in repr(Sinusoid())


BAD_FAMILIES = {
    "support-zero": (lambda: Sinusoid(support=0), ValueError, r"support must lie in \[1, 16777216\], got 0"),
    "range-reversed": (lambda: Sinusoid(x_range=(1.0, -1.0)), ValueError, r"x_range must be a finite \(low, high\) pair with low < high, got \(1, -1\)"),
    "range-empty": (lambda: Sinusoid(x_range=(1.0, 1.0)), ValueError, "x_range must be a .* with low < high"),
    "range-nan": (lambda: Sinusoid(amplitude=(0.1, np.nan)), ValueError, r"amplitude\[1\] must be finite"),
    "range-scalar": (lambda: Sinusoid(amplitude=3.0), TypeError, "amplitude must be a pair of numbers"),
    "grid-one": (lambda: Sinusoid(grid=1), ValueError, r"grid must be None \(continuous inputs\) or a number of points in \[2, 2\^32\], got 1"),
    "phase-sign": (lambda: Sinusoid(phase_sign=2), ValueError, "phase_sign must be -1 or"),
    "dim-zero": (lambda: LinearBinary(dim=0), ValueError, r"dim must lie in \[1, 16777216\], got 0"),
    "ways-one": (lambda: GaussianNWay(ways=1), ValueError, r"ways must lie in \[2, 16777216\], got 1"),
    "spread-negative": (lambda: GaussianNWay(spread=-1.0), ValueError, "spread must be a finite number >= 0, got -1"),
    "num-tasks-zero": (lambda: Sinusoid().sample(0), ValueError, "num_tasks must be at least 1"),
    "seed-negative": (lambda: Sinusoid().sample(2, seed=-3), ValueError, "seed must be at least 0"),
    "sample-dtype": (lambda: Sinusoid().sample(2, dtype="int32"), TypeError, "dtype must be"),
}


@pytest.mark.parametrize("call,error,message", BAD_FAMILIES.values(), ids=BAD_FAMILIES.keys())
def test_bad_family_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_task_batch_from_user_arrays():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 8, 2))
    batch = mf.TaskBatch(x[:, :5], x[:, :5, :1] * 2, x[:, 5:], x[:, 5:, :1] * 2)
    assert (batch.num_tasks, batch.support_size, batch.query_size, batch.input_width) == (3, 5, 3, 2)
    assert not batch.has_labels and batch.dtype == np.float64 and len(batch) == 3
    assert batch[1].num_tasks == 1 and batch[-1].num_tasks == 1
    np.testing.assert_array_equal(batch[-1].x_query[0], x[2, 5:])
    assert batch.astype("float32").dtype == np.float32
    labels = mf.TaskBatch(x[:, :5], np.zeros((3, 5), dtype=np.int32), x[:, 5:], np.ones((3, 3), dtype=np.int64))
    assert labels.has_labels and labels.y_support.dtype == np.int64


BAD_BATCHES = {
    "task-count": (lambda x: mf.TaskBatch(x, x, x[:1], x[:1]), ValueError, "same number of tasks"),
    "rows": (lambda x: mf.TaskBatch(x, x[:, :3], x, x), ValueError, "as many rows"),
    "x-2d": (lambda x: mf.TaskBatch(x[0], x, x, x), ValueError, r"x_support must have shape \(tasks, rows, width\)"),
    "empty": (lambda x: mf.TaskBatch(x[:, :0], x[:, :0], x, x), ValueError, "x_support must not be empty"),
    "mixed-labels": (lambda x: mf.TaskBatch(x, np.zeros((2, 4), dtype=int), x, x), TypeError, "both be integer labels"),
    "object": (lambda x: mf.TaskBatch(x.astype(object), x, x, x), TypeError, "x_support must be a float32 or float64"),
    "input-widths": (lambda x: mf.TaskBatch(x, x, x[..., :1], x), ValueError,
                     r"^support and query sets must have the same input shape, got x_support of shape \(2,\) and "
                     r"x_query of shape \(1,\) per row$"),
    "output-widths": (lambda x: mf.TaskBatch(x, x[..., :1], x, x), ValueError,
                      r"^support and query sets must have the same output width, got y_support of width 1 and "
                      r"y_query of width 2$"),
    "integer-regression-targets": (lambda x: mf.TaskBatch(x, x.astype(int), x, x.astype(int)), ValueError,
                                   r"^integer y_support is read as class labels of shape \(tasks, rows\), got shape "
                                   r"\(2, 4, 2\); for regression targets pass floats, e.g. y_support.astype\(float\)$"),
    "integer-query-targets": (lambda x: mf.TaskBatch(x, x[..., 0].astype(int), x, x.astype(np.int32)), ValueError,
                              "integer y_query is read as class labels"),
}


@pytest.mark.parametrize("call,error,message", BAD_BATCHES.values(), ids=BAD_BATCHES.keys())
def test_bad_task_batches(call, error, message):
    with pytest.raises(error, match=message):
        call(np.zeros((2, 4, 2)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("family", [Sinusoid(), LinearBinary(dim=7), SeedBinary(dim=3), GaussianNWay(ways=3, dim=4)],
                         ids=lambda family: type(family).__name__)
def test_the_memory_a_draw_needs_is_what_the_core_allocates(family, dtype):
    batch = family.sample(5, dtype=dtype)
    arrays = (batch.x_support, batch.y_support, batch.x_query, batch.y_query)
    assert family._sample_bytes(5, dtype) == sum(array.nbytes for array in arrays)
