"""Learners pickle (protocols 2 to 5), copy and deep-copy at any point of training: the copy is
independent, continues training bit for bit as the original does at any thread count, and its
payload meets the same checks as a model file."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import metafast as mf
from conftest import COPIERS
from line_world import line_world
from metafast import io

SINE = mf.tasks.Sinusoid(support=5, query=5)


def regression_family():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (60, 1))
    ids = np.arange(60) % 6
    return mf.tasks.Regression(x, np.sin(3 * x + ids[:, None]), ids, support=4, query=4)


def sampler(num_tasks, rng):
    x = rng.uniform(-2, 2, (num_tasks, 8, 1))
    y = np.sin(x + rng.uniform(0, 3, (num_tasks, 1, 1)))
    return mf.TaskBatch(x[:, :4], y[:, :4], x[:, 4:], y[:, 4:])


LEARNERS = {
    "metasgd": lambda: mf.MetaSGD(mf.MLP([1, 8, 1]), num_threads=1, meta_lr=1e-2),
    "metasgd-per-step": lambda: mf.MetaSGD(mf.MLP([1, 8, 1], activation="tanh"), inner_steps=2, alpha_per_step=True,
                                           alpha_init=(0.01, 0.05), dtype="float64", num_threads=1),
    "maml": lambda: mf.MAML(mf.MLP([1, 8, 1]), inner_lr=0.05, inner_steps=2, num_threads=1, clip_grad_norm=5.0),
    "reptile": lambda: mf.Reptile(mf.MLP([1, 8, 1]), inner_epochs=2, inner_batch=4, num_threads=1),
    "reptile-carried": lambda: mf.Reptile(mf.MLP([1, 8, 1]), reset_optimizer=False, inner_epochs=1, num_threads=1),
    "metasgd-rl": lambda: mf.rl.MetaSGDRL(mf.MLP([2, 8, 2]), inner_trajectories=2, num_threads=1),
}
TASKS = {"family": SINE, "data": regression_family(), "sampler": sampler}


def train(learner, tasks, iterations):
    if isinstance(learner, mf.rl.MetaSGDRL):
        return learner.fit(iterations=iterations, meta_batch=2, progress=False)
    return learner.fit(tasks, iterations=iterations, meta_batch=3, progress=False)


def assert_same_state(a, b):
    assert type(a) is type(b)
    np.testing.assert_array_equal(a.theta, b.theta)
    if hasattr(a, "alpha"):
        np.testing.assert_array_equal(a.alpha, b.alpha)
    for got, expected in zip(a._impl.get_optimizer_state(), b._impl.get_optimizer_state()):
        np.testing.assert_array_equal(got, expected)
    assert (a.iteration, a.seed, a.dtype) == (b.iteration, b.seed, b.dtype)
    np.testing.assert_array_equal(a.history, b.history)
    assert a._hyperparameters() == b._hyperparameters()


@pytest.mark.parametrize("how", list(COPIERS))
@pytest.mark.parametrize("kind", list(LEARNERS))
def test_a_copy_of_a_trained_learner_continues_bit_for_bit(kind, how):
    learner = LEARNERS[kind]()
    train(learner, SINE, 3)
    copied = COPIERS[how](learner)
    assert_same_state(copied, learner)
    copied.num_threads = 2  # results do not depend on the thread count
    train(learner, SINE, 20)
    train(copied, SINE, 20)
    assert_same_state(copied, learner)


@pytest.mark.parametrize("how", list(COPIERS))
def test_a_fresh_learner_copies(how):
    learner = LEARNERS["metasgd"]()
    assert_same_state(COPIERS[how](learner), learner)


@pytest.mark.parametrize("tasks", list(TASKS))
def test_the_task_family_of_the_last_fit_travels_with_the_learner(tasks):
    learner = LEARNERS["metasgd"]()
    train(learner, TASKS[tasks], 3)
    copied = pickle.loads(pickle.dumps(learner))
    if tasks == "sampler":
        assert copied.tasks is None
        return
    assert copied.tasks == learner.tasks
    # a data-set family comes back with its data: training goes on from the learner alone
    np.testing.assert_array_equal(train(copied, copied.tasks, 20), train(learner, learner.tasks, 20))


def test_copy_copy_never_shares_the_core():
    learner = LEARNERS["metasgd"]()
    train(learner, SINE, 3)
    shallow = copy.copy(learner)
    train(shallow, SINE, 2)
    assert (learner.iteration, len(learner.history), shallow.iteration) == (3, 3, 5)
    assert learner._impl is not shallow._impl


def test_a_learner_saved_after_its_copy_trained_still_loads(tmp_path):
    learner = LEARNERS["maml"]()
    train(copy.copy(learner), SINE, 3)
    learner.save(tmp_path / "m.npz")
    assert_same_state(mf.load(tmp_path / "m.npz"), learner)


def payload(learner):
    function, arguments = learner.__reduce__()
    assert function is io.unpickled_learner
    return arguments


def test_a_tampered_payload_is_refused_as_a_damaged_file_would_be():
    data, tasks, threads = payload(LEARNERS["metasgd"]())
    damaged = data[: len(data) // 2]
    with pytest.raises(ValueError, match="the pickled learner is not a readable metafast model file"):
        io.unpickled_learner(damaged, tasks, threads)
    with pytest.raises(TypeError, match="payload must be bytes, got str"):
        io.unpickled_learner("theta", tasks, threads)
    with pytest.raises(ValueError, match="num_threads"):
        io.unpickled_learner(data, tasks, -3)


def test_a_payload_with_another_task_family_is_refused():
    learner = LEARNERS["metasgd"]()
    train(learner, SINE, 1)
    data, _, threads = payload(learner)
    with pytest.raises(ValueError, match="^the pickled learner holds a task family that is not the one its state "
                                         "describes$"):
        io.unpickled_learner(data, mf.tasks.Sinusoid(support=7), threads)
    with pytest.raises(ValueError, match="^the pickled learner holds str where the task family of its last fit "
                                         "belongs$"):
        io.unpickled_learner(data, "sine", threads)


def test_a_learner_on_python_environments_pickles_with_them_and_trains_on_bit_for_bit(tmp_path):
    learner = mf.rl.MetaSGDRL(mf.MLP([1, 8, 1]), env=mf.rl.GymTasks(line_world, horizon=10), inner_trajectories=2)
    learner.fit(iterations=2, meta_batch=2, progress=False)
    for copied in (pickle.loads(pickle.dumps(learner)), copy.copy(learner), copy.deepcopy(learner)):
        assert isinstance(copied.env, mf.rl.GymTasks) and copied.env.sample_task is line_world
        assert_same_state(copied, learner)
        np.testing.assert_array_equal(copied.fit(iterations=3, meta_batch=2, progress=False),
                                      copy.deepcopy(learner).fit(iterations=3, meta_batch=2, progress=False))
    with pytest.raises(TypeError, match="cannot be saved to a file: its environments are code; pickle the learner"):
        learner.save(tmp_path / "m.npz")
    data, tasks, threads = payload(learner)
    with pytest.raises(ValueError, match=r"^the pickled learner records Python environments \(GymTasks\), which "
                                         "only a pickle of the learner carries$"):
        io.unpickled_learner(data, None, threads)
    with pytest.raises(ValueError, match=r"^the pickled learner holds Sinusoid beside a state whose environments "
                                         r"are Python ones \(GymTasks\)$"):
        io.unpickled_learner(data, mf.tasks.Sinusoid(), threads)


def test_a_learner_on_unpicklable_environments_says_why():
    learner = mf.rl.MetaSGDRL(mf.MLP([2, 4, 2]), env=mf.rl.GymTasks(lambda rng: None), num_threads=1)
    with pytest.raises(TypeError, match="this GymTasks cannot be pickled: its sample_task"):
        pickle.dumps(learner)


@pytest.mark.parametrize("kind", list(LEARNERS))
def test_every_learner_has_a_repr_with_its_model_settings_and_iteration(kind):
    learner = LEARNERS[kind]()
    train(learner, SINE, 2)
    text = repr(learner)
    assert text.startswith(f"{type(learner).__name__}(MLP([")
    assert "iteration=2" in text and f"seed={learner.seed}" in text and "\n" not in text


def test_a_pickle_keeps_the_thread_count_as_asked():
    # None (all cores) travels as None, so that the next machine's cores are all used
    assert payload(mf.MetaSGD(mf.MLP([1, 4, 1])))[2] is None
    assert payload(mf.MetaSGD(mf.MLP([1, 4, 1]), num_threads=1))[2] == 1
    learner = mf.Reptile(mf.MLP([1, 4, 1]), num_threads=1)
    learner.num_threads = None
    assert payload(learner)[2] is None


def test_a_fit_that_runs_nothing_keeps_the_task_family_of_the_last():
    learner = LEARNERS["metasgd"]()
    train(learner, SINE, 2)

    def diverging(num_tasks, rng):
        batch = sampler(num_tasks, rng)
        return mf.TaskBatch(batch.x_support, np.full_like(batch.y_support, 1e30), batch.x_query, batch.y_query)

    with pytest.raises(mf.TrainingDivergedError):
        learner.fit(diverging, iterations=3, meta_batch=3, progress=False)
    assert learner.iteration == 2 and learner.tasks == SINE and learner.meta_batch == 3
