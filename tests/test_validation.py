"""Bad input gets a clear ValueError or TypeError naming the argument, never a crash or a
silently wrong answer; unusual memory layouts are read correctly."""

from __future__ import annotations

import numpy as np
import pytest

import metafast as mf

MODEL = mf.MLP([1, 8, 1], activation="tanh")
THETA = MODEL.init(seed=0)
X = np.linspace(-1, 1, 5).reshape(-1, 1)
Y = np.sin(X)
V = np.ones(MODEL.num_params)
CLASSIFIER = mf.MLP([2, 4, 3])
CX = np.arange(8.0).reshape(4, 2)
LABELS = np.array([0, 1, 2, 1])


def with_nan(array, index=0):
    bad = np.array(array, dtype=np.float64)
    bad.flat[index] = np.nan
    return bad


def with_inf(array, index=-1):
    bad = np.array(array, dtype=np.float64)
    bad.flat[index] = -np.inf
    return bad


BAD_CALLS = {
    # wrong shapes
    "x-wrong-width": (lambda: MODEL.forward(THETA, np.zeros((5, 2))), ValueError, r"x must have shape \(rows, 1\), got \(5, 2\)"),
    "x-1d": (lambda: MODEL.forward(THETA, np.zeros(5)), ValueError, r"x must have shape \(rows, 1\), got \(5,\)"),
    "x-3d": (lambda: MODEL.loss(THETA, np.zeros((2, 5, 1)), Y), ValueError, r"x must have shape \(rows, 1\)"),
    "y-wrong-rows": (lambda: MODEL.loss(THETA, X, Y[:4]), ValueError, r"y must have shape \(5, 1\), got \(4, 1\)"),
    "y-1d": (lambda: MODEL.loss_and_grad(THETA, X, Y.ravel()), ValueError, r"y must have shape \(5, 1\), got \(5,\)"),
    "theta-short": (lambda: MODEL.forward(THETA[:-1], X), ValueError, r"theta must have shape \(25,\), got \(24,\)"),
    "theta-2d": (lambda: MODEL.forward(THETA.reshape(5, 5), X), ValueError, r"theta must have shape \(25,\)"),
    "v-long": (lambda: MODEL.hvp(THETA, X, Y, np.ones(26)), ValueError, r"v must have shape \(25,\), got \(26,\)"),
    "labels-2d": (lambda: CLASSIFIER.loss(CLASSIFIER.init(), CX, LABELS.reshape(-1, 1), "softmax_ce"), ValueError, r"y must have shape \(4,\)"),
    "unflatten-short": (lambda: MODEL.unflatten(THETA[:3]), ValueError, r"theta must have shape \(25,\)"),
    # empty arrays
    "x-empty": (lambda: MODEL.forward(THETA, np.zeros((0, 1))), ValueError, "x must not be empty"),
    "y-empty": (lambda: MODEL.loss(THETA, np.zeros((0, 1)), np.zeros((0, 1))), ValueError, "x must not be empty"),
    # dtypes
    "theta-int": (lambda: MODEL.forward(np.zeros(25, dtype=np.int64), X), TypeError, "theta must be a float32 or float64 array, got dtype int64"),
    "theta-float16": (lambda: MODEL.forward(THETA.astype(np.float16), X), TypeError, "theta must be a float32 or float64 array, got dtype float16"),
    "theta-object": (lambda: MODEL.forward(THETA.astype(object), X), TypeError, "theta must be a float32 or float64 array, got dtype object"),
    "theta-bool": (lambda: MODEL.forward(np.ones(25, dtype=bool), X), TypeError, "theta must be a float32 or float64"),
    "theta-strings": (lambda: MODEL.forward(["a"] * 25, X), ValueError, "theta must be an array of numbers"),
    "x-object": (lambda: MODEL.forward(THETA, X.astype(object)), TypeError, r"^x must hold numbers \(floats or integers\), got dtype object$"),
    "x-bool": (lambda: MODEL.forward(THETA, X > 0), TypeError, r"^x must hold numbers \(floats or integers\), got dtype bool$"),
    "x-strings": (lambda: MODEL.forward(THETA, [["1.5"]] * 5), TypeError, "x must hold numbers .floats or integers., got dtype <U3"),
    "y-complex": (lambda: MODEL.loss(THETA, X, Y.astype(complex)), TypeError, "y must hold numbers .floats or integers., got dtype complex128"),
    "x-beyond-float32": (lambda: MODEL.forward(THETA.astype(np.float32), np.full((5, 1), 1e39)), ValueError,
                         r"^x has values beyond the range of float32 \(largest magnitude 1e\+39, above float32's maximum"),
    "y-beyond-float32": (lambda: MODEL.loss(THETA.astype(np.float32), X, np.full((5, 1), -1e300)), ValueError,
                         "y has values beyond the range of float32"),
    "v-beyond-float32": (lambda: MODEL.hvp(THETA.astype(np.float32), X, Y, np.full(25, 1e39)), ValueError,
                         "v has values beyond the range of float32"),
    "labels-float": (lambda: CLASSIFIER.loss(CLASSIFIER.init(), CX, LABELS.astype(float), "softmax_ce"), TypeError, "y must hold integer class labels"),
    "init-dtype": (lambda: MODEL.init(dtype="float16"), TypeError, "dtype must be 'float32' or 'float64'"),
    "init-dtype-garbage": (lambda: MODEL.init(dtype="nonsense"), TypeError, "dtype must be 'float32' or 'float64'"),
    "init-dtype-none": (lambda: MODEL.init(dtype=None), TypeError, "dtype must be .float32. or .float64., got None"),
    "init-seed-negative": (lambda: MODEL.init(seed=-1), ValueError, "seed must be at least 0"),
    "init-seed-float": (lambda: MODEL.init(seed=1.5), TypeError, "seed must be an integer"),
    # non-finite values
    "theta-nan": (lambda: MODEL.forward(with_nan(THETA, 3), X), ValueError, r"theta contains NaN or infinity \(at flat index 3\)"),
    "x-nan": (lambda: MODEL.forward(THETA, with_nan(X)), ValueError, "x contains NaN or infinity"),
    "x-inf": (lambda: MODEL.loss(THETA, with_inf(X), Y), ValueError, "x contains NaN or infinity"),
    "y-inf": (lambda: MODEL.loss_and_grad(THETA, X, with_inf(Y)), ValueError, "y contains NaN or infinity"),
    "v-nan": (lambda: MODEL.hvp(THETA, X, Y, with_nan(V)), ValueError, "v contains NaN or infinity"),
    # labels and targets out of range
    "label-too-big": (lambda: CLASSIFIER.loss(CLASSIFIER.init(), CX, np.array([0, 1, 3, 1]), "softmax_ce"), ValueError, r"labels in \[0, 3\) for softmax_ce, got 3 at flat index 2"),
    "label-negative": (lambda: CLASSIFIER.loss_and_grad(CLASSIFIER.init(), CX, np.array([0, -1, 2, 1]), "softmax_ce"), ValueError, "got -1 at flat index 1"),
    "label-huge-unsigned": (lambda: CLASSIFIER.loss(CLASSIFIER.init(), CX, np.array([0, 1, 2, 2**64 - 1], dtype=np.uint64), "softmax_ce"), ValueError, "too large"),
    "bce-target-out-of-range": (lambda: MODEL.loss(THETA, X, Y + 2, "bce"), ValueError, r"y must hold probabilities in \[0, 1\] for bce"),
    # names and architecture
    "unknown-loss": (lambda: MODEL.loss(THETA, X, Y, "hinge"), ValueError, "loss must be one of 'mse', 'bce', 'softmax_ce', got 'hinge'"),
    "loss-not-str": (lambda: MODEL.loss(THETA, X, Y, 3), TypeError, "loss must be a string"),
    "unknown-activation": (lambda: mf.MLP([1, 2], activation="gelu"), ValueError, "activation must be one of .* got 'gelu'"),
    "unknown-output": (lambda: mf.MLP([1, 2], output="softmax"), ValueError, "output must be one of .* got 'softmax'"),
    "sizes-too-short": (lambda: mf.MLP([3]), ValueError, "sizes must list at least an input and an output width"),
    "sizes-zero": (lambda: mf.MLP([3, 0, 1]), ValueError, r"^sizes\[1\] must be at least 1, got 0$"),
    "sizes-negative": (lambda: mf.MLP([3, -2]), ValueError, r"^sizes\[1\] must be at least 1, got -2$"),
    "sizes-too-wide": (lambda: mf.MLP([3, 4, 2**24 + 1]), ValueError, r"^sizes\[2\] must be at most 16777216, got 16777217$"),
    "sizes-float": (lambda: mf.MLP([3, 2.5]), TypeError, r"^sizes\[1\] must be an integer, got 2.5$"),
    "sizes-bool": (lambda: mf.MLP([True, 2]), TypeError, r"^sizes\[0\] must be an integer"),
    "too-many-params": (lambda: mf.MLP([1, 10**6, 10**6, 1]), ValueError,
                        r"^the network has 1,000,004,000,001 parameters, more than the limit of 68,719,476,736 \(2\*\*36\)$"),
    "too-many-params-no-bias": (lambda: mf.MLP([2**18, 2**18, 2], bias=False), ValueError,
                                "the network has 68,720,001,024 parameters"),
    "sizes-string": (lambda: mf.MLP("12"), TypeError, "sizes must be a sequence"),
    "evaluate-negative-steps": (lambda: mf.MetaSGD(MODEL, seed=0).evaluate(mf.tasks.Sinusoid(), 2, steps=(0, 2, -1)),
                                ValueError, r"^steps\[2\] must be at least 0, got -1$"),
    "evaluate-float-steps": (lambda: mf.MetaSGD(MODEL, seed=0).evaluate(mf.tasks.Sinusoid(), 2, steps=[1.5]),
                             TypeError, r"^steps\[0\] must be an integer, got 1.5$"),
    "bias-not-bool": (lambda: mf.MLP([1, 2], bias="yes"), TypeError, "bias must be True or False"),
    "bce-with-tanh-output": (lambda: mf.MLP([1, 1], output="tanh").loss(np.zeros(2), X, np.zeros((5, 1)), "bce"), ValueError, "loss 'bce' needs output activation 'identity'"),
    "softmax-with-sigmoid-output": (lambda: mf.MLP([2, 3], output="sigmoid").loss(np.zeros(9), CX, LABELS, "softmax_ce"), ValueError, "needs output activation 'identity'"),
    "softmax-with-one-output": (lambda: mf.MLP([2, 1]).loss(np.zeros(3), CX, np.zeros(4, dtype=int), "softmax_ce"), ValueError, "output width of at least 2"),
}


