"""The MLP's public API: architecture, parameter layout, initialisation, (un)flattening."""

from __future__ import annotations

import time

import numpy as np
import pytest

import metafast as mf
from metafast import reference


def test_architecture_properties():
    model = mf.MLP([1, 40, 40, 1], activation="relu", output="identity", bias=True)
    assert model.sizes == (1, 40, 40, 1)
    assert model.num_params == 1761
    assert model.num_layers == 3
    assert (model.activation, model.output, model.bias) == ("relu", "identity", True)
    assert repr(model) == "MLP([1, 40, 40, 1], activation='relu', output='identity', bias=True)"
    assert model == mf.MLP([1, 40, 40, 1])
    assert model != mf.MLP([1, 40, 40, 1], bias=False)
    assert mf.MLP([50, 1], activation="identity", bias=False).num_params == 50


def test_layout_matches_readme_table():
    model = mf.MLP([1, 40, 40, 1])
    theta = np.arange(model.num_params, dtype=np.float64)
    starts = [int(block.flat[0]) for layer in model.unflatten(theta) for block in layer]
    assert starts == [0, 40, 80, 1680, 1720, 1760]


def test_layout_is_what_forward_computes(rng):
    """Write W and b through unflatten, then compare forward with plain NumPy."""
    model = mf.MLP([3, 4, 2], activation="tanh", output="identity")
    theta = np.zeros(model.num_params)
    (w1, b1), (w2, b2) = model.unflatten(theta)
    for block in (w1, b1, w2, b2):
        block[...] = rng.normal(size=block.shape)
    x = rng.normal(size=(6, 3))
    expected = np.tanh(x @ w1 + b1) @ w2 + b2
    np.testing.assert_allclose(model.forward(theta, x), expected, rtol=1e-14)


def test_unflatten_returns_views_and_flatten_inverts(rng):
    model = mf.MLP([2, 3, 4], bias=False)
    theta = rng.normal(size=model.num_params)
    layers = model.unflatten(theta)
    assert [w.shape for w, _ in layers] == [(2, 3), (3, 4)]
    assert all(b is None for _, b in layers)
    layers[1][0][0, 0] = 42.0
    assert theta[6] == 42.0
    np.testing.assert_array_equal(model.flatten(layers), theta)


FLATTEN_MIXED = {
    "float32-rest-float64-first": (np.float64, np.float32),
    "float64-rest-float32-first": (np.float32, np.float64),
    "int64-rest-float32-first": (np.float32, np.int64),
    "int32-rest-float64-first": (np.float64, np.int32),
}


@pytest.mark.parametrize("first,rest", FLATTEN_MIXED.values(), ids=FLATTEN_MIXED.keys())
def test_flatten_converts_to_the_first_weights_dtype(first, rest):
    """The first W sets the dtype; the other weights and biases are converted to it (small
    integers, exact in every dtype)."""
    model = mf.MLP([2, 3, 1])
    theta = np.round(model.init(seed=0) * 8).astype(first)
    layers = [(w.astype(first if i == 0 else rest), b.astype(rest)) for i, (w, b) in enumerate(model.unflatten(theta))]
    flat = model.flatten(layers)
    assert flat.dtype == first
    np.testing.assert_array_equal(flat, theta)


FLATTEN_ERRORS = {
    "int-first-weights": (lambda layers: [(layers[0][0].astype(int), layers[0][1]), layers[1]], TypeError,
                          r"^layers\[0\]\[0\] must be a float32 or float64 array, got dtype int64$"),
    "bool-bias": (lambda layers: [(layers[0][0], layers[0][1] > 0), layers[1]], TypeError,
                  r"^layers\[0\]\[1\] must hold numbers \(floats or integers\), got dtype bool$"),
    "beyond-float32": (lambda layers: [layers[0], (np.full((3, 1), 1e39), layers[1][1])], ValueError,
                       r"^layers\[1\]\[0\] has values beyond the range of float32"),
}


@pytest.mark.parametrize("edit,error,message", FLATTEN_ERRORS.values(), ids=FLATTEN_ERRORS.keys())
def test_flatten_refuses_what_it_cannot_convert(edit, error, message):
    model = mf.MLP([2, 3, 1])
    layers = model.unflatten(model.init(dtype="float32"))
    with pytest.raises(error, match=message):
        model.flatten(edit(layers))


