"""The Gymnasium path of MetaSGDRL against the core: on the core's own trajectories its
advantages (baseline, ridge rule, GAE, standardisation) and its meta-gradient through the inner
steps equal the core's within float64 rounding; and every wrong output of a user's environment
is named, with what was expected."""

from __future__ import annotations

import numpy as np
import pytest

import metafast as mf
from metafast.rl import advantages, gym

from conftest import relative_error


def core_task(inner_steps=1, first_order=False, gae_lambda=0.65, normalize=True, horizon=100, trajectories=5):
    """A float64 learner and one task's meta-gradient by the core, with the samples it used."""
    env = mf.rl.Navigation2D(horizon=horizon, tolerance=0.0)  # no episode ends early
    learner = mf.rl.MetaSGDRL(mf.MLP([2, 16, 16, 2]), env=env, dtype="float64", inner_trajectories=trajectories,
                              alpha_init=0.01, seed=0)
    learner.theta = learner.theta + 0.05 * np.random.default_rng(0).normal(size=learner.theta.size)
    result = learner._impl.task_meta_gradient(env._impl, trajectories, 0.99, first_order, normalize, 7, 3, 2,
                                              inner_steps, gae_lambda)
    return learner, env, result


@pytest.mark.parametrize("first_order", [False, True], ids=["exact", "first-order"])
@pytest.mark.parametrize("inner_steps,tolerance", [(1, 1e-14), (3, 1e-11)], ids=["1-step", "3-steps"])
def test_meta_gradient_equals_the_cores_on_its_samples(inner_steps, tolerance, first_order):
    """The Python path's meta-gradient, fed the core's rollouts in order, against the core's.
    Measured: about 4e-16 after one step; about 2e-13 after three (float64 rounding of the
    inner updates, which the core may fuse into FMAs, grown through the steps)."""
    learner, _, (score, g_theta, g_alpha, steps, valid) = core_task(inner_steps, first_order)
    rollouts = [*steps, valid]

    def replay(theta):
        samples = rollouts.pop(0)
        return samples[:3], samples[3]

    got_theta, got_alpha, got_score = gym.task_meta_gradient(learner.policy, learner.theta, learner.alpha, replay,
                                                             inner_steps, first_order)
    assert not rollouts and got_score == score
    assert relative_error(got_theta, g_theta) < tolerance
    assert relative_error(got_alpha, g_alpha) < tolerance


@pytest.mark.parametrize("normalize", [True, False], ids=["standardised", "raw"])
@pytest.mark.parametrize("gae_lambda", [1.0, 0.65], ids=["returns", "gae"])
def test_advantages_equal_the_cores_on_its_trajectories(gae_lambda, normalize):
    """The core's first rollout, its rewards recomputed from its states and actions: the
    Python path's weights A_t / N equal the core's (measured: about 1e-14 relative)."""
    _, env, (_, _, _, steps, _) = core_task(gae_lambda=gae_lambda, normalize=normalize, horizon=8)
    states, actions, weights, mean_return = steps[0]
    goal = env.sample_goals(3, seed=7, iteration=3)[2]  # the task's goal: keyed (7, 3, 2)
    _, rewards, reached = env.step(states, actions, np.tile(goal, (len(states), 1)))
    assert len(states) == 5 * 8 and not reached.any()
    got = advantages.surrogate_weights(rewards, states, [8] * 5, 0.99, gae_lambda, normalize)
    assert relative_error(got, weights) < 1e-13
    assert rewards.sum() / 5 == pytest.approx(mean_return, rel=1e-14)


