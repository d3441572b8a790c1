"""Reptile: agreement with the NumPy reference, determinism, learning, saving, and errors."""

from __future__ import annotations

import numpy as np
import pytest

import metafast as mf
from metafast import reference
from metafast.tasks import GaussianNWay, Sinusoid

from conftest import relative_error


def sine_reptile(**kwargs):
    settings = {"inner_lr": 1e-2, "epsilon": 0.1, "seed": 2, **kwargs}
    return mf.Reptile(mf.MLP([1, 16, 16, 1], activation="tanh"), **settings)


def test_meta_step_by_hand_sgd_serial():
    """One serial SGD step computed by hand with MLP.loss_and_grad: 2 passes of 3 minibatches."""
    learner = sine_reptile(inner_optimizer="sgd", inner_epochs=2, inner_batch=4, dtype="float64", epsilon=0.3)
    batch = Sinusoid(support=10, query=5).sample(1, seed=4)
    theta = params = learner.theta
    for _ in range(2):
        for first in (0, 4, 8):
            rows = slice(first, min(first + 4, 10))
            grad = learner.model.loss_and_grad(params, batch.x_support[0, rows], batch.y_support[0, rows])[1]
            params = params - 1e-2 * grad
    loss = learner.meta_step(batch)
    np.testing.assert_allclose(learner.theta, theta + 0.3 * (params - theta), rtol=1e-13, atol=1e-15)
    assert loss == pytest.approx(learner.model.loss(params, batch.x_query[0], batch.y_query[0]), rel=1e-13)


