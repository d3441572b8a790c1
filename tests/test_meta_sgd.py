"""Meta-SGD: exact meta-gradients (against the NumPy reference and finite differences through
the whole inner loop), determinism, save/load, learning, and errors."""

from __future__ import annotations

import numpy as np
import pytest

import metafast as mf
from metafast import reference
from metafast.tasks import GaussianNWay, LinearBinary, Sinusoid

from conftest import relative_error

# (model, loss, family) triples small enough for finite differences over every parameter.
PROBLEMS = {
    "mse": (lambda: mf.MLP([1, 8, 8, 1], activation="tanh"), "mse", Sinusoid(support=6, query=7)),
    "bce": (lambda: mf.MLP([5, 1], activation="identity", bias=False), "bce", LinearBinary(dim=5, support=6, query=5)),
    "softmax_ce": (lambda: mf.MLP([3, 6, 4], activation="tanh"), "softmax_ce", GaussianNWay(ways=4, dim=3, support=2, query=2)),
}


def make_learner(name, inner_steps=1, first_order=False, **kwargs):
    make_model, loss, family = PROBLEMS[name]
    learner = mf.MetaSGD(make_model(), loss=loss, inner_steps=inner_steps, first_order=first_order,
                         alpha_init=(0.05, 0.3), dtype="float64", seed=1, **kwargs)
    return learner, family.sample(3, seed=5, dtype="float64")


@pytest.mark.parametrize("first_order", [False, True], ids=["second-order", "first-order"])
@pytest.mark.parametrize("inner_steps", [1, 3])
@pytest.mark.parametrize("name", PROBLEMS)
def test_meta_gradient_matches_reference(name, inner_steps, first_order):
    learner, batch = make_learner(name, inner_steps, first_order)
    assert np.ptp(learner.alpha) > 0.1  # a non-uniform alpha
    loss, g_theta, g_alpha = learner.meta_gradient(batch)
    ref_loss, ref_theta, ref_alpha = reference.meta_gradient(
        learner.model, learner.theta, learner.alpha, batch.x_support, batch.y_support, batch.x_query,
        batch.y_query, learner.loss, inner_steps, first_order)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    assert relative_error(g_theta, ref_theta) < 1e-10
    assert relative_error(g_alpha, ref_alpha) < 1e-10


@pytest.mark.parametrize("threads", [1, 2])
def test_meta_gradient_follows_theta_between_calls(threads):
    """Each thread transposes theta's weights once per meta-iteration and reuses them for its
    tasks; a new theta (assigned, or after a step) must never meet the old transposes."""
    learner, batch = make_learner("mse", inner_steps=2, num_threads=threads)
    learner.meta_gradient(batch)
    learner.theta = learner.theta * 1.5 + 0.01
    got = learner.meta_gradient(batch)
    fresh, _ = make_learner("mse", inner_steps=2, num_threads=threads)
    fresh.theta = learner.theta
    for a, b in zip(got, fresh.meta_gradient(batch)):
        np.testing.assert_array_equal(a, b)
    ref = reference.meta_gradient(learner.model, learner.theta, learner.alpha, batch.x_support, batch.y_support,
                                  batch.x_query, batch.y_query, learner.loss, 2, False)
    assert relative_error(got[1], ref[1]) < 1e-10 and relative_error(got[2], ref[2]) < 1e-10


def query_loss_after_adaptation(learner, batch, theta, alpha):
    learner.theta, learner.alpha = theta, alpha
    return learner.meta_gradient(batch)[0]


@pytest.mark.parametrize("inner_steps", [1, 3])
@pytest.mark.parametrize("name", PROBLEMS)
def test_meta_gradient_matches_finite_differences(name, inner_steps):
    learner, batch = make_learner(name, inner_steps)
    theta, alpha = learner.theta, learner.alpha
    _, g_theta, g_alpha = learner.meta_gradient(batch)
    eps = 1e-6
    fd = np.empty(2 * theta.size)
    for i in range(fd.size):
        step = np.zeros(fd.size)
        step[i] = eps
        plus = query_loss_after_adaptation(learner, batch, theta + step[: theta.size], alpha + step[theta.size:])
        minus = query_loss_after_adaptation(learner, batch, theta - step[: theta.size], alpha - step[theta.size:])
        fd[i] = (plus - minus) / (2 * eps)
    assert relative_error(g_theta, fd[: theta.size]) < 1e-6
    assert relative_error(g_alpha, fd[theta.size:]) < 1e-6


