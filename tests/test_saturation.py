"""Numerical edge cases: float32 tanh and sigmoid saturate exactly where the true value rounds
to +-1 (sigmoid: to 1), so a saturated unit's gradient and Hessian-vector product are exactly 0;
overflowing meta-gradients and adaptations are errors, not silent infinities."""

from __future__ import annotations

import numpy as np
import pytest

import metafast as mf


@pytest.mark.parametrize("output", ["tanh", "sigmoid"])
@pytest.mark.parametrize("z", [20.0, 50.0, 100.0, -20.0, -50.0, -100.0])
def test_a_saturated_float32_unit_has_exact_values_and_zero_derivatives(output, z):
    model = mf.MLP([1, 1], activation="identity", output=output)
    theta = np.array([1.0, 0.0], dtype=np.float32)
    x, y = np.array([[z]], dtype=np.float32), np.array([[0.3]], dtype=np.float32)
    exact = np.tanh(np.float64(z)) if output == "tanh" else 1.0 / (1.0 + np.exp(-np.float64(z)))
    value = model.forward(theta, x)[0, 0]
    if output == "tanh" or z > 0:
        assert value == np.float32(exact)  # +-1 (1): the float32 rounding of the true value
    else:
        assert abs(value - exact) < 1e-8  # sigmoid towards 0: within its absolute accuracy
    _, grad = model.loss_and_grad(theta, x, y)
    np.testing.assert_array_equal(grad, 0.0)
    np.testing.assert_array_equal(model.hvp(theta, x, y, np.ones(2, dtype=np.float32)), 0.0)


def test_tanh_below_saturation_keeps_its_accuracy():
    z = np.linspace(-9.0, 9.0, 4001, dtype=np.float32).reshape(-1, 1)
    model = mf.MLP([1, 1], activation="identity", output="tanh")
    value = model.forward(np.array([1.0, 0.0], dtype=np.float32), z)
    assert np.max(np.abs(value - np.tanh(z.astype(np.float64)))) < 4e-7


def test_an_overflowing_meta_gradient_is_an_error():
    learner = mf.MetaSGD(mf.MLP([1, 8, 1]))
    batch = mf.tasks.Sinusoid().sample(2, seed=0, dtype="float32")
    huge = mf.TaskBatch(batch.x_support * np.float32(1e30), batch.y_support, batch.x_query, batch.y_query)
    with pytest.raises(mf.TrainingDivergedError):
        learner.meta_gradient(huge)


def test_an_overflowing_rl_adaptation_is_an_error():
    learner = mf.rl.MetaSGDRL(mf.MLP([2, 8, 2]), inner_trajectories=2)
    with pytest.raises(ValueError, match="adaptation diverged"):
        learner.adapt((1e300, 1e300), steps=1)


def test_edge_arguments_give_clear_errors():
    with pytest.raises(ValueError, match="phase"):
        mf.tasks.Sinusoid(phase=(0, 10**400))
    with pytest.raises(TypeError, match="steps must be a sequence"):
        mf.MetaSGD(mf.MLP([1, 8, 1])).evaluate(mf.tasks.Sinusoid(), num_tasks=2, steps=5)
    with pytest.raises(TypeError, match=r"^positions must hold numbers \(floats or integers\), got dtype bool$"):
        mf.rl.Navigation2D().step(np.zeros((1, 2), bool), np.zeros((1, 2)), np.zeros((1, 2)))


def test_flatten_refuses_a_missing_bias_instead_of_a_nan():
    model = mf.MLP([2, 1])
    weights, _ = model.unflatten(model.init())[0]
    with pytest.raises(ValueError, match=r"layers\[0\]\[1\] is None"):
        model.flatten([(weights, None)])