def test_batched_step_is_the_mean_of_serial_moves():
    batch = Sinusoid(support=12, query=4).sample(3, seed=1)
    learner = sine_reptile(dtype="float64")
    theta = learner.theta
    moves = []
    for i in range(3):
        single = sine_reptile(dtype="float64", epsilon=1.0)
        moves.append(single.adapt(batch.x_support[i], batch.y_support[i]) - theta)
    learner.meta_step(batch)
    np.testing.assert_allclose(learner.theta, theta + 0.1 * np.mean(moves, axis=0), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shuffle", [False, True], ids=["in-order", "shuffled"])
def test_batched_fit_is_bit_identical_for_any_thread_count(dtype, shuffle):
    results = []
    for threads in (1, 2, 1):
        learner = sine_reptile(dtype=dtype, shuffle=shuffle, num_threads=threads)
        history = learner.fit(Sinusoid(support=15), iterations=20, meta_batch=6, progress=False)
        results.append((learner.theta, history))
    for theta, history in results[1:]:
        np.testing.assert_array_equal(theta, results[0][0])
        np.testing.assert_array_equal(history, results[0][1])


@pytest.mark.parametrize("threads", [1, 2])
def test_native_fit_trains_on_the_tasks_that_sample_returns(threads):
    family = Sinusoid(support=12)
    native, stepped = sine_reptile(shuffle=True, num_threads=threads), sine_reptile(shuffle=True, num_threads=threads)
    native.fit(family, iterations=5, meta_batch=3, progress=False)
    for iteration in range(5):
        stepped.meta_step(family.sample(3, seed=2, iteration=iteration, dtype="float32"))
    np.testing.assert_array_equal(native.theta, stepped.theta)
    np.testing.assert_array_equal(native.history, stepped.history)


def test_epsilon_annealing():
    family = Sinusoid()
    annealed = sine_reptile(epsilon=0.5, epsilon_final=0.0)
    annealed.fit(family, iterations=4, meta_batch=2, progress=False)
    theta = annealed.model.init(annealed.seed, annealed.dtype)
    for k, epsilon in enumerate((0.5, 0.375, 0.25, 0.125)):  # one step each at a constant epsilon
        by_hand = sine_reptile(epsilon=epsilon)
        by_hand.theta = theta
        by_hand.meta_step(family.sample(2, seed=2, iteration=k, dtype="float32"))
        theta = by_hand.theta
    np.testing.assert_allclose(annealed.theta, theta, rtol=1e-6, atol=1e-7)


def test_epsilon_annealing_is_the_same_on_the_sampler_path():
    """The schedule follows fit's own iterations, whichever path runs them (and restarts with
    each fit call)."""
    family = Sinusoid()

    def sampler(num_tasks, rng):
        batch = family.sample(num_tasks, seed=2, iteration=sampler.calls, dtype="float32")
        sampler.calls += 1
        return batch

    sampler.calls = 0
    native, sampled = sine_reptile(epsilon=0.5, epsilon_final=0.0), sine_reptile(epsilon=0.5, epsilon_final=0.0)
    for iterations in (4, 3):
        native.fit(family, iterations=iterations, meta_batch=2, progress=False)
        sampled.fit(sampler, iterations=iterations, meta_batch=2, progress=False)
    np.testing.assert_array_equal(native.theta, sampled.theta)
    np.testing.assert_array_equal(native.history, sampled.history)


def test_carried_optimizer_state_chains_tasks():
    family = Sinusoid()
    fresh, carried = sine_reptile(), sine_reptile(reset_optimizer=False)
    fresh.fit(family, iterations=3, meta_batch=2, progress=False)
    carried.fit(family, iterations=3, meta_batch=2, progress=False)
    assert not np.array_equal(fresh.theta, carried.theta)
    m, v, step = carried._impl.get_optimizer_state()
    assert step == 3 * 2 * 10 and np.all(v > 0)  # 10 passes of one minibatch per task


def test_learning_happens_on_sine_waves():
    family = Sinusoid(support=10, query=10)
    learner = mf.Reptile(mf.MLP([1, 64, 64, 1], activation="tanh"), inner_lr=1e-2, epsilon=0.1, epsilon_final=0.0,
                         seed=0)
    before = learner.evaluate(family, num_tasks=300, steps=(0, 10), seed=99)
    learner.fit(family, iterations=1500, meta_batch=5, progress=False)
    after = learner.evaluate(family, num_tasks=300, steps=(0, 10), seed=99)
    # Untrained: about 3 to 4 after 10 Adam steps; trained: about 1.
    assert after.loss[1] < 0.5 * before.loss[1]
    assert after.loss[1] < 0.6 * after.loss[0]


def test_classification_with_labels():
    family = GaussianNWay(ways=3, dim=2, support=2, query=3)
    learner = mf.Reptile(mf.MLP([2, 16, 3]), loss="softmax_ce", inner_lr=0.05, inner_batch=3, seed=0)
    learner.fit(family, iterations=50, meta_batch=4, progress=False)
    report = learner.evaluate(family, num_tasks=100, steps=(0, 6))
    assert report.accuracy[1] > report.accuracy[0]


def test_save_load_round_trip_and_resume(tmp_path):
    family = Sinusoid()
    straight = sine_reptile(reset_optimizer=False)
    straight.fit(family, iterations=10, meta_batch=2, progress=False)
    first = sine_reptile(reset_optimizer=False)
    first.fit(family, iterations=5, meta_batch=2, progress=False)
    first.save(tmp_path / "reptile.npz")
    loaded = mf.load(tmp_path / "reptile.npz")
    assert isinstance(loaded, mf.Reptile) and loaded.tasks == family and loaded.iteration == 5
    np.testing.assert_array_equal(loaded.theta, first.theta)
    loaded.fit(family, iterations=5, meta_batch=2, progress=False)
    np.testing.assert_array_equal(loaded.theta, straight.theta)
    np.testing.assert_array_equal(loaded.history, straight.history)


def test_adapt_steps_count_minibatch_updates():
    learner = sine_reptile(inner_batch=5, inner_epochs=3, dtype="float64")
    batch = Sinusoid(support=10).sample(1, seed=0)
    full = learner.adapt(batch.x_support[0], batch.y_support[0])
    np.testing.assert_array_equal(full, learner.adapt(batch.x_support[0], batch.y_support[0], steps=6))
    np.testing.assert_array_equal(learner.adapt(batch.x_support[0], batch.y_support[0], steps=0), learner.theta)
    report = learner.evaluate(batch, steps=(0, 2, 6))
    expected = learner.model.loss(full, batch.x_query[0], batch.y_query[0])
    assert report.loss[2] == pytest.approx(expected, rel=1e-12)


def test_divergence_keeps_the_last_finite_theta():
    learner = sine_reptile(inner_optimizer="sgd", inner_lr=1e6)
    theta = learner.theta
    with pytest.raises(mf.TrainingDivergedError, match="meta-iteration 0"):
        learner.fit(Sinusoid(), iterations=3, meta_batch=2, progress=False)
    np.testing.assert_array_equal(learner.theta, theta)
    assert learner.iteration == 0


BAD_CALLS = {
    "epsilon-zero": (lambda: sine_reptile(epsilon=0.0), ValueError, r"epsilon must lie in \(0, 1\], got 0"),
    "epsilon-big": (lambda: sine_reptile(epsilon=1.5), ValueError, r"epsilon must lie in \(0, 1\], got 1.5"),
    "epsilon-final-negative": (lambda: sine_reptile(epsilon_final=-0.1), ValueError, r"epsilon_final must lie in \[0, 1\], got -0.1"),
    "inner-lr": (lambda: sine_reptile(inner_lr=0.0), ValueError, "inner_lr must be a finite number > 0, got 0"),
    "inner-epochs": (lambda: sine_reptile(inner_epochs=0), ValueError, r"inner_epochs must lie in \[1, 16777216\], got 0"),
    "inner-batch": (lambda: sine_reptile(inner_batch=0), ValueError, r"inner_batch must lie in \[1, 2147483648\], got 0"),
    "inner-optimizer": (lambda: sine_reptile(inner_optimizer="lbfgs"), ValueError, "inner_optimizer must be 'sgd' or 'adam'"),
    "reset-not-bool": (lambda: sine_reptile(reset_optimizer=1), TypeError, "reset_optimizer must be True or False"),
    "betas": (lambda: sine_reptile(adam_betas=(0.9, 1.0)), ValueError, "adam_betas must lie in"),
    "meta-batch": (lambda: sine_reptile().fit(Sinusoid(), iterations=1, meta_batch=0), ValueError, "meta_batch must be at least 1"),
    "batch-width": (lambda: sine_reptile().meta_step(GaussianNWay(dim=3).sample(1)), ValueError, "use loss 'softmax_ce'"),
    "batch-type": (lambda: sine_reptile().meta_step(None), TypeError, "batch must be a metafast.TaskBatch"),
    "theta-shape": (lambda: setattr(sine_reptile(), "theta", np.zeros(4)), ValueError, r"theta must have shape \(321,\)"),
}


@pytest.mark.parametrize("call,error,message", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_input_raises_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("shuffle", [False, True], ids=["in-order", "shuffled"])
@pytest.mark.parametrize("reset", [True, False], ids=["reset", "carried"])
@pytest.mark.parametrize("tasks", [1, 3], ids=["serial", "batched"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_meta_steps_match_the_numpy_reference(optimizer, tasks, reset, shuffle):
    settings = dict(inner_optimizer=optimizer, inner_lr=0.02, inner_epochs=3, inner_batch=10, epsilon=0.25,
                    reset_optimizer=reset, shuffle=shuffle, seed=8)
    learner = mf.Reptile(mf.MLP([1, 12, 12, 1], activation="tanh"), dtype="float64", **settings)
    ref = reference.Reptile(learner.model, learner.theta, **settings)
    family = Sinusoid(support=23, query=5)  # 23 rows: the last minibatch of a pass has 3
    for iteration in range(3):
        batch = family.sample(tasks, seed=1, iteration=iteration)
        assert learner.meta_step(batch) == pytest.approx(ref.meta_step(batch, iteration), rel=1e-10)
    assert relative_error(learner.theta, ref.theta) < 1e-8
    if not reset:
        m, v, step = learner._impl.get_optimizer_state()
        assert relative_error(m, ref.state[0]) < 1e-8 and step == ref.state[2]


def test_float32_adam_matches_the_float64_reference():
    """float32 Adam takes its square roots and divisions from hardware estimates refined by a
    Newton step on vector CPUs: within float32 rounding of the exact formula. Dead ReLU units
    (zero gradients, so v = 0 and sqrt(v) = 0) must stay exactly where they are."""
    settings = dict(inner_optimizer="adam", inner_lr=0.02, inner_epochs=2, inner_batch=7, epsilon=0.5, seed=3)
    model = mf.MLP([1, 37, 1], activation="relu")  # 37 units: vectors and a partial one
    learner = mf.Reptile(model, dtype="float32", **settings)
    theta = model.init(seed=1, dtype="float64")
    dead = np.arange(0, 37, 2)
    theta[dead] = np.clip(theta[dead], -0.9, 0.9)
    theta[37 + dead] = -5.0  # these units stay dead on inputs in [-5, 5]
    learner.theta = theta
    ref = reference.Reptile(model, learner.theta.astype(np.float64), **settings)
    batch = Sinusoid(support=20, query=5).sample(1, seed=2)
    learner.meta_step(batch)
    ref.meta_step(batch, 0)
    assert relative_error(learner.theta.astype(np.float64), ref.theta) < 1e-5
    frozen = np.concatenate([dead, 37 + dead, 74 + dead])
    np.testing.assert_array_equal(learner.theta[frozen], theta[frozen].astype(np.float32))
    moved = learner.theta[74 + np.arange(1, 37, 2)] != theta[74 + np.arange(1, 37, 2)].astype(np.float32)
    assert moved.mean() > 0.5  # the live units' output weights learn


@pytest.mark.parametrize("step", [0, 4094, 10_000], ids=["fresh", "across-the-kept-schedule", "beyond-it"])
def test_carried_adam_matches_the_reference_at_any_step_count(step):
    """The core looks Adam's per-step scalars up in a table for steps up to 4096 and computes
    them beyond: both agree with the reference update, across the boundary too."""
    learner = sine_reptile(reset_optimizer=False, inner_epochs=1, inner_batch=5, dtype="float64", epsilon=1.0)
    batch = Sinusoid(support=15, query=5).sample(1, seed=6, dtype="float64")
    n = learner.model.num_params
    rng = np.random.default_rng(0)
    m, v = rng.normal(0, 1e-2, n), rng.uniform(0, 1e-3, n)
    learner._impl.set_optimizer_state(m, v, step)
    params, state = learner.theta, (m, v, step)
    for first in (0, 5, 10):
        grad = learner.model.loss_and_grad(params, batch.x_support[0, first:first + 5], batch.y_support[0, first:first + 5])[1]
        params, state = reference.adam_update(params, grad, state, 1e-2)
    learner.meta_step(batch)
    np.testing.assert_allclose(learner.theta, params, rtol=1e-13, atol=1e-15)
    m_core, v_core, t_core = learner._impl.get_optimizer_state()
    assert t_core == step + 3
    np.testing.assert_allclose(m_core, state[0], rtol=1e-13, atol=1e-18)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
@pytest.mark.parametrize("hidden, rows", [(1, 1), (7, 5), (16, 10), (30, 3), (40, 10), (50, 4), (63, 10), (64, 10),
                                          (100, 23), (127, 2)])
def test_one_hidden_layer_scalar_network_takes_the_fused_path_with_the_same_bits(hidden, rows, activation, bias):
    """Reptile's inner loop computes the gradient of 1 -> H -> 1 networks (identity output, MSE,
    float32) in two fused passes; it must equal the general backpropagation bit for bit. One SGD
    step with learning rate 1 is theta - grad, rounded once as NumPy rounds it."""
    model = mf.MLP([1, hidden, 1], activation=activation, bias=bias)
    learner = mf.Reptile(model, inner_optimizer="sgd", inner_lr=1.0, inner_epochs=1, inner_batch=rows,
                         dtype="float32", seed=5)
    rng = np.random.default_rng(hidden + rows)
    x = rng.uniform(-5, 5, (rows, 1)).astype(np.float32)
    y = rng.uniform(-3, 3, (rows, 1)).astype(np.float32)
    theta = learner.theta
    _, grad = model.loss_and_grad(theta, x, y)
    np.testing.assert_array_equal(learner.adapt(x, y, steps=1), theta - grad)


def digits_family(classes_part: int, shots: int = 1):
    datasets = pytest.importorskip("sklearn.datasets", reason="needs scikit-learn (the test extra)")
    data = datasets.load_digits()
    parts = mf.tasks.split_classes(data.target, parts=(5, 5), seed=0)
    return mf.tasks.Classification(data.data / 16.0, data.target, ways=5, shots=shots, query=15,
                                   classes=parts[classes_part])


DEFAULT_PROBLEMS = {
    "sine": (lambda: mf.MLP([1, 64, 64, 1], activation="tanh"), lambda part: Sinusoid(), "mse"),
    "linear-binary": (lambda: mf.MLP([50, 1], bias=False), lambda part: mf.tasks.LinearBinary(), "bce"),
    "nway": (lambda: mf.MLP([8, 32, 5]), lambda part: GaussianNWay(), "softmax_ce"),
    "digits-linear": (lambda: mf.MLP([64, 5]), lambda part: digits_family(part, shots=5), "softmax_ce"),
    "digits-hidden-layer": (lambda: mf.MLP([64, 64, 5]), digits_family, "softmax_ce"),
}


@pytest.mark.parametrize("model,family,loss", DEFAULT_PROBLEMS.values(), ids=DEFAULT_PROBLEMS.keys())
def test_the_defaults_learn_on_every_family(model, family, loss):
    """Reptile as constructed with only a model and a loss: meta-training lowers its training
    loss and the query loss after adaptation on held-out tasks (on digits: held-out classes)."""
    learner = mf.Reptile(model(), loss=loss, seed=0)
    assert (learner.inner_optimizer, learner.inner_lr) == (("adam", 1e-2) if loss == "mse" else ("sgd", 0.1))
    held_out = family(1).sample(200, seed=123)
    before = learner.evaluate(held_out, steps=(10,)).loss[0]
    history = learner.fit(family(0), iterations=2000, meta_batch=5, progress=False)
    after = learner.evaluate(held_out, steps=(10,)).loss[0]
    assert history[-100:].mean() < history[:100].mean() and after < before, (before, after)
