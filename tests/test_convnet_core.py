"""The compiled ConvNet (_core.ConvNet, cpp/include/metafast/convnet.hpp) against the NumPy
reference (metafast.reference.ConvNet, docs/math.md section 5): forward pass, loss, gradient and
Hessian-vector product to float64 rounding over a combined parametrization, float32 close to
float64, input layouts giving the same bits, and the argument errors."""

from __future__ import annotations

import re

import numpy as np
import pytest

from metafast import _core
from metafast.reference import ConvNet
from convnet_cases import CASES as SHARED_CASES

CASES = {
    **SHARED_CASES,
    "s1-same-max-relu-bnscale-flatten-bce-k1": dict(input_shape=(3, 5, 4), stride=1, padding="same", pool="max",
                                                    kernel_size=1, activation="relu", batch_norm_scale=True,
                                                    head="flatten", loss="bce"),
    "s2-valid-tanh-nobn-average-mse-3blocks": dict(input_shape=(2, 17, 15), stride=2, padding="valid",
                                                   activation="tanh", batch_norm=False, channels=(4, 3, 2),
                                                   loss="mse"),
}


def split(config: dict) -> tuple[dict, str]:
    config = dict(config)
    loss = config.pop("loss")
    config.setdefault("channels", (3, 2))
    config.setdefault("outputs", 3)
    return config, loss


def problem(config: dict, rows: int = 5, seed: int = 0, dtype=np.float64):
    """(reference, core, theta, x, y, v, loss), theta with non-zero biases, shifts and scales
    away from 1 so that every path is exercised."""
    config, loss = split(config)
    ref, core = ConvNet(**config), _core.ConvNet(**config)
    rng = np.random.default_rng(seed)
    theta = ref.init(seed=seed) + 0.1 * rng.normal(size=ref.num_params)
    x = rng.normal(size=(rows, *ref.input_shape))
    outputs = config["outputs"]
    y = rng.integers(0, outputs, rows) if loss == "softmax_ce" else rng.uniform(size=(rows, outputs))
    v = rng.normal(size=ref.num_params)
    cast = (lambda a: a.astype(dtype)) if dtype != np.float64 else (lambda a: a)
    y = y if loss == "softmax_ce" else cast(y)
    return ref, core, cast(theta), cast(x), y, cast(v), loss


def assert_close(actual, expected, rtol):
    """Elementwise within rtol of each entry or of the largest one (a bias before batch norm has a
    gradient of 0 up to rounding)."""
    expected = np.asarray(expected)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * float(np.max(np.abs(expected))))


@pytest.mark.parametrize("config", CASES.values(), ids=CASES.keys())
def test_core_matches_reference(config):
    ref, core, theta, x, y, v, loss = problem(config)
    assert core.num_params == ref.num_params
    assert core.features == ref.features
    assert_close(core.forward(theta, x), ref.forward(theta, x), 1e-12)
    value = ref.loss(theta, x, y, loss)
    assert core.loss(theta, x, y, loss) == pytest.approx(value, rel=1e-12)
    core_value, core_grad = core.loss_and_grad(theta, x, y, loss)
    ref_value, ref_grad = ref.loss_and_grad(theta, x, y, loss)
    assert core_value == pytest.approx(ref_value, rel=1e-12)
    assert core_grad.dtype == np.float64 and core_grad.shape == (ref.num_params,)
    assert_close(core_grad, ref_grad, 1e-12)
    hv = core.hvp(theta, x, y, v, loss)
    assert hv.dtype == np.float64 and hv.shape == (ref.num_params,)
    assert_close(hv, ref.hvp(theta, x, y, v, loss), 1e-12)


@pytest.mark.parametrize("pool", [None, "max"])
def test_ties_follow_the_reference(pool):
    # Integer-valued images and ReLU's zeros: windows with tied maxima everywhere, so the
    # first-maximum rule of docs/math.md §5.5 decides the gradient.
    config = dict(input_shape=(1, 8, 8), stride=1, padding="same", pool=pool, activation="relu", batch_norm=False,
                  loss="mse")
    ref, core, theta, _, y, v, loss = problem(config)
    x = np.random.default_rng(3).integers(-1, 2, size=(4, 1, 8, 8)).astype(np.float64)
    y = y[:4]
    assert_close(core.loss_and_grad(theta, x, y, loss)[1], ref.loss_and_grad(theta, x, y, loss)[1], 1e-12)
    assert_close(core.hvp(theta, x, y, v, loss), ref.hvp(theta, x, y, v, loss), 1e-12)