@pytest.mark.parametrize("call,error,message", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_input_raises_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


MIXED = {
    "x-float32-theta-float64": (np.float64, dict(x=np.float32)),
    "x-float64-theta-float32": (np.float32, dict(x=np.float64)),
    "x-int32-theta-float64": (np.float64, dict(x=np.int32)),
    "x-int64-theta-float32": (np.float32, dict(x=np.int64)),
    "y-float32-theta-float64": (np.float64, dict(y=np.float32)),
    "y-int-theta-float32": (np.float32, dict(y=np.int64)),
    "v-float64-theta-float32": (np.float32, dict(v=np.float64)),
    "all-float16-theta-float64": (np.float64, dict(x=np.float16, y=np.float16, v=np.float16)),
}


@pytest.mark.parametrize("theta_dtype,dtypes", MIXED.values(), ids=MIXED.keys())
def test_inputs_of_another_dtype_are_converted_to_thetas(theta_dtype, dtypes):
    """x, y and v are converted to theta's dtype, which stays the result's: the same bits as
    converting them first (integer x and y hold small integers, exact in every dtype)."""
    theta = THETA.astype(theta_dtype)
    given = {"x": np.round(X * 4), "y": np.round(Y * 4), "v": np.round(V * 2)}
    exact = {name: value.astype(theta_dtype) for name, value in given.items()}
    mixed = {name: value.astype(dtypes.get(name, theta_dtype)) for name, value in given.items()}
    for method, names in (("forward", "x"), ("loss", "xy"), ("loss_and_grad", "xy"), ("hvp", "xyv")):
        expected = getattr(MODEL, method)(theta, *(exact[n] for n in names))
        actual = getattr(MODEL, method)(theta, *(mixed[n] for n in names))
        pairs = zip(actual, expected) if isinstance(actual, tuple) else [(actual, expected)]  # loss_and_grad: two
        for a, e in pairs:
            assert np.asarray(a).dtype == theta_dtype
            np.testing.assert_array_equal(a, e)


def test_lists_are_converted_to_thetas_dtype():
    theta32 = THETA.astype(np.float32)
    out = MODEL.forward(theta32, X.tolist())
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, MODEL.forward(theta32, X.astype(np.float32)))
    np.testing.assert_array_equal(MODEL.forward(THETA.tolist(), X), MODEL.forward(THETA, X))