def test_flatten_checks_shapes():
    model = mf.MLP([2, 3])
    with pytest.raises(ValueError, match=r"layers\[0\]\[0\] must have shape \(2, 3\)"):
        model.flatten([(np.zeros((3, 2)), np.zeros(3))])
    with pytest.raises(ValueError, match="must hold 1"):
        model.flatten([])


@pytest.mark.parametrize("dtype", ["float32", "float64", np.float32, np.dtype("float64")])
def test_init_dtype_and_reproducibility(dtype):
    model = mf.MLP([1, 40, 40, 1])
    theta = model.init(seed=7, dtype=dtype)
    assert theta.dtype == np.dtype(dtype) and theta.shape == (model.num_params,)
    np.testing.assert_array_equal(theta, model.init(seed=7, dtype=dtype))
    assert not np.array_equal(theta, model.init(seed=8, dtype=dtype))
    np.testing.assert_array_equal(theta, model.init(seed=7).astype(dtype))


def test_construction_and_init_take_linear_time_in_the_layers():
    # They took 52 s at 100,000 layers (each layer copied the list of widths); now well under one.
    started = time.perf_counter()
    theta = mf.MLP([1] * 100_001).init(seed=0)
    assert theta.shape == (200_000,) and time.perf_counter() - started < 2.0


@pytest.mark.parametrize("activation,scheme", [("relu", "he"), ("tanh", "glorot")])
def test_init_scheme(activation, scheme):
    model = mf.MLP([200, 300, 100], activation=activation)
    (w1, b1), (w2, b2) = model.unflatten(model.init(seed=0))
    he = lambda fan_in, fan_out: np.sqrt(6 / fan_in)  # noqa: E731
    glorot = lambda fan_in, fan_out: np.sqrt(6 / (fan_in + fan_out))  # noqa: E731
    hidden_limit = (he if scheme == "he" else glorot)(200, 300)
    assert np.abs(w1).max() <= hidden_limit
    assert np.abs(w1).max() > 0.99 * hidden_limit  # 60,000 draws fill the interval
    assert np.std(w1) == pytest.approx(hidden_limit / np.sqrt(3), rel=0.02)
    assert np.abs(w2).max() <= glorot(300, 100)  # identity output: Glorot
    assert not b1.any() and not b2.any()


def test_result_dtypes_follow_theta(rng):
    model = mf.MLP([2, 3, 1])
    for dtype in (np.float32, np.float64):
        theta = model.init(dtype=dtype)
        x = rng.normal(size=(4, 2)).astype(dtype)
        y = rng.normal(size=(4, 1)).astype(dtype)
        assert model.forward(theta, x).dtype == dtype
        value, grad = model.loss_and_grad(theta, x, y)
        assert value.dtype == dtype and grad.dtype == dtype
        assert model.hvp(theta, x, y, grad).dtype == dtype
        assert model.loss(theta, x, y).dtype == dtype


def test_large_batch_and_wide_layers(rng):
    model = mf.MLP([3, 512, 2], activation="sigmoid")
    theta = model.init(seed=1)
    x = rng.normal(size=(1000, 3))
    y = rng.normal(size=(1000, 2))
    value, grad = model.loss_and_grad(theta, x, y)
    ref_value, ref_grad = reference.mlp_loss_and_grad(model, theta, x, y)
    assert value == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-13)


def test_float32_activations_are_within_their_documented_error():
    """float32 tanh and sigmoid use a rational approximation: below 7 ulp (tanh) and 4e-7
    absolute (both), as README states."""
    x = np.linspace(-12, 12, 200_001).reshape(-1, 1)
    theta = np.ones(1, dtype=np.float32)
    tanh = mf.MLP([1, 1], activation="identity", output="tanh", bias=False).forward(theta, x.astype(np.float32))
    exact = np.tanh(x.astype(np.float32).astype(np.float64))
    ulps = np.abs(tanh - exact) / np.spacing(np.abs(exact).astype(np.float32))
    assert ulps.max() < 7 and np.abs(tanh - exact).max() < 4e-7
    sigmoid = mf.MLP([1, 1], activation="identity", output="sigmoid", bias=False).forward(theta, x.astype(np.float32))
    exact = 1 / (1 + np.exp(-x.astype(np.float32).astype(np.float64)))
    assert np.abs(sigmoid - exact).max() < 4e-7