def test_ridge_raises_the_regulariser_tenfold_until_cholesky_succeeds():
    """The core's rule, not a fixed 1e-5: an indefinite matrix (eigenvalue -5e-4) is solved with
    1e-3 (the first of 1e-5, 1e-4, 1e-3 that factorises), a hopeless one gives no baseline."""
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    normal = basis @ np.diag([-5e-4, 1.0, 2.0, 3.0]) @ basis.T
    rhs = rng.normal(size=4)
    w = advantages.ridge_solve(normal, rhs)
    np.testing.assert_allclose((normal + 1e-3 * np.eye(4)) @ w, rhs, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(advantages.ridge_solve(-np.eye(4) * 1e4, rhs), np.zeros(4))
    np.testing.assert_array_equal(advantages.ridge_solve(np.full((4, 4), np.nan), rhs), np.zeros(4))
    well_posed = np.eye(4) * 2.0
    np.testing.assert_allclose(advantages.ridge_solve(well_posed, rhs), rhs / (2.0 + 1e-5), rtol=1e-14)


class Scripted:
    """An environment whose outputs the test sets: a good one unless told otherwise."""

    def __init__(self, reset=None, step=None, reward=-1.0, observation=None):
        self.reset_result, self.step_result = reset, step
        self.reward, self.observation = reward, observation

    def reset(self, seed=None):
        return self.reset_result if self.reset_result is not None else (np.zeros(2), {})

    def step(self, action):
        if self.step_result is not None:
            return self.step_result
        observation = np.zeros(2) if self.observation is None else self.observation
        return observation, self.reward, False, False, {}


BAD_ENVIRONMENTS = {
    "reward-None": (Scripted(reward=None), TypeError,
                    r"the environment's step returned a reward of type NoneType \(None\); expected a real number"),
    "reward-string": (Scripted(reward="1.0"), TypeError, "reward of type str"),
    "reward-array": (Scripted(reward=np.array([1.0])), TypeError, "reward of type ndarray"),
    "reward-nan": (Scripted(reward=float("nan")), ValueError,
                   "the environment's step returned a reward of nan; expected a finite number"),
    "observation-shape": (Scripted(observation=np.zeros(3)), ValueError,
                          r"the environment's step returned an observation of shape \(3,\); expected shape \(2,\)"),
    "observation-nan": (Scripted(observation=np.array([0.0, np.nan])), ValueError,
                        "the environment's step returned an observation with NaN or infinity"),
    "observation-strings": (Scripted(observation=["a", "b"]), TypeError,
                            r"step returned an observation of type list .* expected a 1-D array of 2 numbers"),
    "reset-observation-only": (Scripted(reset=np.zeros(2)), TypeError,
                               r"the environment's reset must return \(observation, info\).*got ndarray"),
    "reset-observation-shape": (Scripted(reset=(np.zeros((1, 2)), {})), ValueError,
                                r"reset returned an observation of shape \(1, 2\)"),
    "step-old-gym-four-tuple": (Scripted(step=(np.zeros(2), -1.0, False, {})), TypeError,
                                r"step must return \(observation, reward, terminated, truncated, info\), the "
                                r"Gymnasium interface; got a tuple of 4"),
}


@pytest.mark.parametrize("env,error,message", BAD_ENVIRONMENTS.values(), ids=BAD_ENVIRONMENTS.keys())
def test_a_wrong_environment_output_is_named(env, error, message):
    learner = mf.rl.MetaSGDRL(mf.MLP([2, 2]), env=mf.rl.GymTasks(lambda rng: env, horizon=3), inner_trajectories=2)
    with pytest.raises(error, match=message):
        learner.fit(iterations=1, meta_batch=1, progress=False)


def test_sample_task_must_return_an_environment():
    learner = mf.rl.MetaSGDRL(mf.MLP([2, 2]), env=mf.rl.GymTasks(lambda rng: 3, horizon=3), inner_trajectories=2)
    with pytest.raises(TypeError, match=r"GymTasks' sample_task\(rng\) returned int 3: expected an environment with "
                                        r"the Gymnasium interface \(reset\(seed=None\) and step\(action\)\)"):
        learner.evaluate(num_tasks=1, steps=(0,), trajectories=1)


def test_an_environment_ending_episodes_early_gives_shorter_trajectories():
    class Ends(Scripted):
        def step(self, action):
            return np.zeros(2), -1.0, True, False, {}

    policy = mf.rl.GaussianPolicy(mf.MLP([2, 2]))
    run = gym.collect(policy, policy.init(), Ends(), 3, 10, np.random.default_rng(0))
    assert run.lengths == [1, 1, 1] and run.observations.shape == (3, 2) and run.rewards.tolist() == [-1.0] * 3
