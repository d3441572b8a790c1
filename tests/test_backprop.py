"""Losses and gradients: against central finite differences in float64 and against the
NumPy reference, for every activation and loss and several architectures."""

from __future__ import annotations

import numpy as np
import pytest

import metafast as mf
from metafast import reference

from conftest import HIDDEN, OUTPUT_LOSSES, finite_difference_grad, make_problem, relative_error


def width_for(loss: str) -> int:
    return 3 if loss == "softmax_ce" else 2


@pytest.mark.parametrize("output,loss", OUTPUT_LOSSES, ids=lambda v: str(v))
@pytest.mark.parametrize("activation", HIDDEN)
def test_gradient_matches_finite_differences(activation, output, loss):
    p = make_problem([3, 5, 4, width_for(loss)], activation, output, loss)
    _, grad = p.model.loss_and_grad(p.theta, p.x, p.y, p.loss)
    assert relative_error(grad, finite_difference_grad(p)) < 1e-6


@pytest.mark.parametrize(
    "sizes,activation,output,loss,bias",
    [
        ([50, 1], "identity", "identity", "bce", False),  # the logistic model of the book
        ([1, 40, 40, 1], "relu", "identity", "mse", True),  # the sine-wave network
        ([1, 64, 1], "tanh", "identity", "mse", True),
        ([4, 3], "identity", "identity", "softmax_ce", True),
        ([2, 8, 8, 8, 5], "tanh", "identity", "softmax_ce", False),
        ([3, 19, 13, 2], "sigmoid", "identity", "mse", True),  # transposes of whole blocks and edges
        ([2, 53, 21, 3], "tanh", "identity", "mse", True),  # column panels of 2 and of 3 vectors, the last masked
    ],
    ids=["logistic-50", "relu-1-40-40-1", "tanh-1-64-1", "softmax-linear", "deep-no-bias", "ragged-3-19-13-2",
         "ragged-2-53-21-3"],
)
def test_gradient_matches_finite_differences_per_architecture(sizes, activation, output, loss, bias):
    p = make_problem(sizes, activation, output, loss, bias=bias, rows=10)
    _, grad = p.model.loss_and_grad(p.theta, p.x, p.y, p.loss)
    assert relative_error(grad, finite_difference_grad(p)) < 1e-6


@pytest.mark.parametrize("output,loss", OUTPUT_LOSSES, ids=lambda v: str(v))
@pytest.mark.parametrize("activation", HIDDEN)
def test_loss_and_gradient_match_reference(activation, output, loss):
    p = make_problem([3, 6, 5, width_for(loss)], activation, output, loss, rows=9, seed=3)
    value, grad = p.model.loss_and_grad(p.theta, p.x, p.y, p.loss)
    ref_value, ref_grad = reference.mlp_loss_and_grad(p.model, p.theta, p.x, p.y, p.loss)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-14)
    assert p.model.loss(p.theta, p.x, p.y, p.loss) == value


@pytest.mark.parametrize("output", ["identity", "tanh", "sigmoid", "relu"])
@pytest.mark.parametrize("activation", HIDDEN)
def test_forward_matches_reference(activation, output):
    p = make_problem([3, 6, 2], activation, output)
    np.testing.assert_allclose(
        p.model.forward(p.theta, p.x), reference.mlp_forward(p.model, p.theta, p.x), rtol=1e-13, atol=1e-15
    )


@pytest.mark.parametrize("rows", [10, 7], ids=["five-row-blocks", "four-and-three-row-blocks"])
def test_products_of_every_column_tail_match_the_reference(rows):
    """Layers 1 to 50 wide cover every way the vector kernels end a row (1 to 3 vectors with
    the last one masked, at most half full and then run at half width, or more than half full;
    the panels of two vectors before them) in float32 (16 lanes) and float64 (8 lanes)."""
    for width in range(1, 51):
        p = make_problem([5, width], "tanh", "identity", rows=rows, seed=width)
        expected = reference.mlp_forward(p.model, p.theta, p.x)
        np.testing.assert_allclose(p.model.forward(p.theta, p.x), expected, rtol=1e-13, atol=1e-14)
        single = p.model.forward(p.theta.astype(np.float32), p.x.astype(np.float32))
        np.testing.assert_allclose(single, expected, rtol=1e-5, atol=1e-5)