@pytest.mark.parametrize(
    "make",
    [
        lambda a: np.asfortranarray(a),
        lambda a: np.repeat(a, 2, axis=0)[::2],
        lambda a: np.ascontiguousarray(a[::-1])[::-1],
        lambda a: a.astype(a.dtype.newbyteorder(">")),
    ],
    ids=["fortran", "strided", "negative-strides", "big-endian"],
)
def test_unusual_layouts_are_read_correctly(make, rng):
    model = mf.MLP([3, 5, 2], activation="sigmoid")
    theta = model.init(seed=2)
    x = rng.normal(size=(6, 3))
    y = rng.normal(size=(6, 2))
    v = rng.normal(size=model.num_params)
    expected = model.hvp(theta, x, y, v)
    theta_long = np.repeat(theta, 2)[::2]  # strided theta
    actual = model.hvp(make(theta_long), make(x), make(y), make(v))
    np.testing.assert_array_equal(actual, expected)
    np.testing.assert_array_equal(model.forward(make(theta), make(x)), model.forward(theta, x))


def test_failed_call_leaves_inputs_untouched():
    theta = THETA.copy()
    x = with_nan(X)
    with pytest.raises(ValueError):
        MODEL.loss_and_grad(theta, x, Y)
    np.testing.assert_array_equal(theta, THETA)