def test_init_schemes_are_one_list():
    from metafast.mlp import INIT_FORMS, INIT_SCHEMES

    assert INIT_SCHEMES == ("auto", "he", "glorot", "pytorch")
    assert INIT_FORMS == "'auto', 'he', 'glorot', 'pytorch' or ('normal', std)"
    model = mf.MLP([1, 8, 1])
    for scheme in INIT_SCHEMES:
        assert model.init(0, scheme=scheme).shape == (25,)


LEARNER_FORMS = r"^init must be 'auto', 'he', 'glorot', 'pytorch', \('normal', std\) or theta \(an array of 25 numbers\), got "
MODEL_FORMS = r"^scheme must be 'auto', 'he', 'glorot', 'pytorch' or \('normal', std\), got "
BAD_INITS = {
    "normal-three-items": (("normal", 0.1, 2), ValueError, r"\('normal', 0.1, 2\): a scheme is a name alone or \('normal', std\)$"),
    "std-first": ((0.1, "normal"), TypeError, r"\(0.1, 'normal'\)$"),
    "name-in-a-list": (["he"], ValueError, r"\['he'\]: a scheme is a name alone"),
    "unknown-name": ("xavier", ValueError, "'xavier'$"),
    "unknown-pair": (("uniform", 0.1), ValueError, r"\('uniform', 0.1\): a scheme"),
    "string-array": (np.array(["he", "x"]), TypeError, r"an array of dtype <U2 and shape \(2,\)$"),
    "bool-array": (np.ones(25, dtype=bool), TypeError, r"an array of dtype bool and shape \(25,\)$"),
    "set": ({"he"}, TypeError, r"\{'he'\}$"),
}


@pytest.mark.parametrize("init,error,message", BAD_INITS.values(), ids=BAD_INITS.keys())
def test_a_bad_init_names_init_and_lists_the_accepted_forms(init, error, message):
    from metafast.mlp import initial_theta

    with pytest.raises(error, match=LEARNER_FORMS + message):
        initial_theta(mf.MLP([1, 8, 1]), init, 0, np.dtype(np.float32))
    with pytest.raises(error, match=LEARNER_FORMS + message):
        mf.MetaSGD(mf.MLP([1, 8, 1]), init=init)
    if not isinstance(init, np.ndarray) or init.dtype.kind == "U":
        with pytest.raises(error, match=MODEL_FORMS + message):
            mf.MLP([1, 8, 1]).init(0, scheme=init)


def test_init_as_theta_or_a_normal_std():
    from metafast.mlp import initial_theta

    model = mf.MLP([1, 8, 1])
    theta, record = initial_theta(model, list(range(25)), 0, np.dtype(np.float32))  # integers are numbers too
    assert theta.dtype == np.float32 and record is None and theta[24] == 24
    theta, record = initial_theta(model, ("normal", 0.5), 3, np.dtype(np.float64))
    assert record == ("normal", 0.5)
    np.testing.assert_array_equal(theta, model.init(3, scheme=("normal", 0.5)))
    with pytest.raises(ValueError, match=r"^init as an array must be theta, of shape \(25,\), got \(\)$"):
        initial_theta(model, 3.0, 0, np.dtype(np.float64))
    with pytest.raises(ValueError, match=r"^init's normal std must be >= 0.0, got -1.0$"):
        initial_theta(model, ("normal", -1.0), 0, np.dtype(np.float64))
    with pytest.raises(TypeError, match=r"^scheme's normal std must be a number, got 'a'$"):
        model.init(0, scheme=("normal", "a"))
    with pytest.raises(ValueError, match="^init has values beyond the range of float32"):
        initial_theta(model, np.full(25, 1e39), 0, np.dtype(np.float32))


def test_float32_tanh_saturates_at_infinities():
    """Pre-activations that overflow reach the vector tanh as +-inf, where it is exactly +-1
    (the clamp is a min and a max); near 0 tanh x = x, beyond 9.01 it is exactly +-1."""
    theta = np.array([10.0, -10.0], dtype=np.float32)
    x = np.array([[3e38, 0.0], [0.0, 3e38], [1e-6, 0.0], [-0.95, 0.0], [0.0, -0.95]], dtype=np.float32)
    model = mf.MLP([2, 1], activation="identity", output="tanh", bias=False)
    out = model.forward(theta, x)[:, 0]
    assert out[0] == 1.0 and out[1] == -1.0
    assert out[2] == np.float32(1e-5) and out[3] == -1.0 and out[4] == 1.0
