"""The fixed pairwise tree that sums a meta-batch's task slots (docs/math.md, "The sum over the
tasks"): its bits against an independent NumPy evaluation of the tree, the same bits for every
split of the tasks and grouping of the merges, and its error against the exact sum within the
bound that docs/math.md states."""

from fractions import Fraction
import math

import numpy as np
import pytest

import metafast as mf
from metafast import _core


def reference_tree(rows, first, size, total):
    """Node (first, size) of the tree over ``total`` rows, straight from its definition."""
    if size == 1:
        return rows[first]
    half = size // 2
    if first + half >= total:
        return reference_tree(rows, first, half, total)
    return reference_tree(rows, first, half, total) + reference_tree(rows, first + half, half, total)


def reference_sum(values, scores):
    total = len(values)
    top = 1 << max(total - 1, 0).bit_length()
    return reference_tree(list(values), 0, top, total), reference_tree([float(s) for s in scores], 0, top, total)


def splits(total, rng):
    """Bounds of every interesting kind: one part, every task its own, random parts (some empty)."""
    yield [0, total]
    yield list(range(total + 1))
    for parts in (2, 3, 5, 8):
        cuts = np.sort(rng.integers(0, total + 1, size=parts - 1))
        yield [0, *map(int, cuts), total]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("total", [*range(1, 26), 31, 32, 33, 64, 100, 257])
def test_the_tree_gives_its_definitions_bits_for_every_split(dtype, total):
    rng = np.random.default_rng(total)
    for width in (1, 7, 16, 100):  # a scalar tail, whole vectors and both
        values = (rng.standard_normal((total, width)) * 10.0 ** rng.integers(-3, 4, (total, 1))).astype(dtype)
        scores = rng.standard_normal(total)
        expected_sum, expected_score = reference_sum(values, scores)
        for bounds in splits(total, rng):
            for merge in ("team", "processes"):
                got_sum, got_score = _core.tree_sum(values, scores, bounds, merge)
                assert got_sum.dtype == dtype
                assert got_sum.tobytes() == expected_sum.tobytes(), (width, bounds, merge)
                assert got_score == expected_score


def exact_sum_bound(values, dtype):
    """Per element: (the exact sum, the bound of docs/math.md on the tree's error)."""
    info = np.finfo(dtype)
    total = len(values)
    depth = max(total - 1, 0).bit_length()  # additions on a leaf's way to the root
    u = float(info.eps) / 2
    gamma = depth * u / (1 - depth * u)
    tiny = float(info.tiny)  # flushed subnormals: each input and each sum may lose less than this
    exact = [sum(Fraction(float(v)) for v in column) for column in values.T]
    bound = [gamma * float(sum(abs(Fraction(float(v))) for v in column)) + (2 * total - 1) * tiny
             for column in values.T]
    return exact, bound


def adversarial(dtype, total, rng):
    info = np.finfo(dtype)
    lowest, highest = math.log2(float(info.tiny)), math.log2(float(info.max)) - math.log2(total) - 1
    width = 6
    values = np.empty((total, width), dtype=dtype)
    # cancellation: huge pairs that cancel, around small values
    big = dtype(2.0 ** (highest - 2))
    values[:, 0] = np.where(np.arange(total) % 2 == 0, big, -big)
    values[total // 2, 0] = dtype(1.5)
    # the whole exponent range, both signs
    values[:, 1] = (np.sign(rng.standard_normal(total)) * 2.0 ** rng.uniform(lowest, highest, total)).astype(dtype)
    # subnormals (flushed to zero as inputs) and the smallest normals
    values[:, 2] = (rng.integers(1, 1000, total) * float(info.smallest_subnormal)).astype(dtype)
    values[:, 3] = np.where(np.arange(total) % 3 == 0, info.tiny, -info.tiny * dtype(0.75))
    # ones and a value that absorbs them
    values[:, 4] = 1
    values[0, 4] = dtype(2.0 ** (info.nmant + 1))
    values[:, 5] = rng.standard_normal(total).astype(dtype)
    return values


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("total", [2, 7, 25, 64, 129])
def test_adversarial_sums_are_the_same_for_every_split_and_within_the_stated_bound(dtype, total):
    rng = np.random.default_rng(7 * total)
    values = adversarial(dtype, total, rng)
    scores = np.zeros(total)
    one, _ = _core.tree_sum(values, scores, [0, total])
    for bounds in splits(total, rng):
        for merge in ("team", "processes"):
            assert _core.tree_sum(values, scores, bounds, merge)[0].tobytes() == one.tobytes(), bounds
    exact, bound = exact_sum_bound(values, dtype)
    for k in range(values.shape[1]):
        error = abs(Fraction(float(one[k])) - exact[k])
        assert error <= Fraction(bound[k]), (k, float(error), bound[k])


def test_bad_arguments_are_named():
    values, scores = np.zeros((4, 2)), np.zeros(4)
    with pytest.raises(ValueError, match="bounds must run from 0"):
        _core.tree_sum(values, scores, [0, 3])
    with pytest.raises(ValueError, match="bounds must not decrease"):
        _core.tree_sum(values, scores, [0, 3, 2, 4])
    with pytest.raises(ValueError, match="merge must be"):
        _core.tree_sum(values, scores, [0, 4], "ring")
    with pytest.raises(TypeError, match="values must be a float32 array"):
        _core.tree_sum(values.astype(np.int64), scores, [0, 4])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_meta_gradient_is_the_tree_of_the_task_gradients(dtype):
    """The learner's mean gradient over 13 tasks against the tree, evaluated here, of the 13
    gradients that single-task batches give (a mean of one task is its gradient exactly)."""
    learner = mf.MetaSGD(mf.MLP([1, 16, 1]), seed=3, dtype=dtype)
    batch = mf.tasks.Sinusoid().sample(13, dtype=dtype, seed=5)
    for threads in (1, 2):
        learner.num_threads = threads
        loss, theta, alpha = learner.meta_gradient(batch)
        singles = [learner.meta_gradient(mf.TaskBatch(batch.x_support[i:i + 1], batch.y_support[i:i + 1],
                                                      batch.x_query[i:i + 1], batch.y_query[i:i + 1]))
                   for i in range(13)]
        for position, got in ((1, theta), (2, alpha)):
            tree, _ = reference_sum(np.stack([single[position] for single in singles]), np.zeros(13))
            assert got.tobytes() == (tree / np.dtype(dtype).type(13)).tobytes()
        _, score = reference_sum(np.zeros((13, 1)), [float(single[0]) for single in singles])
        assert float(loss) == pytest.approx(score / 13, rel=1e-6 if dtype == "float32" else 1e-15)