def test_losses_by_hand():
    model = mf.MLP([1, 2], activation="identity", output="identity", bias=False)
    theta = np.array([1.0, -2.0])  # z = [x, -2x]
    x = np.array([[1.0], [0.5]])
    z = x @ theta.reshape(1, 2)
    y = np.array([[0.0, 1.0], [1.0, 0.0]])
    assert model.loss(theta, x, y, "mse") == pytest.approx(np.mean((z - y) ** 2), rel=1e-15)
    bce = np.mean(np.sum(np.log(1 + np.exp(-z)) + (1 - y) * z, axis=1))
    assert model.loss(theta, x, y, "bce") == pytest.approx(bce, rel=1e-14)
    labels = np.array([1, 0])
    ce = np.mean(np.log(np.exp(z).sum(axis=1)) - z[[0, 1], labels])
    assert model.loss(theta, x, labels, "softmax_ce") == pytest.approx(ce, rel=1e-14)


@pytest.mark.parametrize("scale", [1e-30, 1e-3, 1.0, 8.0, 40.0, 120.0, 1e4, 1e30])
def test_float32_cross_entropy_is_the_float64_formula_rounded_once(scale):
    # float32 logits take the vectorised log(1 + exp(-|z|)) (a vector of lanes and a partial
    # one at every row count here): the mean loss is the float64 formula to float precision,
    # from logits that round to 1 to those that overflow exp.
    model = mf.MLP([1, 1], activation="identity", output="identity", bias=False)
    rng = np.random.default_rng(int(np.log10(scale) + 40))
    for rows in [1, 3, 8, 9, 16, 17, 31]:
        z = (rng.standard_normal(rows) * scale).astype(np.float32)
        y = rng.random(rows).astype(np.float32) if rows % 2 else rng.integers(0, 2, rows).astype(np.float32)
        zd, yd = z.astype(np.float64), y.astype(np.float64)
        exact = np.mean(np.maximum(zd, 0) - zd * yd + np.log1p(np.exp(-np.abs(zd))))
        got = model.loss(np.ones(1, np.float32), z[:, None], y[:, None], "bce")
        assert got.dtype == np.float32
        assert got == pytest.approx(exact, rel=2 ** -23, abs=1e-37), rows


def test_logit_losses_stay_finite_for_huge_logits():
    model = mf.MLP([1, 2], activation="identity", output="identity", bias=False)
    theta = np.array([1.0, -1.0])
    x = np.array([[800.0], [-800.0]])
    value, grad = model.loss_and_grad(theta, x, np.array([[0.0, 0.0], [1.0, 1.0]]), "bce")
    # Row 1: z = (800, -800), y = 0 -> 800 + 0; row 2: z = (-800, 800), y = 1 -> 800 + 0.
    assert value == pytest.approx(800.0)
    assert np.all(np.isfinite(grad))
    value, grad = model.loss_and_grad(theta, x, np.array([1, 1]), "softmax_ce")
    assert value == pytest.approx(800.0)  # row 1 costs 1600 (label 1 has logit -800), row 2 costs 0
    assert np.all(np.isfinite(grad))


def test_sigmoid_output_bce_equals_logit_bce():
    logits = make_problem([5, 4, 1], "tanh", "identity", "bce")
    probs = mf.MLP([5, 4, 1], activation="tanh", output="sigmoid")
    a = logits.model.loss_and_grad(logits.theta, logits.x, logits.y, "bce")
    b = probs.loss_and_grad(logits.theta, logits.x, logits.y, "bce")
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_allclose(
        probs.forward(logits.theta, logits.x),
        1 / (1 + np.exp(-logits.model.forward(logits.theta, logits.x))),
        rtol=1e-14,
    )


@pytest.mark.parametrize("hidden", [[19, 13], [53, 70]], ids=["19-13", "53-70"])  # whole, masked, scalar edges
@pytest.mark.parametrize("output,loss", OUTPUT_LOSSES, ids=lambda v: str(v))
def test_float32_agrees_with_float64(output, loss, hidden):
    p = make_problem([3, *hidden, width_for(loss)], "tanh", output, loss, rows=20)
    theta32 = p.theta.astype(np.float32)
    y32 = p.y if loss == "softmax_ce" else p.y.astype(np.float32)
    value32, grad32 = p.model.loss_and_grad(theta32, p.x.astype(np.float32), y32, loss)
    value64, grad64 = p.model.loss_and_grad(p.theta, p.x, p.y, loss)
    assert value32.dtype == np.float32 and grad32.dtype == np.float32
    assert value64.dtype == np.float64 and grad64.dtype == np.float64
    assert value32 == pytest.approx(value64, rel=1e-5)
    assert relative_error(grad32.astype(np.float64), grad64) < 1e-5


def test_repeated_calls_are_bit_identical():
    p = make_problem([1, 40, 40, 1], "relu", rows=50)
    first = p.model.loss_and_grad(p.theta, p.x, p.y)
    second = p.model.loss_and_grad(p.theta, p.x, p.y)
    assert first[0] == second[0]
    np.testing.assert_array_equal(first[1], second[1])