@pytest.mark.parametrize("name", PROBLEMS)
def test_first_order_meta_gradient_is_the_query_gradient_at_the_adapted_parameters(name):
    learner, batch = make_learner(name, inner_steps=2, first_order=True)
    _, g_theta, g_alpha = learner.meta_gradient(batch)
    expected_theta, expected_alpha = np.zeros_like(g_theta), np.zeros_like(g_alpha)
    for t in range(batch.num_tasks):
        task = batch[t]
        theta, grads = learner.theta, []
        for _ in range(2):
            grads.append(learner.model.loss_and_grad(theta, task.x_support[0], task.y_support[0], learner.loss)[1])
            theta = theta - learner.alpha * grads[-1]
        query_grad = learner.model.loss_and_grad(theta, task.x_query[0], task.y_query[0], learner.loss)[1]
        expected_theta += query_grad / batch.num_tasks
        expected_alpha -= (grads[0] + grads[1]) * query_grad / batch.num_tasks
    np.testing.assert_allclose(g_theta, expected_theta, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g_alpha, expected_alpha, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_meta_steps_match_the_reference_learner(optimizer):
    learner, _ = make_learner("mse", inner_steps=2, meta_optimizer=optimizer, meta_lr=1e-2)
    ref = reference.MetaSGD(learner.model, learner.theta, learner.alpha, loss="mse", inner_steps=2,
                            meta_optimizer=optimizer, meta_lr=1e-2, alpha_lr=learner.alpha_lr)
    assert learner.alpha_lr < 1e-2  # theta and alpha learn at different rates
    family = PROBLEMS["mse"][2]
    for iteration in range(5):
        batch = family.sample(4, seed=9, iteration=iteration, dtype="float64")
        assert learner.meta_step(batch) == pytest.approx(ref.meta_step(batch), rel=1e-12)
    np.testing.assert_allclose(learner.theta, ref.theta, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(learner.alpha, ref.alpha, rtol=1e-11, atol=1e-14)
    assert learner.iteration == 5 and learner.history.shape == (5,)


def sine_learner(**kwargs):
    settings = {"loss": "mse", "meta_lr": 1e-3, "seed": 3, **kwargs}
    return mf.MetaSGD(mf.MLP([1, 40, 40, 1], activation="relu"), **settings)


@pytest.mark.parametrize("threads", [1, 2])
def test_native_fit_trains_on_the_tasks_that_sample_returns(threads):
    family = Sinusoid()
    native, stepped = sine_learner(num_threads=threads), sine_learner(num_threads=threads)
    history = native.fit(family, iterations=7, meta_batch=5, progress=False)
    for iteration in range(7):
        stepped.meta_step(family.sample(5, seed=3, iteration=iteration, dtype="float32"))
    np.testing.assert_array_equal(native.theta, stepped.theta)
    np.testing.assert_array_equal(native.alpha, stepped.alpha)
    np.testing.assert_array_equal(history, stepped.history)


def assert_fit_is_the_same_for(thread_counts, make_learner, **fit_args):
    """theta, alpha and the history after fit on sine tasks agree bit for bit across thread counts."""
    results = []
    for threads in thread_counts:
        learner = make_learner(threads)
        history = learner.fit(Sinusoid(), progress=False, **fit_args)
        results.append((learner.theta, learner.alpha, history))
    for result in results[1:]:
        for got, expected in zip(result, results[0]):
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fit_is_bit_identical_for_any_thread_count(dtype):
    """Also with more threads than cores (3, and 8 for 7 tasks: one task each) and uneven splits."""
    assert_fit_is_the_same_for((1, 2, 3, 8, 1), lambda threads: sine_learner(dtype=dtype, num_threads=threads,
                                                                              inner_steps=2),
                               iterations=30, meta_batch=7)


def test_fit_adds_long_runs_of_tasks_in_batches_with_the_same_bits():
    """A thread adds its done tasks onto the sum up to 8 at a time (the relay's last one at
    once): with 29 tasks the ranges hold 29, 14-15, 9-10 and 3-4 tasks."""
    assert_fit_is_the_same_for((1, 2, 3, 8), lambda threads: sine_learner(num_threads=threads),
                               iterations=4, meta_batch=29)


@pytest.mark.parametrize("hidden", [16, 40, 127], ids=["one-updater", "shared", "shared-large"])
def test_fit_splits_the_update_over_threads_with_the_same_bits(hidden):
    """Models with 2,048 or more values in [theta, alpha] share the meta-optimizer update
    between the threads, smaller ones leave it to the relay's last thread; the result must not
    change either way."""
    def learner(threads):
        made = mf.MetaSGD(mf.MLP([1, hidden, hidden, 1], activation="relu"), seed=3, num_threads=threads)
        assert (2 * made.model.num_params >= 2**11) == (hidden > 16)
        return made

    assert_fit_is_the_same_for((1, 2, 3), learner, iterations=3, meta_batch=5)


def test_fit_in_pieces_equals_fit_at_once():
    whole, pieces = sine_learner(), sine_learner()
    whole.fit(Sinusoid(), iterations=20, meta_batch=4, progress=False)
    pieces.fit(Sinusoid(), iterations=8, meta_batch=4, progress=False)
    pieces.fit(Sinusoid(), iterations=12, meta_batch=4, progress=False)
    np.testing.assert_array_equal(whole.theta, pieces.theta)
    np.testing.assert_array_equal(whole.history, pieces.history)


def test_save_load_round_trip_and_resume(tmp_path):
    straight = sine_learner(alpha_init=(0.001, 0.02))
    straight.fit(Sinusoid(), iterations=20, meta_batch=4, progress=False)
    first = sine_learner(alpha_init=(0.001, 0.02))
    first.fit(Sinusoid(), iterations=10, meta_batch=4, progress=False)
    path = tmp_path / "model.npz"
    first.save(path)
    loaded = mf.load(path)
    np.testing.assert_array_equal(loaded.theta, first.theta)
    np.testing.assert_array_equal(loaded.alpha, first.alpha)
    assert loaded.iteration == 10 and loaded.model == first.model and loaded.dtype == first.dtype
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temporary file left behind
    loaded.fit(Sinusoid(), iterations=10, meta_batch=4, progress=False)
    np.testing.assert_array_equal(loaded.theta, straight.theta)
    np.testing.assert_array_equal(loaded.alpha, straight.alpha)
    np.testing.assert_array_equal(loaded.history, straight.history)


def test_load_rejects_other_files(tmp_path):
    np.savez(tmp_path / "other.npz", theta=np.zeros(3))
    with pytest.raises(ValueError, match="not a metafast model file"):
        mf.load(tmp_path / "other.npz")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable metafast model file"):
        mf.load(tmp_path / "garbage.npz")
    learner = sine_learner()
    learner.save(tmp_path / "model.npz")
    data = (tmp_path / "model.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable metafast model file"):
        mf.load(tmp_path / "truncated.npz")
    with pytest.raises(FileNotFoundError):
        mf.load(tmp_path / "missing.npz")


def test_sine_meta_training_learns_to_adapt():
    family = Sinusoid(support=10, query=10)
    learner = sine_learner(alpha_init=0.01, num_threads=2)
    before = learner.evaluate(family, num_tasks=300, steps=(0, 1), seed=99)
    learner.fit(family, iterations=2000, meta_batch=25, progress=False)
    after = learner.evaluate(family, num_tasks=300, steps=(0, 1), seed=99)
    # Untrained: about 14 before adaptation (and worse after it); trained: about 1.5 after one step.
    assert after.loss[1] < 0.3 * before.loss[0]
    assert after.loss[1] < 0.7 * after.loss[0]
    assert after.accuracy is None


def test_linear_binary_meta_training_beats_chance():
    family = LinearBinary(dim=50)
    learner = mf.MetaSGD(mf.MLP([50, 1], activation="identity", bias=False), loss="bce", meta_lr=1e-2,
                         alpha_init=0.1)
    learner.fit(family, iterations=1000, meta_batch=32, progress=False)
    report = learner.evaluate(family, num_tasks=300, steps=(0, 1), seed=99)
    # About 0.5 before adaptation (a random hyperplane per task) and about 0.62 after one step.
    assert abs(report.accuracy[0] - 0.5) < 0.05
    assert report.accuracy[1] > 0.57
    assert report.accuracy[1] - report.accuracy_ci95[1] > 0.5


def test_callable_sampler_path():
    family = Sinusoid(support=5, query=5)
    calls = []

    def sampler(num_tasks, rng):
        calls.append(num_tasks)
        return family.sample(num_tasks, seed=int(rng.integers(1 << 31)), dtype="float64")

    a, b = sine_learner(), sine_learner()
    a.fit(sampler, iterations=4, meta_batch=3, progress=False)
    b.fit(sampler, iterations=4, meta_batch=3, progress=False)
    assert calls == [3] * 8
    np.testing.assert_array_equal(a.theta, b.theta)
    report = a.evaluate(sampler, num_tasks=6, steps=(1, 0))
    assert report.steps == (0, 1) and report.num_tasks == 6
    with pytest.raises(TypeError, match="must return a metafast.TaskBatch"):
        a.fit(lambda n, rng: None, iterations=1, progress=False)


def test_callback_sees_progress_and_can_stop():
    seen = []

    def callback(learner, iteration, loss):
        seen.append((iteration, loss))
        return iteration >= 3

    learner = sine_learner()
    learner.fit(Sinusoid(), iterations=1000, meta_batch=2, progress=False, callback=callback)
    assert seen[0][0] == 1 and 3 <= learner.iteration < 1000
    assert learner.iteration == seen[-1][0] and np.isfinite(seen[-1][1])


def test_fit_shows_a_progress_bar(capsys):
    sine_learner().fit(Sinusoid(), iterations=3, meta_batch=2, progress=True)
    assert "Meta-SGD" in capsys.readouterr().err


def test_adapt_and_predict():
    learner = sine_learner(dtype="float64")
    batch = Sinusoid().sample(1, seed=0, dtype="float64")
    params = learner.adapt(batch.x_support[0], batch.y_support[0])
    grad = learner.model.loss_and_grad(learner.theta, batch.x_support[0], batch.y_support[0])[1]
    np.testing.assert_allclose(params, learner.theta - learner.alpha * grad, rtol=1e-13)
    np.testing.assert_array_equal(learner.adapt(batch.x_support[0], batch.y_support[0], steps=0), learner.theta)
    np.testing.assert_array_equal(learner.predict(batch.x_query[0], params),
                                  learner.model.forward(params, batch.x_query[0]))
    assert learner.predict(batch.x_query[0].tolist()).shape == (10, 1)


def test_evaluate_classification_report():
    family = GaussianNWay(ways=3, dim=2, support=1, query=4)
    learner = mf.MetaSGD(mf.MLP([2, 3], activation="identity"), loss="softmax_ce", alpha_init=0.1)
    report = learner.evaluate(family, num_tasks=50, steps=(0, 2))
    assert report.accuracy.shape == (2,) and np.all((0 <= report.accuracy) & (report.accuracy <= 1))
    assert np.all(report.loss_ci95 > 0)
    assert set(report.as_dict()) == {0, 2} and "accuracy" in str(report)
    fixed = family.sample(10, seed=1)
    assert learner.evaluate(fixed, steps=(1,)).num_tasks == 10


def test_theta_and_alpha_are_copies_and_assignable():
    learner = sine_learner()
    theta = learner.theta
    theta[:] = 0
    assert learner.theta.any()
    learner.alpha = np.full(learner.model.num_params, 0.5)
    assert np.all(learner.alpha == np.float32(0.5)) and learner.alpha.dtype == np.float32


def test_divergence_stops_with_the_iteration_and_keeps_the_last_finite_state():
    learner = sine_learner()
    learner.fit(Sinusoid(), iterations=3, meta_batch=2, progress=False)
    theta, alpha = learner.theta, learner.alpha
    learner.alpha = np.full(learner.model.num_params, 1e30, dtype=np.float32)
    with pytest.raises(mf.TrainingDivergedError, match="meta-iteration 3") as caught:
        learner.fit(Sinusoid(), iterations=5, meta_batch=2, progress=False)
    assert caught.value.iteration == 3 and learner.iteration == 3
    np.testing.assert_array_equal(learner.theta, theta)
    with pytest.raises(mf.TrainingDivergedError):
        learner.meta_step(Sinusoid().sample(2))
    np.testing.assert_array_equal(learner.theta, theta)
    learner.alpha = alpha
    learner.fit(Sinusoid(), iterations=1, meta_batch=2, progress=False)  # and it can go on
    assert learner.iteration == 4


SINE = Sinusoid()
BAD_CALLS = {
    "inner-steps-zero": (lambda: sine_learner(inner_steps=0), ValueError, r"inner_steps must lie in \[1, 100000\], got 0"),
    "meta-lr-negative": (lambda: sine_learner(meta_lr=-1.0), ValueError, "meta_lr must be a finite number > 0, got -1"),
    "optimizer-unknown": (lambda: sine_learner(meta_optimizer="rmsprop"), ValueError, "meta_optimizer must be 'sgd' or 'adam'"),
    "alpha-init-nan": (lambda: sine_learner(alpha_init=np.nan), ValueError, "alpha_init must be finite"),
    "alpha-init-reversed": (lambda: sine_learner(alpha_init=(0.1, 0.01)), ValueError, "alpha_init must have low <= high"),
    "dtype": (lambda: sine_learner(dtype="float16"), TypeError, "dtype must be"),
    "model-type": (lambda: mf.MetaSGD([1, 40, 1]), TypeError, "model must be a metafast.MLP"),
    "loss-output": (lambda: mf.MetaSGD(mf.MLP([1, 1], output="tanh"), loss="bce"), ValueError, "needs output activation"),
    "meta-batch-zero": (lambda: sine_learner().fit(SINE, iterations=1, meta_batch=0), ValueError, "meta_batch must be at least 1"),
    "iterations-negative": (lambda: sine_learner().fit(SINE, iterations=-1), ValueError, "iterations must be at least 0"),
    "tasks-type": (lambda: sine_learner().fit("sine", iterations=1), TypeError, "tasks must be a task family"),
    "family-width": (lambda: sine_learner().fit(LinearBinary(), iterations=1), ValueError, "the tasks have 50 inputs but the model takes 1"),
    "family-labels": (lambda: mf.MetaSGD(mf.MLP([8, 5])).fit(GaussianNWay(), iterations=1), ValueError, "use loss 'softmax_ce'"),
    "family-bce-sine": (lambda: mf.MetaSGD(mf.MLP([1, 1]), loss="bce").fit(SINE, iterations=1), ValueError, "needs binary targets"),
    "batch-width": (lambda: sine_learner().meta_step(LinearBinary(dim=2).sample(2)), ValueError, r"x_support must have shape \(tasks, support, 1\), got \(2, 10, 2\)"),
    "batch-labels": (lambda: sine_learner().meta_step(GaussianNWay(dim=1).sample(2)), ValueError, "use loss 'softmax_ce'"),
    "batch-type": (lambda: sine_learner().meta_gradient((1, 2, 3, 4)), TypeError, "batch must be a metafast.TaskBatch"),
    "batch-nan": (lambda: sine_learner().meta_step(mf.TaskBatch(np.full((1, 2, 1), np.nan), np.zeros((1, 2, 1)), np.zeros((1, 2, 1)), np.zeros((1, 2, 1)))), ValueError, "x_support contains NaN"),
    "batch-bce-range": (lambda: mf.MetaSGD(mf.MLP([1, 1]), loss="bce").meta_step(SINE.sample(2)), ValueError, r"y_support must hold probabilities in \[0, 1\]"),
    "label-range": (lambda: mf.MetaSGD(mf.MLP([8, 3]), loss="softmax_ce").meta_step(GaussianNWay(ways=4).sample(2)), ValueError, r"class labels in \[0, 3\)"),
    "theta-length": (lambda: setattr(sine_learner(), "theta", np.zeros(3)), ValueError, r"theta must have shape \(1761,\)"),
    "alpha-nan": (lambda: setattr(sine_learner(), "alpha", np.full(1761, np.nan)), ValueError, "alpha contains NaN"),
    "evaluate-steps": (lambda: sine_learner().evaluate(SINE, steps=()), ValueError, "steps must name at least one"),
    "evaluate-negative-steps": (lambda: sine_learner().evaluate(SINE, steps=(-1,)), ValueError, r"steps\[0\] must be at least 0, got -1"),
    "adapt-shape": (lambda: sine_learner().adapt(np.zeros((5, 2)), np.zeros((5, 1))), ValueError, r"x_support must have shape \(rows, 1\)"),
    "num-threads": (lambda: sine_learner(num_threads=-2), ValueError, "num_threads must be at least 0"),
    "load-missing": (lambda: mf.load("/nonexistent/model.npz"), FileNotFoundError, "model.npz"),
}


@pytest.mark.parametrize("call,error,message", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_input_raises_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_failed_calls_leave_the_learner_unchanged():
    learner = sine_learner()
    learner.fit(Sinusoid(), iterations=2, meta_batch=2, progress=False)
    state = (learner.theta, learner.alpha, learner.iteration, learner.history)
    for call in (lambda: learner.meta_step(LinearBinary(dim=2).sample(2)),
                 lambda: learner.fit(LinearBinary(), iterations=3),
                 lambda: setattr(learner, "theta", np.full(1761, np.inf))):
        with pytest.raises(ValueError):
            call()
    np.testing.assert_array_equal(learner.theta, state[0])
    np.testing.assert_array_equal(learner.alpha, state[1])
    assert learner.iteration == state[2]
    np.testing.assert_array_equal(learner.history, state[3])


@pytest.mark.parametrize("name", ["x_support", "y_support", "x_query", "y_query"])
def test_float64_data_beyond_the_float32_range_is_a_clear_error(name):
    """A float32 learner converts float64 batches; a finite value that float32 cannot hold is a
    ValueError naming the array (not an overflow warning and infinities), and changes nothing."""
    learner = sine_learner()
    batch = Sinusoid().sample(2, seed=1, dtype="float64")
    getattr(batch, name)[1, 0, 0] = 1e300
    with pytest.raises(ValueError, match=f"{name} has values beyond the range of float32"):
        learner.meta_step(batch)
    assert learner.iteration == 0
    with pytest.raises(ValueError, match="x_support has values beyond the range of float32"):
        learner.adapt(np.full((3, 1), -1e300), np.zeros((3, 1)))


def test_evaluation_reports_diverged_adaptations_apart_from_the_mean_of_the_others():
    learner = sine_learner()
    learner.alpha = np.full(learner.model.num_params, 1e30, dtype=np.float32)
    report = learner.evaluate(Sinusoid(), num_tasks=5, steps=(0, 1))
    assert np.isfinite(report.loss[0]) and np.isnan(report.loss[1])
    np.testing.assert_array_equal(report.diverged, [0.0, 1.0])
    assert np.all(np.isinf(report.task_losses[:, 1])) and "all diverged" in str(report)
    # Some tasks diverged: the mean of the others, and the fraction beside it.
    losses = np.array([[1.0, 2.0], [3.0, np.inf], [5.0, 4.0], [7.0, np.nan]])
    mixed = mf.EvaluationReport.from_samples((0, 1), losses, None)
    np.testing.assert_allclose(mixed.loss, [4.0, 3.0])
    np.testing.assert_array_equal(mixed.diverged, [0.0, 0.5])
    assert mixed.as_dict()[1]["diverged"] == 0.5
    assert "(50.0% diverged)" in str(mixed) and "did not diverge" in str(mixed)
    assert "diverged" not in str(mf.EvaluationReport.from_samples((0,), losses[:, :1], None))
    # A loss a million times the one before adaptation has diverged too, finite or not.
    grown = mf.EvaluationReport.from_samples((1,), np.array([[2.0], [3e6], [2.9e6]]), None,
                                             before=np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(grown.diverged, [1 / 3])
    np.testing.assert_allclose(grown.loss, [(2.0 + 2.9e6) / 2])


def test_float32_adam_with_an_overflowed_second_moment_is_refused():
    """A finite meta-gradient of 3.6e37 squares to inf in float32: Adam's candidate second moment
    is infinite (exact Adam would then take a zero step for those parameters), a state that
    could be neither saved nor loaded. The update is refused like any divergence (issue 28):
    the learner keeps its parameters and optimizer state."""
    learner = mf.MetaSGD(mf.MLP([1, 8, 1]), dtype="float32", seed=0, alpha_init=1e-30)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 5, 1))
    y = np.full((2, 5, 1), 3e18)
    batch = mf.TaskBatch(x, y, x, y)
    _, g_theta, g_alpha = learner.meta_gradient(batch)
    grads = np.concatenate([g_theta, g_alpha])
    with np.errstate(over="ignore"):
        overflowed = np.isinf(np.float32(0.001) * grads * grads)
    assert np.isfinite(grads).all() and overflowed.any()
    before = np.concatenate([learner.theta, learner.alpha])
    state = learner._impl.get_optimizer_state()
    with pytest.raises(mf.TrainingDivergedError):
        learner.meta_step(batch)
    np.testing.assert_array_equal(np.concatenate([learner.theta, learner.alpha]), before)
    for kept, now in zip(state, learner._impl.get_optimizer_state()):
        np.testing.assert_array_equal(kept, now)


def test_denormals_are_flushed_to_zero_in_the_core_and_kept_in_the_callers_numpy():
    """The core runs with denormals flushed to zero (an operation on one takes a ~100-cycle
    microcode assist): Adam's first moment of a parameter with a zero gradient (here a dead ReLU
    unit) becomes 0 instead of decaying through the denormals. The caller's mode is restored."""
    learner = mf.MetaSGD(mf.MLP([1, 4, 1], activation="relu"), dtype="float32", seed=0)
    n = learner.model.num_params  # W0 (1x4), b0 (4), W1 (4x1), b1 (1)
    theta = learner.theta
    theta[0], theta[4] = 0.0, -1.0  # hidden unit 0: relu(0 x - 1) = 0, so W0[0], b0[0], W1[0] get no gradient
    learner.theta = theta
    dead = np.array([0, 4, 8, n, n + 4, n + 8])
    denormal = np.float32(1e-39)
    assert 0 < denormal < np.finfo(np.float32).tiny
    learner._impl.set_optimizer_state(np.full(2 * n, denormal), np.ones(2 * n, np.float32), 1)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 5, 1))
    learner.meta_step(mf.TaskBatch(x, np.sin(x), x, np.cos(x)))
    m, _, _ = learner._impl.get_optimizer_state()
    np.testing.assert_array_equal(m[dead], 0.0)  # IEEE arithmetic would give 0.9 * 1e-39
    assert np.all(m[np.setdiff1d(np.arange(2 * n), dead)] != 0)
    assert denormal * np.float32(0.5) != 0  # NumPy on this thread still has its denormals