@pytest.mark.parametrize("config", CASES.values(), ids=CASES.keys())
def test_float32_close_to_float64(config):
    _, core, theta, x, y, v, loss = problem(config)
    _, _, theta32, x32, y32, v32, _ = problem(config, dtype=np.float32)
    out32 = core.forward(theta32, x32)
    assert out32.dtype == np.float32
    assert_close(out32, core.forward(theta, x), 1e-4)
    value32, grad32 = core.loss_and_grad(theta32, x32, y32, loss)
    value, grad = core.loss_and_grad(theta, x, y, loss)
    assert grad32.dtype == np.float32
    assert value32 == pytest.approx(value, rel=1e-4)
    assert_close(grad32, grad, 1e-4)
    hv32 = core.hvp(theta32, x32, y32, v32, loss)
    assert hv32.dtype == np.float32
    assert_close(hv32, core.hvp(theta, x, y, v, loss), 1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_layouts_give_identical_bits(dtype):
    config = CASES["s1-same-max-tanh-bnscale-flatten-softmax"]
    _, core, theta, x, y, v, loss = problem(config, dtype=dtype)
    expected = core.forward(theta, x), core.loss_and_grad(theta, x, y, loss)[1], core.hvp(theta, x, y, v, loss)
    flat = x.reshape(x.shape[0], -1)
    for images in (np.asfortranarray(x), flat, np.asfortranarray(flat), x[:, :, :, ::-1].copy()[:, :, :, ::-1]):
        assert np.array_equal(core.forward(theta, images), expected[0])
        assert np.array_equal(core.loss_and_grad(theta, images, y, loss)[1], expected[1])
        assert np.array_equal(core.hvp(theta, images, y, v, loss), expected[2])
    strided = np.zeros(2 * theta.size, dtype=dtype)[::2]
    strided[:] = theta
    assert np.array_equal(core.forward(strided, x), expected[0])


def test_batch_statistics_couple_the_rows():
    # Batch norm with the batch's statistics: a row's output depends on the others.
    _, core, theta, x, *_ = problem(CASES["s2-same-relu-bn-average-mse"])
    assert not np.allclose(core.forward(theta, x)[:2], core.forward(theta, x[:2]))


NET = dict(input_shape=(1, 7, 7), channels=(3, 2), outputs=3)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda c, t: c.forward(t, np.zeros((4, 1, 7, 6))),
         "x must have shape (rows, 1, 7, 7) for input_shape (C, H, W) = (1, 7, 7), got (4, 1, 7, 6)"),
        (lambda c, t: c.forward(t, np.zeros((4, 48))),
         "x as flat rows must have shape (rows, 49): input_shape (C, H, W) = (1, 7, 7) in C order, got (4, 48)"),
        (lambda c, t: c.forward(t, np.zeros((4, 7, 7))),
         "x must have shape (rows, 1, 7, 7) or (rows, 49), got (4, 7, 7)"),
        (lambda c, t: c.forward(t, np.zeros((0, 49))),
         "x must have at least one row (batch norm needs the batch's statistics)"),
        (lambda c, t: c.forward(t[:-1], np.zeros((4, 49))), "theta must have shape ("),
        (lambda c, t: c.forward(t.reshape(1, -1), np.zeros((4, 49))), "theta must have shape ("),
        (lambda c, t: c.hvp(t, np.zeros((4, 49)), np.zeros((4, 3)), t[:-1]), "v must have shape ("),
        (lambda c, t: c.loss(t, np.zeros((4, 49)), np.zeros((4, 2))), "y must have shape (4, 3), got (4, 2)"),
        (lambda c, t: c.loss(t, np.zeros((4, 49)), np.zeros((5, 3))), "y must have shape (4, 3), got (5, 3)"),
        (lambda c, t: c.loss(t, np.zeros((4, 49)), np.array([0, 1, 2, 3]), "softmax_ce"),
         "y must hold class labels in [0, 3) for softmax_ce, got 3"),
        (lambda c, t: c.loss(t, np.zeros((4, 49)), np.full((4, 3), 2.0), "bce"),
         "y must hold probabilities in [0, 1] for bce"),
        (lambda c, t: c.loss(t, np.zeros((4, 49)), np.zeros((4, 3)), "hinge"), "loss must be one of"),
        (lambda c, t: c.forward(t, np.full((4, 49), np.nan)), "x contains NaN or infinity"),
    ],
    ids=["x-4d", "x-flat", "x-3d", "x-no-rows", "theta-short", "theta-2d", "v-short", "y-width", "y-rows",
         "label-range", "bce-range", "loss-name", "x-nan"],
)
def test_bad_arguments_raise_value_error(call, message):
    core = _core.ConvNet(**NET)
    theta = ConvNet(**NET).init()
    with pytest.raises(ValueError, match=re.escape(message)):
        call(core, theta)