PAIRS = {
    "sinusoid-0d-array": (lambda v: mf.tasks.Sinusoid(amplitude=v), "amplitude must be a pair of numbers"),
    "adam-betas-0d-array": (lambda v: mf.MetaSGD(MODEL, adam_betas=v), "adam_betas must be a pair of numbers"),
    "goal-range-0d-array": (lambda v: mf.rl.Navigation2D(goal_range=v), "goal_range must be a pair of numbers"),
}
JUNK = {
    "0d-array": np.array(0.9),
    "string": "ab",
    "bytes": b"ab",
    "nested": [[0.1, 0.2], [0.3]],
    "set": {0.1, 0.2},
    "three": (0.1, 0.2, 0.3),
    "none-inside": (0.1, None),
    "string-inside": ("0.1", 0.2),
    "2d-array": np.ones((2, 1)),
}


@pytest.mark.parametrize("junk", JUNK.values(), ids=JUNK.keys())
@pytest.mark.parametrize("make,message", PAIRS.values(), ids=PAIRS.keys())
def test_a_pair_argument_refuses_anything_but_two_numbers(make, message, junk):
    with pytest.raises(TypeError, match=f"^{message}, got "):
        make(junk)


def test_a_pair_argument_takes_a_1d_array_and_names_a_bad_element():
    assert mf.tasks.Sinusoid(amplitude=np.array([1.0, 2.0])).amplitude == (1.0, 2.0)
    with pytest.raises(ValueError, match=r"^amplitude\[1\] must be finite, got inf$"):
        mf.tasks.Sinusoid(amplitude=(1.0, np.inf))
    with pytest.raises(TypeError, match=r"^alpha_init must be a \(low, high\) pair of numbers, got \[\[0.1\], 0.2\]$"):
        mf.MetaSGD(MODEL, alpha_init=[[0.1], 0.2])


RAGGED = [[1.0], [1.0, 2.0]]
RAGGED_BATCH = [[[1.0]], [[1.0, 2.0]]]
RAGGED_CALLS = {
    "mlp-x": (lambda: MODEL.forward(THETA, RAGGED), "x"),
    "mlp-y": (lambda: MODEL.loss(THETA, X[:2], RAGGED), "y"),
    "mlp-labels": (lambda: CLASSIFIER.loss(CLASSIFIER.init(), CX[:2], [[0], [1, 2]], "softmax_ce"), "y"),
    "mlp-theta": (lambda: MODEL.forward([[0.0] * 24, [0.0]], X), "theta"),
    "flatten": (lambda: mf.MLP([2, 1], bias=False).flatten([(RAGGED, None)]), r"layers\[0\]\[0\]"),
    "batch-x_support": (lambda: mf.TaskBatch(RAGGED_BATCH, np.zeros((2, 1, 1)), np.zeros((2, 1, 1)), np.zeros((2, 1, 1))),
                        "x_support"),
    "batch-y_query": (lambda: mf.TaskBatch(np.zeros((2, 1, 1)), np.zeros((2, 1, 1)), np.zeros((2, 1, 1)), RAGGED_BATCH),
                      "y_query"),
    "regression-x": (lambda: mf.tasks.Regression(RAGGED, [1.0, 2.0], [0, 0]), "x"),
    "classification-labels": (lambda: mf.tasks.Classification(np.zeros((2, 1)), [[0], [1, 2]]), "labels"),
    "split-classes": (lambda: mf.tasks.split_classes([[0], [1, 2]], parts=(1, 1)), "labels"),
    "report-losses": (lambda: mf.EvaluationReport.from_samples((0, 1), RAGGED, None), "losses"),
}


@pytest.mark.parametrize("call,name", RAGGED_CALLS.values(), ids=RAGGED_CALLS.keys())
def test_a_ragged_list_is_named_not_numpys_raw_error(call, name):
    with pytest.raises(ValueError, match=f"^{name} must be a rectangular numeric array, but its nested sequences have "
                                         "different lengths$"):
        call()
