"""Reinforcement-learning foundations: the 2D navigation dynamics and the Gaussian policy's
surrogate, gradient and exact Hessian-vector product (finite differences, symmetry, the
NumPy reference)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import metafast as mf
from line_world import LineWorld
from metafast import reference

from conftest import relative_error


def policy_problem(activation="tanh", rows=30, seed=0):
    policy = mf.rl.GaussianPolicy(mf.MLP([2, 12, 12, 2], activation=activation))
    rng = np.random.default_rng(seed)
    theta = policy.init(seed=seed, log_std=-0.5) + 0.05 * rng.normal(size=policy.num_params)
    states = rng.uniform(-0.5, 0.5, size=(rows, 2))
    actions = rng.normal(scale=0.3, size=(rows, 2))
    advantages = rng.normal(size=rows)
    return policy, theta, states, actions, advantages


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_surrogate_gradient_matches_finite_differences(activation):
    policy, theta, states, actions, advantages = policy_problem(activation)
    _, grad = policy.surrogate(theta, states, actions, advantages, num_trajectories=3)
    eps, fd = 1e-6, np.empty_like(theta)
    for i in range(theta.size):
        step = np.zeros_like(theta)
        step[i] = eps
        fd[i] = (policy.surrogate(theta + step, states, actions, advantages, 3)[0]
                 - policy.surrogate(theta - step, states, actions, advantages, 3)[0]) / (2 * eps)
    assert relative_error(grad, fd) < 1e-6


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_surrogate_hvp_matches_finite_differences_and_is_symmetric(activation, rng):
    policy, theta, states, actions, advantages = policy_problem(activation, seed=1)
    u, v = rng.normal(size=(2, policy.num_params))
    hv = policy.surrogate_hvp(theta, states, actions, advantages, 3, v)
    eps = 1e-6
    fd = (policy.surrogate(theta + eps * v, states, actions, advantages, 3)[1]
          - policy.surrogate(theta - eps * v, states, actions, advantages, 3)[1]) / (2 * eps)
    assert relative_error(hv, fd) < 1e-6
    hu = policy.surrogate_hvp(theta, states, actions, advantages, 3, u)
    assert u @ hv == pytest.approx(v @ hu, rel=1e-12)


def test_surrogate_matches_the_numpy_reference(rng):
    policy, theta, states, actions, advantages = policy_problem("tanh", seed=2)
    weights = advantages / 4
    loss, grad = policy.surrogate(theta, states, actions, advantages, 4)
    ref_loss, ref_grad = reference.rl.surrogate_loss_and_grad(policy.model, theta, states, actions, weights)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-13)
    v = rng.normal(size=policy.num_params)
    np.testing.assert_allclose(policy.surrogate_hvp(theta, states, actions, advantages, 4, v),
                               reference.rl.surrogate_hvp(policy.model, theta, states, actions, weights, v),
                               rtol=1e-10, atol=1e-13)
    log_prob = reference.rl.log_prob(policy.model, theta, states, actions)
    assert loss == pytest.approx(-np.sum(weights * log_prob), rel=1e-12)


def test_log_std_gradient_by_hand():
    """A zero network: mu = 0, so L = sum_t w_t sum_d (a^2 e^{-2s} / 2 + s + log(2 pi)/2)."""
    policy = mf.rl.GaussianPolicy(mf.MLP([2, 2], activation="identity"))
    theta = np.zeros(policy.num_params)
    theta[-2:] = [0.3, -0.2]
    actions = np.array([[0.5, -1.0], [1.5, 0.25]])
    weights = np.array([0.7, -0.4])
    _, grad = policy.surrogate(theta, np.zeros((2, 2)), actions, weights, 1)
    expected = -np.sum(weights[:, None] * (actions**2 * np.exp(-2 * theta[-2:]) - 1), axis=0)
    np.testing.assert_allclose(grad[-2:], expected, rtol=1e-14)


@pytest.mark.parametrize("scaled", [True, False], ids=["scaled-actions", "velocity-actions"])
def test_navigation_dynamics(scaled):
    env = mf.rl.Navigation2D(scaled_actions=scaled)
    positions = np.array([[0.0, 0.0], [0.2, 0.2], [0.0, 0.0]])
    actions = np.array([[0.5, -0.03], [0.005, -0.002], [-1.0, 1.0]])
    if scaled:  # the policy acts in [-1, 1]: velocities max_action times that, clipped to ±0.1
        actions = 10 * actions
    goals = np.array([[0.1, 0.1], [0.21, 0.2], [0.3, 0.3]])
    moved, rewards, done = env.step(positions, actions, goals)
    np.testing.assert_allclose(moved, [[0.1, -0.03], [0.205, 0.198], [-0.1, 0.1]])  # clipped to ±0.1
    np.testing.assert_allclose(rewards, -np.linalg.norm(moved - goals, axis=1), rtol=1e-15)
    np.testing.assert_array_equal(done, [False, True, False])
    squared = mf.rl.Navigation2D(reward="squared", scaled_actions=scaled)
    np.testing.assert_allclose(squared.step(positions, actions, goals)[1], -np.sum((moved - goals) ** 2, axis=1))
    ref = reference.rl.navigation_step(positions, actions, goals, scaled_actions=scaled)
    np.testing.assert_allclose(ref[0], moved)
    np.testing.assert_array_equal(ref[2], done)


def test_navigation_goals_are_keyed_and_in_range():
    env = mf.rl.Navigation2D(goal_range=(-0.5, 0.5))
    goals = env.sample_goals(500, seed=3, iteration=2)
    assert goals.shape == (500, 2) and goals.min() >= -0.5 and goals.max() < 0.5
    np.testing.assert_array_equal(goals[:10], env.sample_goals(10, seed=3, iteration=2))
    assert not np.array_equal(goals[:10], env.sample_goals(10, seed=3, iteration=3))


BAD_CALLS = {
    "output-activation": (lambda: mf.rl.GaussianPolicy(mf.MLP([2, 2], output="tanh")), ValueError, "output activation 'identity'"),
    "theta-without-log-std": (lambda: mf.rl.GaussianPolicy(mf.MLP([2, 2])).surrogate(np.zeros(6), np.zeros((3, 2)), np.zeros((3, 2)), np.zeros(3), 1), ValueError, r"theta must have shape \(8,\)"),
    "actions-shape": (lambda: mf.rl.GaussianPolicy(mf.MLP([2, 2])).surrogate(np.zeros(8), np.zeros((3, 2)), np.zeros((3, 1)), np.zeros(3), 1), ValueError, r"actions must have shape \(3, 2\)"),
    "advantages-nan": (lambda: mf.rl.GaussianPolicy(mf.MLP([2, 2])).surrogate(np.zeros(8), np.zeros((3, 2)), np.zeros((3, 2)), np.full(3, np.nan), 1), ValueError, "advantages contains NaN"),
    "trajectories-zero": (lambda: mf.rl.GaussianPolicy(mf.MLP([2, 2])).surrogate(np.zeros(8), np.zeros((3, 2)), np.zeros((3, 2)), np.zeros(3), 0), ValueError, "num_trajectories must be at least 1"),
    "reward-name": (lambda: mf.rl.Navigation2D(reward="manhattan"), ValueError, "reward must be 'distance' or 'squared'"),
    "max-action": (lambda: mf.rl.Navigation2D(max_action=0.0), ValueError, "max_action must be a finite number > 0, got 0"),
    "step-shapes": (lambda: mf.rl.Navigation2D().step(np.zeros((2, 2)), np.zeros((3, 2)), np.zeros((2, 2))), ValueError, r"actions must have shape \(2, 2\)"),
    "scaled-actions-type": (lambda: mf.rl.Navigation2D(scaled_actions="yes"), TypeError, "scaled_actions must be"),
    "step-bool-actions": (lambda: mf.rl.Navigation2D().step(np.zeros((2, 2)), np.ones((2, 2), bool), np.zeros((2, 2))), TypeError, r"^actions must hold numbers \(floats or integers\), got dtype bool$"),
    "states-bool": (lambda: mf.rl.GaussianPolicy(mf.MLP([2, 2])).surrogate(np.zeros(8), np.zeros((3, 2), bool), np.zeros((3, 2)), np.zeros(3), 1), TypeError, r"^states must hold numbers \(floats or integers\), got dtype bool$"),
    "advantages-beyond-float32": (lambda: mf.rl.GaussianPolicy(mf.MLP([2, 2])).surrogate(np.zeros(8, np.float32), np.zeros((3, 2)), np.zeros((3, 2)), np.full(3, 1e39), 1), ValueError, "^advantages has values beyond the range of float32"),
    "v-object": (lambda: mf.rl.GaussianPolicy(mf.MLP([2, 2])).surrogate_hvp(np.zeros(8), np.zeros((3, 2)), np.zeros((3, 2)), np.zeros(3), 1, np.zeros(8, object)), TypeError, r"^v must hold numbers \(floats or integers\), got dtype object$"),
    "theta-int": (lambda: mf.rl.GaussianPolicy(mf.MLP([2, 2])).surrogate(np.zeros(8, int), np.zeros((3, 2)), np.zeros((3, 2)), np.zeros(3), 1), TypeError, "^theta must be a float32 or float64 array, got dtype int64$"),
    "inner-steps-zero": (lambda: mf.rl.MetaSGDRL(mf.MLP([2, 2]), inner_steps=0), ValueError, "inner_steps"),
    "gae-lambda-above-1": (lambda: mf.rl.MetaSGDRL(mf.MLP([2, 2]), gae_lambda=1.5), ValueError, "gae_lambda"),
    "alpha-lr-negative": (lambda: mf.rl.MetaSGDRL(mf.MLP([2, 2]), alpha_lr=-1e-3), ValueError, "alpha_lr must be a finite number >= 0"),
    "init-shape": (lambda: mf.rl.MetaSGDRL(mf.MLP([2, 2]), init=np.zeros(3)), ValueError, r"init as an array must be theta, of shape \(6,\)"),
    "byo-gae-lambda": (lambda: mf.rl.MetaSGDRL(mf.MLP([1, 1]), env=mf.rl.GymTasks(lambda rng: None, horizon=5), gae_lambda=-0.1), ValueError, "gae_lambda must lie in"),
}


@pytest.mark.parametrize("call,error,message", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_input_raises_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


MIXED = {
    "float32-samples-float64-theta": (np.float64, np.float32),
    "float64-samples-float32-theta": (np.float32, np.float64),
    "int64-samples-float64-theta": (np.float64, np.int64),
    "int32-samples-float32-theta": (np.float32, np.int32),
}


@pytest.mark.parametrize("theta_dtype,sample_dtype", MIXED.values(), ids=MIXED.keys())
def test_surrogate_converts_samples_to_thetas_dtype(theta_dtype, sample_dtype, rng):
    """States, actions, advantages and v of another dtype are converted to theta's, which stays
    the result's: the same bits as converting them first (small integers, exact in every dtype)."""
    policy, theta, states, actions, advantages = policy_problem(rows=8)
    theta = theta.astype(theta_dtype)
    given = [np.round(a * 4) for a in (states, actions, advantages, rng.normal(size=theta.size))]
    exact = [a.astype(theta_dtype) for a in given]
    mixed = [a.astype(sample_dtype) for a in given]
    loss, grad = policy.surrogate(theta, *mixed[:3], 3)
    expected_loss, expected_grad = policy.surrogate(theta, *exact[:3], 3)
    assert loss.dtype == theta_dtype and grad.dtype == theta_dtype
    assert loss == expected_loss
    np.testing.assert_array_equal(grad, expected_grad)
    hv = policy.surrogate_hvp(theta, *mixed[:3], 3, mixed[3])
    assert hv.dtype == theta_dtype
    np.testing.assert_array_equal(hv, policy.surrogate_hvp(theta, *exact[:3], 3, exact[3]))


