"""Hessian-vector products: against finite differences of the gradient, symmetry, the
NumPy reference, and the closed-form Hessian of logistic regression."""

from __future__ import annotations

import numpy as np
import pytest

import metafast as mf
from metafast import reference

from conftest import HIDDEN, OUTPUT_LOSSES, finite_difference_hvp, make_problem, relative_error


def width_for(loss: str) -> int:
    return 3 if loss == "softmax_ce" else 2


@pytest.mark.parametrize("output,loss", OUTPUT_LOSSES, ids=lambda v: str(v))
@pytest.mark.parametrize("activation", HIDDEN)
def test_hvp_matches_finite_differences(activation, output, loss, rng):
    p = make_problem([3, 5, 4, width_for(loss)], activation, output, loss)
    v = rng.normal(size=p.model.num_params)
    hv = p.model.hvp(p.theta, p.x, p.y, v, p.loss)
    assert relative_error(hv, finite_difference_hvp(p, v)) < 1e-6


@pytest.mark.parametrize(
    "sizes,activation,loss,bias",
    [
        ([1, 40, 40, 1], "relu", "mse", True),
        ([1, 64, 1], "tanh", "mse", True),
        ([2, 8, 8, 8, 5], "sigmoid", "softmax_ce", False),
        ([3, 19, 13, 2], "tanh", "mse", True),  # transposes of whole blocks and edges
    ],
    ids=["relu-1-40-40-1", "tanh-1-64-1", "deep-no-bias", "ragged-3-19-13-2"],
)
def test_hvp_matches_finite_differences_per_architecture(sizes, activation, loss, bias, rng):
    p = make_problem(sizes, activation, "identity", loss, bias=bias, rows=10)
    for _ in range(3):
        v = rng.normal(size=p.model.num_params)
        hv = p.model.hvp(p.theta, p.x, p.y, v, p.loss)
        assert relative_error(hv, finite_difference_hvp(p, v)) < 1e-6


@pytest.mark.parametrize("output,loss", OUTPUT_LOSSES, ids=lambda v: str(v))
@pytest.mark.parametrize("activation", HIDDEN)
def test_hvp_is_symmetric(activation, output, loss, rng):
    p = make_problem([3, 6, 5, width_for(loss)], activation, output, loss)
    u, v = rng.normal(size=(2, p.model.num_params))
    u_hv = u @ p.model.hvp(p.theta, p.x, p.y, v, p.loss)
    v_hu = v @ p.model.hvp(p.theta, p.x, p.y, u, p.loss)
    assert u_hv == pytest.approx(v_hu, rel=1e-12)


@pytest.mark.parametrize("output,loss", OUTPUT_LOSSES, ids=lambda v: str(v))
@pytest.mark.parametrize("activation", HIDDEN)
def test_hvp_matches_reference(activation, output, loss, rng):
    p = make_problem([3, 6, 5, width_for(loss)], activation, output, loss, rows=9, seed=5)
    v = rng.normal(size=p.model.num_params)
    np.testing.assert_allclose(
        p.model.hvp(p.theta, p.x, p.y, v, p.loss),
        reference.mlp_hvp(p.model, p.theta, p.x, p.y, v, p.loss),
        rtol=1e-10,
        atol=1e-13,
    )


@pytest.mark.parametrize("output", ["identity", "sigmoid"])
def test_logistic_regression_closed_form(output, rng):
    """p = sigmoid(X theta): grad = X^T (p - y) / k and H = X^T diag(p (1 - p)) X / k."""
    k, dim = 10, 50
    model = mf.MLP([dim, 1], activation="identity", output=output, bias=False)
    x = rng.uniform(size=(k, dim))
    y = rng.integers(0, 2, size=(k, 1)).astype(np.float64)
    theta = rng.normal(scale=0.3, size=dim)
    p = 1 / (1 + np.exp(-(x @ theta)))
    hessian = x.T @ np.diag(p * (1 - p)) @ x / k
    _, grad = model.loss_and_grad(theta, x, y, "bce")
    np.testing.assert_allclose(grad, x.T @ (p - y[:, 0]) / k, rtol=1e-12, atol=1e-15)
    for v in [rng.normal(size=dim), np.eye(dim)[7]]:
        np.testing.assert_allclose(model.hvp(theta, x, y, v, "bce"), hessian @ v, rtol=1e-12, atol=1e-15)


def test_hvp_is_linear_in_v(rng):
    p = make_problem([2, 7, 3], "tanh", "identity", "softmax_ce")
    u, v = rng.normal(size=(2, p.model.num_params))
    combined = p.model.hvp(p.theta, p.x, p.y, 2.0 * u - 3.0 * v, p.loss)
    separate = 2.0 * p.model.hvp(p.theta, p.x, p.y, u, p.loss) - 3.0 * p.model.hvp(p.theta, p.x, p.y, v, p.loss)
    np.testing.assert_allclose(combined, separate, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("output,loss", OUTPUT_LOSSES, ids=lambda v: str(v))
def test_hvp_float32_agrees_with_float64(output, loss, rng):
    p = make_problem([3, 19, 13, width_for(loss)], "tanh", output, loss, rows=20)
    v = rng.normal(size=p.model.num_params)
    y32 = p.y if loss == "softmax_ce" else p.y.astype(np.float32)
    hv32 = p.model.hvp(p.theta.astype(np.float32), p.x.astype(np.float32), y32, v.astype(np.float32), loss)
    hv64 = p.model.hvp(p.theta, p.x, p.y, v, loss)
    assert hv32.dtype == np.float32
    assert relative_error(hv32.astype(np.float64), hv64) < 1e-4