def test_alpha_init_beyond_the_dtype_is_named():
    with pytest.raises(ValueError, match=r"^alpha_init must be at most 3.403e\+38 in float32, got 1e\+308$"):
        mf.MetaSGD(mf.MLP([1, 4, 1]), alpha_init=1e308)
    mf.MetaSGD(mf.MLP([1, 4, 1]), alpha_init=1e308, dtype="float64")  # fine in float64


def test_adapt_takes_one_dimensional_targets_for_one_output():
    learner = mf.MetaSGD(mf.MLP([1, 4, 1]), num_threads=1)
    x = np.linspace(-1, 1, 6).reshape(-1, 1)
    np.testing.assert_array_equal(learner.adapt(x, np.sin(x[:, 0])), learner.adapt(x, np.sin(x)))


def test_ragged_and_non_numeric_support_sets_are_named():
    learner = mf.MetaSGD(mf.MLP([1, 4, 1]), num_threads=1)
    with pytest.raises(ValueError, match="^x_support must be a rectangular numeric array, but its nested sequences"):
        learner.adapt([[1.0], [1.0, 2.0]], [[1.0], [2.0]])
    with pytest.raises(TypeError, match=r"^x_support must hold numbers \(floats or integers\), got dtype <U1$"):
        learner.adapt(["a"], [[1.0]])


def test_a_float32_learner_refuses_a_family_whose_data_exceed_float32_before_training():
    family = mf.tasks.Regression(np.ones((40, 1)), np.full((40, 1), 1e39), np.arange(40) % 4, support=3, query=3)
    learner = mf.MetaSGD(mf.MLP([1, 4, 1]), num_threads=1)
    with pytest.raises(ValueError, match="^y has values beyond the range of float32"):
        learner.fit(family, iterations=1, progress=False)
    assert learner.iteration == 0