@pytest.mark.parametrize("dtype", [np.float32, np.int64], ids=["float32", "int64"])
def test_navigation_step_converts_to_float64(dtype):
    env = mf.rl.Navigation2D()
    positions, actions, goals = np.array([[0.0, 1.0], [-1.0, 2.0]]), np.array([[1.0, -1.0], [0.0, 3.0]]), np.ones((2, 2))
    expected = env.step(positions, actions, goals)
    actual = env.step(positions.astype(dtype), actions.astype(dtype), goals.astype(dtype))
    for a, e in zip(actual, expected):
        assert a.dtype == e.dtype
        np.testing.assert_array_equal(a, e)


def rl_learner(**kwargs):
    settings = {"meta_lr": 1e-2, "alpha_init": 0.1, "seed": 0, **kwargs}
    return mf.rl.MetaSGDRL(mf.MLP([2, 16, 16, 2]), **settings)


@pytest.mark.parametrize("inner_steps,gae_lambda", [(1, 1.0), (3, 1.0), (1, 0.6)])
@pytest.mark.parametrize("first_order", [False, True], ids=["exact", "first-order"])
def test_rollout_and_meta_gradient_match_the_numpy_reference(first_order, inner_steps, gae_lambda):
    learner = rl_learner(dtype="float64", inner_trajectories=5, alpha_init=0.01)
    learner.theta = learner.theta + 0.05 * np.random.default_rng(0).normal(size=learner.theta.size)
    env = learner.env
    score, g_theta, g_alpha, steps, valid = learner._impl.task_meta_gradient(env._impl, 5, 0.99, first_order, True,
                                                                              7, 3, 2, inner_steps, gae_lambda)
    assert len(steps) == inner_steps
    train = steps[0]
    # The training rollout, rebuilt in NumPy from the same counter-based stream.
    rng = reference.CounterRng(7, 3, 2)
    goal = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5)])
    states, actions, weights, _ = reference.rl.rollout(learner.policy.model, learner.theta, goal, rng, trajectories=5,
                                                       gae_lambda=gae_lambda)
    np.testing.assert_allclose(train[0], states, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(train[1], actions, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(train[2], weights, rtol=1e-8, atol=1e-12)
    # The meta-gradient on the core's own samples.
    ref_theta, ref_alpha = reference.rl.meta_gradient(learner.policy.model, learner.theta, learner.alpha,
                                                      [step[:3] for step in steps], valid[:3], first_order)
    assert relative_error(g_theta, ref_theta) < 1e-9
    assert relative_error(g_alpha, ref_alpha) < 1e-9
    assert score == valid[3] < 0


@pytest.mark.parametrize("inner_steps", [1, 3])
def test_rl_meta_gradient_is_exact_through_the_inner_steps(inner_steps):
    """Central finite differences of the outer surrogate after the inner steps, on the core's
    fixed samples, with respect to every entry of theta and alpha."""
    learner = rl_learner(dtype="float64", inner_trajectories=4, alpha_init=0.02)
    learner.theta = learner.theta + 0.05 * np.random.default_rng(1).normal(size=learner.theta.size)
    theta, alpha, policy = learner.theta, learner.alpha, learner.policy
    _, g_theta, g_alpha, steps, valid = learner._impl.task_meta_gradient(learner.env._impl, 4, 0.99, False, True,
                                                                          5, 0, 1, inner_steps)

    def objective(theta, alpha):
        for states, actions, weights in (step[:3] for step in steps):
            theta = theta - alpha * policy.surrogate(theta, states, actions, weights, 1)[1]
        return policy.surrogate(theta, *valid[:3], 1)[0]

    eps = 1e-7  # the objective's large third derivatives along alpha want a small step
    for name, gradient, shift in (("theta", g_theta, lambda d: (theta + d, alpha)),
                                  ("alpha", g_alpha, lambda d: (theta, alpha + d))):
        fd = np.empty_like(gradient)
        for i in range(gradient.size):
            step = np.zeros_like(gradient)
            step[i] = eps
            fd[i] = (objective(*shift(step)) - objective(*shift(-step))) / (2 * eps)
        assert relative_error(gradient, fd) < 1e-6, name


@pytest.mark.parametrize("inner_steps", [1, 2])
def test_rl_fit_is_bit_identical_for_any_thread_count(inner_steps):
    results = []
    for threads in (1, 2, 3, 1):
        learner = rl_learner(num_threads=threads, inner_steps=inner_steps, alpha_init=0.01)
        history = learner.fit(iterations=3, meta_batch=4, progress=False)
        results.append((learner.theta, learner.alpha, history))
    for theta, alpha, history in results[1:]:
        np.testing.assert_array_equal(theta, results[0][0])
        np.testing.assert_array_equal(alpha, results[0][1])
        np.testing.assert_array_equal(history, results[0][2])
    assert np.all(np.isfinite(results[0][2]))


def test_rl_save_load_and_resume(tmp_path):
    straight = rl_learner()
    straight.fit(iterations=4, meta_batch=3, progress=False)
    first = rl_learner()
    first.fit(iterations=2, meta_batch=3, progress=False)
    first.save(tmp_path / "rl.npz")
    loaded = mf.load(tmp_path / "rl.npz")
    assert isinstance(loaded, mf.rl.MetaSGDRL) and loaded.iteration == 2
    loaded.fit(iterations=2, meta_batch=3, progress=False)
    np.testing.assert_array_equal(loaded.theta, straight.theta)
    np.testing.assert_array_equal(loaded.history, straight.history)


def test_rl_settings_survive_save_and_files_before_them_load_as_they_were(tmp_path):
    learner = mf.rl.MetaSGDRL(mf.MLP([2, 8, 2]), env=mf.rl.Navigation2D(scaled_actions=False), alpha_lr=3e-4,
                              init=("normal", 0.01), inner_steps=2, seed=2)
    learner.save(tmp_path / "rl.npz")
    loaded = mf.load(tmp_path / "rl.npz")
    assert loaded.env.scaled_actions is False and loaded._settings["alpha_lr"] == 3e-4
    assert loaded._settings["init"] == ("normal", 0.01) and loaded._settings["inner_steps"] == 2
    assert mf.rl.MetaSGDRL(mf.MLP([2, 8, 2]))._settings["alpha_lr"] == pytest.approx(1.5e-6)  # meta_lr * alpha_init
    # A file written before scaled actions and alpha_lr existed: velocity actions, alpha at meta_lr.
    with np.load(tmp_path / "rl.npz") as archive:
        arrays = dict(archive)
    config = json.loads(str(arrays["config"]))
    del config["env"]["scaled_actions"], config["alpha_lr"], config["init"], config["inner_steps"], config["gae_lambda"]
    arrays["config"] = np.array(json.dumps(config))
    np.savez(tmp_path / "old.npz", **arrays)
    old = mf.load(tmp_path / "old.npz")
    assert old.env.scaled_actions is False and old._settings["alpha_lr"] == old._settings["meta_lr"]
    assert old._settings["inner_steps"] == 1 and old._settings["gae_lambda"] == 1.0  # the advantages it trained with
    np.testing.assert_array_equal(old.theta, learner.theta)


def test_gae_lambda_default_follows_the_inner_steps(tmp_path):
    """GAE (0.65) for one inner step, the papers' advantages (1) for more; an asked value
    always, and the resolved value is what a saved file keeps."""
    assert mf.rl.MetaSGDRL(mf.MLP([2, 8, 2]))._settings["gae_lambda"] == 0.65
    assert mf.rl.MetaSGDRL(mf.MLP([2, 8, 2]), inner_steps=2)._settings["gae_lambda"] == 1.0
    asked = mf.rl.MetaSGDRL(mf.MLP([2, 8, 2]), inner_steps=3, gae_lambda=0.5)
    asked.save(tmp_path / "rl.npz")
    assert mf.load(tmp_path / "rl.npz")._settings["gae_lambda"] == 0.5
    with pytest.raises(TypeError, match="gae_lambda"):
        mf.rl.MetaSGDRL(mf.MLP([2, 8, 2]), gae_lambda="0.5")


def test_rl_adapt_and_divergence():
    learner = rl_learner()
    adapted = learner.adapt([0.3, -0.2], steps=1)
    assert adapted.shape == learner.theta.shape and not np.array_equal(adapted, learner.theta)
    np.testing.assert_array_equal(learner.adapt([0.3, -0.2], steps=0), learner.theta)
    learner.alpha = np.full(learner.alpha.size, 1e30, dtype=np.float32)
    theta = learner.theta
    with pytest.raises(mf.TrainingDivergedError, match="meta-iteration 0"):
        learner.fit(iterations=2, meta_batch=2, progress=False)
    np.testing.assert_array_equal(learner.theta, theta)


def test_bring_your_own_environment():
    tasks = mf.rl.GymTasks(lambda rng: LineWorld(rng.uniform(-0.5, 0.5)), horizon=20)
    make = lambda: mf.rl.MetaSGDRL(mf.MLP([1, 8, 1]), env=tasks, inner_trajectories=4, meta_lr=1e-2, seed=3,  # noqa: E731
                                   dtype="float64")
    learner = make()
    before = learner.evaluate(num_tasks=6, steps=(0, 1), trajectories=4, seed=9)
    history = learner.fit(iterations=3, meta_batch=3, progress=False)
    assert history.shape == (3,) and learner.iteration == 3 and np.all(history < 0)
    again = make()
    again.fit(iterations=3, meta_batch=3, progress=False)
    np.testing.assert_array_equal(again.theta, learner.theta)  # same seed, same result
    after = learner.evaluate(num_tasks=6, steps=(0, 1), trajectories=4, seed=9)
    assert before.loss.shape == after.loss.shape == (2,)
    adapted = learner.adapt(LineWorld(0.3), steps=1)
    assert adapted.shape == learner.theta.shape
    with pytest.raises(TypeError, match="cannot be saved"):
        learner.save("unused.npz")


def test_python_path_gae_is_the_reference_recursion():
    rewards, values = np.array([-1.0, -0.5, -0.25, -2.0, -1.0]), np.array([-1.5, -0.7, -0.2, -2.5, -0.8])
    gamma, lam = 0.9, 0.5
    advantages = mf.rl.generalized_advantages(rewards, values, [3, 2], gamma, lam)
    for start, length in ((0, 3), (3, 2)):
        r, b = rewards[start:start + length], np.append(values[start:start + length], 0.0)
        deltas = r + gamma * b[1:] - b[:-1]
        expected = [sum((gamma * lam) ** l * deltas[t + l] for l in range(length - t)) for t in range(length)]
        np.testing.assert_allclose(advantages[start:start + length], expected, rtol=1e-14)
    returns = np.array([sum(gamma**l * r for l, r in enumerate(rewards[t:3])) for t in range(3)])
    np.testing.assert_allclose(mf.rl.generalized_advantages(rewards[:3], values[:3], [3], gamma, 1.0),
                               returns - values[:3], rtol=1e-13)  # lambda 1: returns minus the baseline


@pytest.mark.parametrize("inner_steps", [1, 2])
def test_byo_meta_gradient_uses_the_same_maths(inner_steps):
    """One task through the Python path equals the meta-gradient formula on its own samples."""
    tasks = mf.rl.GymTasks(lambda rng: LineWorld(0.25), horizon=10)
    learner = mf.rl.MetaSGDRL(mf.MLP([1, 6, 1]), env=tasks, inner_trajectories=3, meta_optimizer="sgd", meta_lr=0.5,
                              alpha_lr=0.25, alpha_init=0.1, inner_steps=inner_steps, seed=1, dtype="float64")
    theta, alpha = learner.theta, learner.alpha
    backend = learner._impl
    rng = np.random.default_rng([1, 0, 0])
    env = tasks.sample_task(rng)
    model = learner.policy.model
    adapted, steps = theta, []
    for _ in range(inner_steps):
        train, _ = backend.rollout(adapted, env, rng)  # (states, actions, weights A / N)
        adapted = adapted - alpha * reference.rl.surrogate_loss_and_grad(model, adapted, *train)[1]
        steps.append(train)
    valid, _ = backend.rollout(adapted, env, rng)
    g_theta, g_alpha = reference.rl.meta_gradient(model, theta, alpha, steps, valid)
    learner.fit(iterations=1, meta_batch=1, progress=False)
    np.testing.assert_allclose(learner.theta, theta - 0.5 * g_theta, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(learner.alpha, alpha - 0.25 * g_alpha, rtol=1e-10, atol=1e-12)  # at alpha_lr


def test_defaults_learn_2d_navigation():
    """With its defaults the learner improves the return after adaptation, and a second step
    does not undo the first."""
    learner = mf.rl.MetaSGDRL(mf.MLP([2, 32, 32, 2], activation="relu"), inner_trajectories=10, seed=0)
    before = learner.evaluate(num_tasks=40, steps=(1,), trajectories=10, seed=77).loss[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a healthy fit does not cry collapse
        history = learner.fit(iterations=200, meta_batch=10, progress=False)
    after = learner.evaluate(num_tasks=40, steps=(0, 1, 2), trajectories=10, seed=77)
    assert history[-20:].mean() > history[:20].mean() + 10
    assert after.loss[1] > before + 10 and after.loss[1] > after.loss[0] + 10
    assert after.loss[2] > after.loss[1] - 5  # no collapse after a second step


def test_fit_judges_its_whole_history_for_a_collapse(monkeypatch):
    """fit hands every return it recorded to the collapse rule (tested on fixed histories
    below): whether a given run collapses is chaotic in the last bits of the arithmetic, so
    the rule and its wiring are tested apart."""
    judged = []
    monkeypatch.setattr(mf.rl.learner, "warn_if_returns_fell", judged.append)
    learner = mf.rl.MetaSGDRL(mf.MLP([2, 8, 2]), inner_trajectories=4, seed=0)
    first = learner.fit(iterations=3, meta_batch=2, progress=False)
    second = learner.fit(iterations=2, meta_batch=2, progress=False)
    assert len(judged) == 2
    np.testing.assert_array_equal(judged[0], first)
    np.testing.assert_array_equal(judged[1], second)


def test_the_collapse_warning_needs_a_clear_fall():
    rng = np.random.default_rng(0)
    noisy = -20 + rng.normal(size=200)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        mf.rl.warn_if_returns_fell(noisy)  # flat: noise only
        mf.rl.warn_if_returns_fell(noisy + np.linspace(0, 10, 200))  # rising
        mf.rl.warn_if_returns_fell(np.linspace(0, -100, 49))  # too short to judge
    with pytest.warns(RuntimeWarning, match=r"from -20\.\d+ .* to -24\.\d+"):
        mf.rl.warn_if_returns_fell(noisy - np.linspace(0, 5, 200))


def test_rl_alpha_init_beyond_float32_is_named():
    with pytest.raises(ValueError, match=r"^alpha_init must be at most 3.403e\+38 in float32, got 1e\+308$"):
        mf.rl.MetaSGDRL(mf.MLP([2, 4, 2]), alpha_init=1e308)


def test_rl_num_threads_is_checked_on_python_environments_too():
    with pytest.raises(ValueError, match="num_threads"):
        mf.rl.MetaSGDRL(mf.MLP([2, 4, 2]), env=mf.rl.GymTasks(lambda rng: None), num_threads=-5)


@pytest.mark.parametrize("trajectories", [0, -1, 2**17])
def test_evaluate_trajectories_out_of_range_are_named_by_the_core(trajectories):
    learner = mf.rl.MetaSGDRL(mf.MLP([2, 4, 2]), num_threads=1)
    with pytest.raises(ValueError, match=rf"^trajectories must lie in \[1, 65536\], got {trajectories}$"):
        learner.evaluate(num_tasks=2, trajectories=trajectories)


@pytest.mark.parametrize("backend", ["core", "python"])
def test_the_adaptation_schedule_scales_alpha_per_step_and_sets_the_trajectories(backend):
    """MAML's evaluation protocol: alpha_scales (1, 0.5) halves the step after the first, and
    inner_trajectories sets each step's trajectories. Checked against learners whose alpha is
    halved (exact in binary) or whose inner_trajectories is the asked number."""
    if backend == "core":
        make = lambda trajectories=6: rl_learner(inner_trajectories=trajectories, num_threads=2)  # noqa: E731
        task = [0.3, -0.2]
    else:
        tasks = mf.rl.GymTasks(lambda rng: LineWorld(rng.uniform(-0.5, 0.5)), horizon=20)
        make = lambda trajectories=6: mf.rl.MetaSGDRL(mf.MLP([1, 8, 1]), env=tasks, alpha_init=0.1,  # noqa: E731
                                                      inner_trajectories=trajectories, seed=3, dtype="float64")
        task = LineWorld(0.3)
    learner, halved, wider = make(), make(), make(trajectories=9)
    halved.alpha = halved.alpha * 0.5
    as_trained = learner.evaluate(num_tasks=3, steps=(0, 1, 3), trajectories=5, seed=9)
    np.testing.assert_array_equal(learner.evaluate(num_tasks=3, steps=(0, 1, 3), trajectories=5, seed=9,
                                                   alpha_scales=[1.0], inner_trajectories=6).loss, as_trained.loss)
    np.testing.assert_array_equal(learner.evaluate(num_tasks=3, steps=(0, 1, 3), trajectories=5, seed=9,
                                                   alpha_scales=(0.5,)).loss,
                                  halved.evaluate(num_tasks=3, steps=(0, 1, 3), trajectories=5, seed=9).loss)
    np.testing.assert_array_equal(learner.evaluate(num_tasks=3, steps=(0, 2), trajectories=5, seed=9,
                                                   inner_trajectories=9).loss,
                                  wider.evaluate(num_tasks=3, steps=(0, 2), trajectories=5, seed=9).loss)
    np.testing.assert_array_equal(learner.adapt(task, steps=3, seed=4, alpha_scales=(0.5,)),
                                  halved.adapt(task, steps=3, seed=4))
    np.testing.assert_array_equal(learner.adapt(task, steps=2, seed=4, inner_trajectories=9),
                                  wider.adapt(task, steps=2, seed=4))
    # (1, 0.5): the first step as trained, the later ones halved, so it differs from both.
    schedule = learner.adapt(task, steps=2, seed=4, alpha_scales=(1, 0.5))
    np.testing.assert_array_equal(learner.adapt(task, steps=1, seed=4, alpha_scales=(1, 0.5)),
                                  learner.adapt(task, steps=1, seed=4))
    assert not np.array_equal(schedule, learner.adapt(task, steps=2, seed=4))
    assert not np.array_equal(schedule, halved.adapt(task, steps=2, seed=4))
    # alpha_scales (0,): no step moves theta.
    np.testing.assert_array_equal(learner.adapt(task, steps=2, seed=4, alpha_scales=(0,)), learner.theta)


@pytest.mark.parametrize("options,error,message", [
    (dict(alpha_scales=()), ValueError, "alpha_scales must hold 1 to 10,000 factors, got 0"),
    (dict(alpha_scales=(1, -0.5)), ValueError, r"alpha_scales\[1\] must be >= 0.0, got -0.5"),
    (dict(alpha_scales=(1, float("nan"))), ValueError, r"alpha_scales\[1\] must be finite"),
    (dict(alpha_scales=0.5), TypeError, "alpha_scales must be a sequence of factors on alpha"),
    (dict(alpha_scales=("1",)), TypeError, r"alpha_scales\[0\] must be a number"),
    (dict(inner_trajectories=0), ValueError, "inner_trajectories must be at least 1, got 0"),
    (dict(inner_trajectories=2**17), ValueError, "inner_trajectories must be at most 65536, got 131072"),
    (dict(inner_trajectories=2.0), TypeError, "inner_trajectories must be an integer"),
    (dict(alpha_scales=[1.0] * 10_001), ValueError, "alpha_scales must hold 1 to 10,000 factors, got 10001"),
])
def test_a_bad_adaptation_schedule_is_named(options, error, message):
    learner = mf.rl.MetaSGDRL(mf.MLP([2, 4, 2]), num_threads=1)
    with pytest.raises(error, match=message):
        learner.evaluate(num_tasks=2, **options)
    with pytest.raises(error, match=message):
        learner.adapt([0.1, 0.1], **options)
