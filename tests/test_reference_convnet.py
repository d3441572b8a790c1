"""The NumPy ConvNet reference (metafast.reference.convnet, docs/math.md section 5): gradients
and Hessian-vector products against central finite differences, the θ layout, SAME/VALID
padding, the convolution against a direct loop, batch norm's batch statistics, max-pool's tie
rule, and the argument errors."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from conftest import Problem, finite_difference_grad, finite_difference_hvp, relative_error, targets

from metafast.reference import ConvNet, conv_output_size
from convnet_cases import CASES


def make_case(config: dict, rows: int = 5, seed: int = 0) -> Problem:
    config = dict(config)
    loss = config.pop("loss")
    net = ConvNet(channels=(3, 2), outputs=3, **config)
    rng = np.random.default_rng(seed)
    # Non-zero biases, shifts and scales away from 1, so that every path is exercised.
    theta = net.init(seed=seed) + 0.1 * rng.normal(size=net.num_params)
    x = rng.normal(size=(rows, *net.input_shape))
    return Problem(net, theta, x, targets(loss, rows, 3, rng), loss)  # type: ignore[arg-type]


@pytest.mark.parametrize("config", CASES.values(), ids=CASES.keys())
def test_gradient_matches_finite_differences(config):
    p = make_case(config)
    value, grad = p.model.loss_and_grad(p.theta, p.x, p.y, p.loss)
    assert value == pytest.approx(p.model.loss(p.theta, p.x, p.y, p.loss), rel=1e-14)
    assert relative_error(grad, finite_difference_grad(p)) < 1e-6


@pytest.mark.parametrize("config", CASES.values(), ids=CASES.keys())
def test_hvp_matches_finite_differences_of_the_gradient(config):
    p = make_case(config)
    v = np.random.default_rng(7).normal(size=p.theta.size)
    assert relative_error(p.model.hvp(p.theta, p.x, p.y, v, p.loss), finite_difference_hvp(p, v)) < 1e-6


@pytest.mark.parametrize("config", [CASES["s2-same-relu-bn-average-mse"],
                                    CASES["s1-same-max-tanh-bnscale-flatten-softmax"]],
                         ids=["relu-bn", "tanh-bnscale-max"])
def test_hvp_is_symmetric(config):
    p = make_case(config)
    rng = np.random.default_rng(3)
    u, v = rng.normal(size=(2, p.theta.size))
    uhv = u @ p.model.hvp(p.theta, p.x, p.y, v, p.loss)
    vhu = v @ p.model.hvp(p.theta, p.x, p.y, u, p.loss)
    assert uhv == pytest.approx(vhu, rel=1e-10)


# --- layout -------------------------------------------------------------------------------


def test_layout_shapes_count_and_round_trip():
    net = ConvNet((2, 5, 5), channels=(3, 4), outputs=2, batch_norm_scale=True, head="flatten")
    # 5x5 --(k3, s2, same)--> 3x3 --> 2x2, so the head has 4·2·2 = 16 features.
    assert net.block_shapes == ((3, 3, 3), (4, 2, 2)) and net.features == 16
    expected = [
        {"weight": (3, 2, 3, 3), "bias": (3,), "shift": (3,), "scale": (3,)},
        {"weight": (4, 3, 3, 3), "bias": (4,), "shift": (4,), "scale": (4,)},
        {"weight": (16, 2), "bias": (2,)},
    ]
    assert net.num_params == (54 + 3 + 3 + 3) + (108 + 4 + 4 + 4) + (32 + 2) == 217
    theta = np.arange(217.0)
    layers = net.unflatten(theta)
    assert [{name: array.shape for name, array in layer.items()} for layer in layers] == expected
    assert [list(layer) for layer in layers] == [list(layer) for layer in expected]  # θ order within a layer
    np.testing.assert_array_equal(layers[0]["weight"], theta[:54].reshape(3, 2, 3, 3))
    np.testing.assert_array_equal(layers[0]["scale"], theta[60:63])
    np.testing.assert_array_equal(layers[1]["weight"][0, 0, 0], theta[63:66])
    np.testing.assert_array_equal(layers[2]["weight"], theta[183:215].reshape(16, 2))
    np.testing.assert_array_equal(net.flatten(layers), theta)


@pytest.mark.parametrize("bias, batch_norm, batch_norm_scale, count",
                         [(True, True, False, 9 + 1 + 1 + (1 * 1 + 1)),
                          (False, True, True, 9 + 1 + 1 + 1 * 1),
                          (True, False, False, 9 + 1 + (1 * 1 + 1)),
                          (False, False, False, 9 + 1)],
                         ids=["bias-bn", "nobias-bnscale", "bias-nobn", "nobias-nobn"])
def test_parameter_count_by_hand(bias, batch_norm, batch_norm_scale, count):
    net = ConvNet((1, 4, 4), channels=(1,), outputs=1, bias=bias, batch_norm=batch_norm,
                  batch_norm_scale=batch_norm_scale)
    assert net.num_params == count


def test_init_schemes_and_reproducibility():
    net = ConvNet((2, 5, 5), channels=(3, 4), outputs=2, batch_norm_scale=True)
    theta = net.init(seed=3)
    np.testing.assert_array_equal(theta, net.init(seed=3))
    np.testing.assert_array_equal(net.init(seed=3, dtype="float32"), theta.astype(np.float32))
    layers = net.unflatten(theta)
    # He for the ReLU convolutions (fan_in = in_channels·k²), Glorot for the output layer.
    assert np.abs(layers[0]["weight"]).max() <= math.sqrt(6 / 18) and np.abs(layers[0]["weight"]).max() > 0.4
    assert np.abs(layers[1]["weight"]).max() <= math.sqrt(6 / 27)
    assert np.abs(layers[2]["weight"]).max() <= math.sqrt(6 / (4 + 2))
    for layer in layers[:2]:
        np.testing.assert_array_equal(layer["bias"], 0)
        np.testing.assert_array_equal(layer["shift"], 0)
        np.testing.assert_array_equal(layer["scale"], 1)
    tanh = ConvNet((2, 5, 5), channels=(3,), outputs=2, activation="tanh").unflatten(
        ConvNet((2, 5, 5), channels=(3,), outputs=2, activation="tanh").init(seed=3))
    assert np.abs(tanh[0]["weight"]).max() <= math.sqrt(6 / (18 + 27))


# --- geometry -----------------------------------------------------------------------------


@pytest.mark.parametrize("size, k, stride, padding, expected", [
    (7, 3, 2, "same", (4, 1, 1)),
    (6, 3, 2, "same", (3, 0, 1)),
    (5, 3, 1, "same", (5, 1, 1)),
    (7, 4, 1, "same", (7, 1, 2)),
    (8, 5, 3, "same", (3, 1, 2)),
    (9, 1, 2, "same", (5, 0, 0)),
    (4, 2, 2, "same", (2, 0, 0)),
    (7, 3, 2, "valid", (3, 0, 0)),
    (6, 3, 2, "valid", (2, 0, 0)),
    (2, 3, 1, "valid", (0, 0, 0)),
], ids=lambda value: str(value))
def test_padding_sizes_follow_the_rule(size, k, stride, padding, expected):
    assert conv_output_size(size, k, stride, padding) == expected
    if padding == "same":  # the rule itself: ceil(size / stride), the smaller half before
        out = math.ceil(size / stride)
        total = max((out - 1) * stride + k - size, 0)
        assert expected == (out, total // 2, total - total // 2)


def direct_convolution(x, weight, bias, stride, padding):
    """A loop over every output pixel, padding by TensorFlow's SAME rule written out again."""
    n, c, h, w = x.shape
    out_c, _, k, _ = weight.shape
    if padding == "same":
        out_h, out_w = math.ceil(h / stride), math.ceil(w / stride)
        th, tw = max((out_h - 1) * stride + k - h, 0), max((out_w - 1) * stride + k - w, 0)
        x = np.pad(x, ((0, 0), (0, 0), (th // 2, th - th // 2), (tw // 2, tw - tw // 2)))
    else:
        out_h, out_w = (h - k) // stride + 1, (w - k) // stride + 1
    z = np.empty((n, out_c, out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            patch = x[:, :, i * stride : i * stride + k, j * stride : j * stride + k]
            z[:, :, i, j] = np.einsum("nchw,ochw->no", patch, weight) + bias
    return z


@pytest.mark.parametrize("input_shape, k, stride, padding", [
    ((1, 7, 7), 3, 2, "same"), ((2, 6, 5), 3, 2, "same"), ((2, 6, 5), 3, 1, "valid"),
    ((1, 7, 6), 4, 3, "same"), ((2, 5, 7), 2, 2, "valid"),
], ids=["7x7-k3-s2-same", "6x5-k3-s2-same", "6x5-k3-s1-valid", "7x6-k4-s3-same", "5x7-k2-s2-valid"])
def test_convolution_matches_a_direct_loop(input_shape, k, stride, padding):
    net = ConvNet(input_shape, channels=(3,), outputs=2, kernel_size=k, stride=stride, padding=padding,
                  batch_norm=False, activation="identity", head="flatten")
    rng = np.random.default_rng(0)
    theta = rng.normal(size=net.num_params)
    x = rng.normal(size=(4, *input_shape))
    conv, dense = net.unflatten(theta)
    features = direct_convolution(x, conv["weight"], conv["bias"], stride, padding).reshape(4, -1)
    np.testing.assert_allclose(net.forward(theta, x), features @ dense["weight"] + dense["bias"], rtol=1e-12)
    # Flat rows are the same memory in C order.
    np.testing.assert_array_equal(net.forward(theta, x.reshape(4, -1)), net.forward(theta, x))


# --- batch norm and max-pool semantics ---------------------------------------------------


def test_batch_norm_uses_the_batch_statistics():
    net = ConvNet((2, 3, 3), channels=(2,), outputs=2, kernel_size=1, stride=1, batch_norm_scale=True,
                  activation="identity", head="flatten", batch_norm_eps=1e-3)
    rng = np.random.default_rng(1)
    theta = rng.normal(size=net.num_params)
    x = rng.normal(size=(5, 2, 3, 3))
    conv, dense = net.unflatten(theta)
    z = np.einsum("oc,nchw->nohw", conv["weight"][:, :, 0, 0], x) + conv["bias"][:, None, None]
    mean, var = z.mean(axis=(0, 2, 3), keepdims=True), z.var(axis=(0, 2, 3), keepdims=True)
    y = (z - mean) / np.sqrt(var + 1e-3) * conv["scale"][:, None, None] + conv["shift"][:, None, None]
    np.testing.assert_allclose(net.forward(theta, x), y.reshape(5, -1) @ dense["weight"] + dense["bias"],
                               rtol=1e-12)


def test_batch_norm_rows_permute_and_duplicate():
    p = make_case(CASES["s1-same-max-tanh-bnscale-flatten-softmax"])
    out = p.model.forward(p.theta, p.x)
    perm = np.array([3, 0, 4, 1, 2])
    np.testing.assert_allclose(p.model.forward(p.theta, p.x[perm]), out[perm], rtol=1e-12)
    np.testing.assert_allclose(p.model.forward(p.theta, np.concatenate([p.x, p.x])), np.tile(out, (2, 1)),
                               rtol=1e-10)
    # A row's output depends on the others through the statistics.
    assert not np.allclose(p.model.forward(p.theta, p.x[:2])[0], out[0])


@pytest.mark.parametrize("first, selected", [([[1, 1], [1, 1]], 10.0), ([[0, 1], [1, 0]], 20.0),
                                             ([[0, 0], [1, 1]], 30.0)],
                         ids=["all-tie", "tie-0-1-and-1-0", "tie-1-0-and-1-1"])
def test_max_pool_tie_gives_the_gradient_to_the_first_maximum(first, selected):
    """Channel 0 makes the pre-activations tie (weight 1), channel 1 (weight 0) records which
    pixel the gradient reaches: ∂L/∂w_1 = 2 · out · x_1 at the selected pixel."""
    net = ConvNet((2, 2, 2), channels=(1,), outputs=1, kernel_size=1, stride=1, pool="max", batch_norm=False,
                  activation="identity", bias=False)
    theta = np.array([1.0, 0.0, 1.0])  # conv weights (1, 2, 1, 1), then the dense (1, 1)
    x = np.array([[first, [[10.0, 20.0], [30.0, 40.0]]]])
    value, grad = net.loss_and_grad(theta, x, np.zeros((1, 1)))
    assert value == 1.0
    assert grad[1] == 2 * selected


# --- errors -------------------------------------------------------------------------------

CONSTRUCTION_ERRORS = {
    "input-shape-length": (dict(input_shape=(1, 7)), ValueError,
                           "input_shape must be three positive sizes (C, H, W), got (1, 7)"),
    "input-shape-type": (dict(input_shape="1x7x7"), TypeError,
                         "input_shape must be a tuple of three ints (C, H, W), got '1x7x7'"),
    "channels-empty": (dict(channels=()), ValueError, "channels must name at least one block, got ()"),
    "channels-zero": (dict(channels=(2, 0)), ValueError, "channels[1] must be >= 1, got 0"),
    "stride-zero": (dict(stride=0), ValueError, "stride must be >= 1, got 0"),
    "kernel-float": (dict(kernel_size=3.0), TypeError, "kernel_size must be an int, got 3.0"),
    "padding": (dict(padding="full"), ValueError, "padding must be one of ('same', 'valid'), got 'full'"),
    "pool": (dict(pool="avg"), ValueError, "pool must be one of (None, 'max'), got 'avg'"),
    "activation": (dict(activation="gelu"), ValueError,
                   "activation must be one of ('relu', 'tanh', 'sigmoid', 'identity'), got 'gelu'"),
    "head": (dict(head="max"), ValueError, "head must be one of ('average', 'flatten'), got 'max'"),
    "bias-type": (dict(bias=1), TypeError, "bias must be True or False, got 1"),
    "eps": (dict(batch_norm_eps=0.0), ValueError, "batch_norm_eps must be finite and > 0, got 0.0"),
    "scale-without-bn": (dict(batch_norm=False, batch_norm_scale=True), ValueError,
                         "batch_norm_scale=True needs batch_norm=True"),
    "collapse-conv": (dict(input_shape=(1, 3, 3), padding="valid"), ValueError,
                      "input_shape (1, 3, 3) is too small: block 2's convolution (kernel_size=3, stride=2, "
                      "padding='valid') maps 1x1 to 0x0"),
    "collapse-pool": (dict(input_shape=(1, 3, 3), stride=1, pool="max"), ValueError,
                      "input_shape (1, 3, 3) is too small: block 2's 2x2 max-pool maps 1x1 to 0x0"),
}


@pytest.mark.parametrize("changes, error, message", CONSTRUCTION_ERRORS.values(), ids=CONSTRUCTION_ERRORS.keys())
def test_construction_errors(changes, error, message):
    arguments = dict(input_shape=(1, 7, 7), channels=(2, 2), outputs=3) | changes
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        ConvNet(**arguments)


NET = ConvNet((1, 7, 7), channels=(2, 2), outputs=3)
GOOD_X, GOOD_Y = np.zeros((3, 1, 7, 7)), np.zeros((3, 3))
CALL_ERRORS = {
    "x-wrong-image": (dict(x=np.zeros((3, 2, 7, 7))), ValueError,
                      "x must have shape (rows, 1, 7, 7) for input_shape (C, H, W) = (1, 7, 7), got (3, 2, 7, 7)"),
    "x-flat-wrong-width": (dict(x=np.zeros((3, 48))), ValueError,
                           "x as flat rows must have shape (rows, 49): input_shape (C, H, W) = (1, 7, 7) in C order, "
                           "got (3, 48)"),
    "x-3d": (dict(x=np.zeros((1, 7, 7))), ValueError, "x must have shape (rows, 1, 7, 7) or (rows, 49), got (1, 7, 7)"),
    "x-no-rows": (dict(x=np.zeros((0, 49)), y=np.zeros((0, 3))), ValueError,
                  "x must have at least one row (batch norm needs the batch's statistics)"),
    "theta-length": (dict(theta=np.zeros(5)), ValueError, f"theta must have shape ({NET.num_params},), got (5,)"),
    "y-shape": (dict(y=np.zeros((3, 2))), ValueError, "y for mse must have shape (3, 3), got (3, 2)"),
    "y-labels-range": (dict(y=np.array([0, 1, 3]), loss="softmax_ce"), ValueError,
                       "y for softmax_ce must hold labels in [0, 3), got 0 to 3"),
    "y-labels-float": (dict(y=np.zeros(3), loss="softmax_ce"), ValueError,
                       "y for softmax_ce must be integer labels of shape (3,), got float64 of shape (3,)"),
    "loss": (dict(loss="hinge"), ValueError, "loss must be one of ('mse', 'bce', 'softmax_ce'), got 'hinge'"),
}


@pytest.mark.parametrize("changes, error, message", CALL_ERRORS.values(), ids=CALL_ERRORS.keys())
def test_call_errors(changes, error, message):
    arguments = dict(theta=NET.init(), x=GOOD_X, y=GOOD_Y, loss="mse") | changes
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        NET.loss_and_grad(**arguments)


def test_hvp_checks_the_direction_and_flatten_checks_its_layers():
    theta = NET.init()
    with pytest.raises(ValueError, match=re.escape(f"v must have shape ({NET.num_params},), got (4,)")):
        NET.hvp(theta, GOOD_X, GOOD_Y, np.zeros(4))
    layers = NET.unflatten(theta)
    del layers[0]["shift"]
    with pytest.raises(ValueError, match=re.escape("layers[0] must have the entries ['weight', 'bias', 'shift'], "
                                                   "got ['bias', 'weight']")):
        NET.flatten(layers)
