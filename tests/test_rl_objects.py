"""The RL objects as Python values: pickle (protocols 2 to 5) and copy of Navigation2D and
GaussianPolicy rebuild through the constructors (same goals and surrogate bits, a core object of
their own, a tampered payload refused as user input is), GymTasks pickles when its callable
does, every object has a repr, and the rough edges of their arguments give clear errors."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import metafast as mf
from conftest import COPIERS
from line_world import LineWorld, line_world

ENVS = {
    "Navigation2D-default": mf.rl.Navigation2D(),
    "Navigation2D-squared-velocity": mf.rl.Navigation2D(goal_range=(-2.0, 1.5), max_action=0.3, tolerance=0.0,
                                                        horizon=7, reward="squared", scaled_actions=False),
}
POLICIES = {
    "GaussianPolicy-tanh": mf.rl.GaussianPolicy(mf.MLP([2, 6, 2], activation="tanh")),
    "GaussianPolicy-linear-no-bias": mf.rl.GaussianPolicy(mf.MLP([3, 1], bias=False)),
}


@pytest.mark.parametrize("copier", COPIERS.values(), ids=COPIERS.keys())
@pytest.mark.parametrize("env", ENVS.values(), ids=ENVS.keys())
def test_environment_copy_is_equal_and_samples_the_same_bits(env, copier):
    copied = copier(env)
    assert copied == env and hash(copied) == hash(env) and repr(copied) == repr(env)
    assert copied._impl is not env._impl
    np.testing.assert_array_equal(copied.sample_goals(5, seed=3, iteration=2), env.sample_goals(5, seed=3, iteration=2))
    positions, actions = np.full((2, 2), 0.1), np.array([[0.5, -2.0], [0.0, 0.3]])
    for got, expected in zip(copied.step(positions, actions, np.zeros((2, 2))), env.step(positions, actions, np.zeros((2, 2)))):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("copier", COPIERS.values(), ids=COPIERS.keys())
@pytest.mark.parametrize("policy", POLICIES.values(), ids=POLICIES.keys())
def test_policy_copy_is_equal_and_computes_the_same_surrogate(policy, copier):
    copied = copier(policy)
    assert copied == policy and hash(copied) == hash(policy) and repr(copied) == repr(policy)
    assert copied.model._impl is not policy.model._impl
    rng = np.random.default_rng(0)
    theta = policy.init(seed=1, log_std=-0.3)
    states, actions = rng.normal(size=(6, policy.model.sizes[0])), rng.normal(size=(6, policy.action_dim))
    advantages, v = rng.normal(size=6), rng.normal(size=policy.num_params)
    got, expected = copied.surrogate(theta, states, actions, advantages, 2), policy.surrogate(theta, states, actions, advantages, 2)
    assert got[0] == expected[0]
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_array_equal(copied.surrogate_hvp(theta, states, actions, advantages, 2, v),
                                  policy.surrogate_hvp(theta, states, actions, advantages, 2, v))


def test_equality_follows_the_settings():
    assert mf.rl.Navigation2D(horizon=5) != mf.rl.Navigation2D() and mf.rl.Navigation2D() != "env"
    assert mf.rl.GaussianPolicy(mf.MLP([2, 2])) != mf.rl.GaussianPolicy(mf.MLP([2, 3, 2]))


class Payload:
    """Pickles as ``function(*args)``: a payload crafted or tampered with by hand."""

    def __init__(self, function, *args):
        self.reduced = (function, args)

    def __reduce__(self):
        return self.reduced


TAMPERED = {
    "Navigation2D-negative-max-action": ((mf.rl.Navigation2D, (-0.5, 0.5), -0.1, 0.01, 100, "distance", True),
                                         ValueError, "max_action must be a finite number > 0"),
    "Navigation2D-reversed-goal-range": ((mf.rl.Navigation2D, (0.5, -0.5), 0.1, 0.01, 100, "distance", True),
                                         ValueError, "goal_range must be a finite"),
    "Navigation2D-huge-horizon": ((mf.rl.Navigation2D, (-0.5, 0.5), 0.1, 0.01, 2**40, "distance", True),
                                  ValueError, "horizon must lie in"),
    "Navigation2D-reward-name": ((mf.rl.Navigation2D, (-0.5, 0.5), 0.1, 0.01, 100, "evil", True),
                                 ValueError, "reward must be 'distance' or 'squared'"),
    "GaussianPolicy-tanh-output": ((mf.rl.GaussianPolicy, mf.MLP([2, 2], output="tanh")), ValueError,
                                   "output activation 'identity'"),
    "GaussianPolicy-not-a-model": ((mf.rl.GaussianPolicy, [2, 2]), TypeError, "model must be a metafast.MLP"),
    "GymTasks-not-callable": ((mf.rl.GymTasks, 3, 10), TypeError, "sample_task must be a callable"),
}


@pytest.mark.parametrize("payload,error,message", TAMPERED.values(), ids=TAMPERED.keys())
def test_tampered_payload_is_refused_as_user_input_is(payload, error, message):
    data = pickle.dumps(Payload(*payload), protocol=2)
    with pytest.raises(error, match=message):
        pickle.loads(data)


@pytest.mark.parametrize("copier", COPIERS.values(), ids=COPIERS.keys())
def test_gym_tasks_with_a_module_level_callable_pickle_and_copy(copier):
    tasks = mf.rl.GymTasks(line_world, horizon=9)
    copied = copier(tasks)
    assert copied is not tasks and copied.sample_task is line_world and copied.horizon == 9
    assert repr(copied) == repr(tasks) == "GymTasks(line_world.line_world, horizon=9)"
    assert copied.sample(np.random.default_rng(1)).goal == tasks.sample(np.random.default_rng(1)).goal


@pytest.mark.parametrize("protocol", [2, 5])
def test_gym_tasks_with_a_lambda_refuse_pickle_with_a_type_error_but_copy(protocol):
    tasks = mf.rl.GymTasks(lambda rng: LineWorld(0.2), horizon=9)
    with pytest.raises(TypeError, match=r"this GymTasks cannot be pickled: its sample_task .*<lambda> cannot .*"
                                        r"define sample_task at the top level of a module"):
        pickle.dumps(tasks, protocol=protocol)
    assert copy.copy(tasks).sample_task is tasks.sample_task and copy.deepcopy(tasks).horizon == 9


def test_reprs():
    assert repr(mf.rl.Navigation2D(horizon=5)) == ("Navigation2D(goal_range=(-0.5, 0.5), max_action=0.1, tolerance=0.01, "
                                                   "horizon=5, reward='distance', scaled_actions=True)")
    assert repr(mf.rl.GaussianPolicy(mf.MLP([2, 2]))) == (
        "GaussianPolicy(MLP([2, 2], activation='relu', output='identity', bias=True))")
    learner = mf.rl.MetaSGDRL(mf.MLP([2, 4, 2]), env=mf.rl.Navigation2D(horizon=5), seed=3)
    text = repr(learner)
    assert text.startswith("MetaSGDRL(MLP([2, 4, 2]") and "Navigation2D(" in text and "horizon=5" in text
    assert "seed=3" in text and "\n" not in text
    gym = mf.rl.MetaSGDRL(mf.MLP([1, 1]), env=mf.rl.GymTasks(line_world, horizon=3))
    assert repr(gym).startswith("MetaSGDRL(MLP([1, 1]")


def test_settings_are_read_only_so_they_cannot_drift_from_the_core():
    env = mf.rl.Navigation2D()
    with pytest.raises(AttributeError):
        env.horizon = 5
    with pytest.raises(AttributeError):
        mf.rl.GaussianPolicy(mf.MLP([2, 2])).model = mf.MLP([2, 3, 2])
    with pytest.raises(AttributeError):
        mf.rl.GymTasks(line_world).horizon = 3


def test_alpha_lr_is_the_inner_learning_rates_property():
    learner = mf.rl.MetaSGDRL(mf.MLP([2, 2]), alpha_lr=3e-4)
    assert "alpha_lr" not in vars(mf.rl.MetaSGDRL) and learner.alpha_lr == learner._alpha_lr == 3e-4


ROUGH_EDGES = {
    "sample-goals-2**64": (lambda: mf.rl.Navigation2D().sample_goals(2**64), ValueError,
                           r"num_tasks must be at most 16777216, got 18446744073709551616"),
    "sample-goals-seed-2**64": (lambda: mf.rl.Navigation2D().sample_goals(2, seed=2**64), ValueError,
                                r"seed must be at most"),
    "sample-goals-iteration-negative": (lambda: mf.rl.Navigation2D().sample_goals(2, iteration=-1), ValueError,
                                        r"iteration must be at least 0"),
    "adapt-string": (lambda: mf.rl.MetaSGDRL(mf.MLP([2, 2])).adapt("ab"), TypeError,
                     r"task must be a goal \(x, y\) of two numbers for Navigation2D tasks, got str 'ab'"),
    "adapt-three-numbers": (lambda: mf.rl.MetaSGDRL(mf.MLP([2, 2])).adapt([0.1, 0.2, 0.3]), TypeError,
                            r"task must be a goal \(x, y\)"),
    "adapt-nan-goal": (lambda: mf.rl.MetaSGDRL(mf.MLP([2, 2])).adapt([np.nan, 0.2]), ValueError,
                       r"task\[0\] must be finite"),
    "adapt-gym-string": (lambda: mf.rl.MetaSGDRL(mf.MLP([1, 1]), env=mf.rl.GymTasks(line_world)).adapt("ab"),
                         TypeError, r"task must be an environment for GymTasks tasks, got str 'ab': expected an "
                                    r"environment with the Gymnasium interface"),
    "goal-range-0d-array": (lambda: mf.rl.Navigation2D(goal_range=np.array(0.5)), TypeError,
                            r"goal_range must be a pair of numbers, got array\(0.5\)"),
    "goal-range-string": (lambda: mf.rl.Navigation2D(goal_range="ab"), TypeError, "goal_range must be a pair"),
}


@pytest.mark.parametrize("call,error,message", ROUGH_EDGES.values(), ids=ROUGH_EDGES.keys())
def test_rough_edges_raise_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()