def test_dtypes_must_match_theta():
    core = _core.ConvNet(**NET)
    theta = ConvNet(**NET).init()
    with pytest.raises(TypeError, match="x must be a float64 array"):
        core.forward(theta, np.zeros((4, 49), dtype=np.float32))
    with pytest.raises(TypeError, match="theta must be a float32 or float64 array"):
        core.forward(theta.astype(np.int64), np.zeros((4, 49)))


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(input_shape=(1, 3, 3), stride=2, padding="valid"),
         "input_shape (1, 3, 3) is too small: block 2's convolution (kernel_size=3, stride=2, padding='valid') "
         "maps 1x1 to 0x0"),
        (dict(input_shape=(1, 5, 5), stride=1, pool="max"),
         "input_shape (1, 5, 5) is too small: block 3's 2x2 max-pool maps 1x1 to 0x0"),
        (dict(batch_norm=False, batch_norm_scale=True), "batch_norm_scale=True needs batch_norm=True"),
        (dict(batch_norm_eps=0.0), "batch_norm_eps must be finite and > 0, got 0"),
        (dict(batch_norm_eps=float("nan")), "batch_norm_eps must be finite and > 0, got nan"),
        (dict(padding="full"), "padding must be one of ('same', 'valid'), got 'full'"),
        (dict(pool="avg"), "pool must be one of (None, 'max'), got 'avg'"),
        (dict(head="max"), "head must be one of ('average', 'flatten'), got 'max'"),
        (dict(activation="gelu"), "activation must be one of ('relu', 'tanh', 'sigmoid', 'identity'), got 'gelu'"),
        (dict(channels=()), "channels must name at least one block, got ()"),
        (dict(channels=(3, 0)), "channels[1] must lie in [1, 16777216], got 0"),
        (dict(outputs=0), "outputs must lie in [1, 16777216], got 0"),
        (dict(kernel_size=0), "kernel_size must lie in [1, 16777216], got 0"),
        (dict(stride=-1), "stride must lie in [1, 16777216], got -1"),
        (dict(input_shape=(1, 7)), "input_shape must be three positive sizes (C, H, W), got (1, 7)"),
        (dict(input_shape=(1, 0, 7)), "input_shape must be three positive sizes (C, H, W), got (1, 0, 7)"),
        (dict(input_shape=(1, 1 << 24, 1 << 24), channels=(1 << 20,)), "has more than"),
    ],
    ids=["conv-collapses", "pool-collapses", "scale-without-bn", "eps-zero", "eps-nan", "padding", "pool", "head",
         "activation", "no-blocks", "zero-channels", "zero-outputs", "zero-kernel", "negative-stride",
         "two-sizes", "zero-size", "too-large"],
)
def test_bad_configurations_raise_value_error(changes, message):
    config = {**NET, "channels": (3, 2, 2), **changes}
    with pytest.raises(ValueError, match=re.escape(message)):
        _core.ConvNet(**config)


def test_configuration_messages_match_the_reference():
    for changes in (dict(input_shape=(1, 3, 3), stride=2, padding="valid"), dict(input_shape=(1, 5, 5), pool="max",
                                                                                   stride=1)):
        config = {**NET, "channels": (3, 2, 2), **changes}
        with pytest.raises(ValueError) as expected:
            ConvNet(**config)
        with pytest.raises(ValueError, match=re.escape(str(expected.value))):
            _core.ConvNet(**config)
