"""The raw compiled module's contract: it checks every array it is given (exact dtype,
C order, shape) itself, so even direct use cannot crash the process."""

from __future__ import annotations

import numpy as np
import pytest

import metafast as mf
from metafast import _core

RAW = _core.MLP([2, 3, 1], "tanh", "identity", True)
THETA = np.linspace(-1, 1, RAW.num_params)
X = np.arange(8.0).reshape(4, 2) / 8
Y = np.zeros((4, 1))


def test_module_metadata():
    assert _core.__version__ == mf.__version__
    assert isinstance(_core.openmp, bool)
    assert _core.max_threads() >= 1


def test_raw_mlp_properties():
    assert RAW.sizes == [2, 3, 1]
    assert RAW.num_params == 13
    assert (RAW.activation, RAW.output, RAW.bias) == ("tanh", "identity", True)
    assert [RAW.weight_offset(0), RAW.bias_offset(0), RAW.weight_offset(1), RAW.bias_offset(1)] == [0, 6, 9, 12]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_raw_calls_follow_theta_dtype(dtype):
    theta, x, y = (a.astype(dtype) for a in (THETA, X, Y))
    assert RAW.forward(theta, x).dtype == dtype
    value, grad = RAW.loss_and_grad(theta, x, y, "mse")
    assert isinstance(value, float) and grad.dtype == dtype
    assert RAW.hvp(theta, x, y, grad, "mse").dtype == dtype


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: RAW.forward(THETA, np.asfortranarray(X)), "x must be C-contiguous"),
        (lambda: RAW.forward(THETA, X.astype(np.float32)), "x must be a float64 array, got float32"),
        (lambda: RAW.forward(THETA.astype(np.int64), X), "theta must be a float32 or float64 array, got int64"),
        (lambda: RAW.loss(THETA, X, np.zeros((4,), dtype=np.int32), "softmax_ce"), "needs output activation|width"),
        (lambda: _core.MLP([2, 3], "relu", "identity", True).loss(np.zeros(9), X, np.zeros(4, dtype=np.int32), "softmax_ce"), "y must be a int64 array"),
    ],
    ids=["fortran-x", "mixed-dtypes", "int-theta", "softmax-needs-logits", "int32-labels"],
)
def test_raw_module_refuses_what_it_cannot_read(call, message):
    with pytest.raises((TypeError, ValueError), match=message):
        call()


def test_raw_module_reports_shapes():
    with pytest.raises(ValueError, match=r"theta must have shape \(13,\), got \(12,\)"):
        RAW.forward(THETA[:-1].copy(), X)
