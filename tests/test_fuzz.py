"""Property-based fuzzing of the public API with hypothesis: every input either works or raises
ValueError/TypeError, and a failed call leaves the learner unchanged. CI runs a bounded number
of examples; HYPOTHESIS_PROFILE=long runs many more."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import metafast as mf
from metafast.cli import main

# CI draws the same examples every run (derandomize): a failure there is reproducible, never luck.
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DTYPES = [np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_, object]
MODEL = mf.MLP([2, 5, 3], activation="tanh")


@st.composite
def arrays(draw, max_rows=4, max_cols=4):
    ndim = draw(st.integers(0, 3))
    shape = tuple(draw(st.integers(0, max_rows if i == 0 else max_cols)) for i in range(ndim))
    dtype = draw(st.sampled_from(DTYPES))
    values = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).normal(size=shape)
    if draw(st.booleans()) and values.size:
        values.flat[draw(st.integers(0, values.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e300]))
    with np.errstate(invalid="ignore", over="ignore"):  # NaN or 1e300 into ints or float16
        array = values.astype(dtype) if dtype is not object else values.astype(object)
    if draw(st.booleans()) and array.ndim == 2:
        array = np.asfortranarray(array)
    return array


@given(theta=arrays(max_rows=40), x=arrays(), y=arrays(), v=arrays(max_rows=40),
       loss=st.sampled_from(["mse", "bce", "softmax_ce", "hinge"]))
def test_mlp_calls_work_or_raise_clear_errors(theta, x, y, v, loss):
    for call in (lambda: MODEL.forward(theta, x), lambda: MODEL.loss_and_grad(theta, x, y, loss),
                 lambda: MODEL.hvp(theta, x, y, v, loss)):
        try:
            result = call()
        except (ValueError, TypeError) as error:
            assert str(error)
            continue
        result = result[1] if isinstance(result, tuple) else result
        assert np.all(np.isfinite(result)) or not np.all(np.isfinite(theta.astype(float)))


@given(xs=arrays(), ys=arrays(), xq=arrays(), yq=arrays())
def test_meta_step_on_arbitrary_batches_works_or_leaves_the_learner_unchanged(xs, ys, xq, yq):
    learner = mf.MetaSGD(mf.MLP([2, 4, 3]), loss="mse", seed=0)
    theta, alpha = learner.theta, learner.alpha
    try:
        batch = mf.TaskBatch(xs[None] if xs.ndim == 2 else xs, ys[None] if ys.ndim == 2 else ys,
                             xq[None] if xq.ndim == 2 else xq, yq[None] if yq.ndim == 2 else yq)
        learner.meta_step(batch)
    except (ValueError, TypeError, mf.TrainingDivergedError):
        np.testing.assert_array_equal(learner.theta, theta)
        np.testing.assert_array_equal(learner.alpha, alpha)
        assert learner.iteration == 0


NUMBERS = st.one_of(st.integers(-5, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.none(),
                    st.text(max_size=3), st.booleans(), st.tuples(st.floats(-1, 1), st.floats(-1, 1)))


@given(inner_steps=NUMBERS, alpha_init=NUMBERS, meta_lr=NUMBERS, seed=NUMBERS, num_threads=NUMBERS)
def test_metasgd_hyperparameters_work_or_raise(inner_steps, alpha_init, meta_lr, seed, num_threads):
    try:
        mf.MetaSGD(mf.MLP([1, 3, 1]), inner_steps=inner_steps, alpha_init=alpha_init, meta_lr=meta_lr, seed=seed,
                   num_threads=num_threads)
    except (ValueError, TypeError) as error:
        assert str(error)


@given(inner_lr=NUMBERS, inner_epochs=NUMBERS, inner_batch=NUMBERS, epsilon=NUMBERS, epsilon_final=NUMBERS)
def test_reptile_hyperparameters_work_or_raise(inner_lr, inner_epochs, inner_batch, epsilon, epsilon_final):
    try:
        mf.Reptile(mf.MLP([1, 3, 1]), inner_lr=inner_lr, inner_epochs=inner_epochs, inner_batch=inner_batch,
                   epsilon=epsilon, epsilon_final=epsilon_final)
    except (ValueError, TypeError) as error:
        assert str(error)


@given(data=st.binary(max_size=400), cut=st.integers(0, 10_000))
def test_corrupted_model_files_are_value_errors(tmp_path_factory, data, cut):
    folder = tmp_path_factory.mktemp("files")
    good = folder / "good.npz"
    mf.MetaSGD(mf.MLP([1, 3, 1])).save(good)
    raw = good.read_bytes()
    for content in (data, raw[: cut % len(raw)], raw[: cut % len(raw)] + data):
        path = folder / "bad.npz"
        path.write_bytes(content)
        try:
            mf.load(path)
        except ValueError as error:
            assert str(error)


WORDS = ["demo", "train", "evaluate", "metasgd", "reptile", "--task", "sine", "mnist", "--iterations", "-1", "0",
         "x", "--steps", "--save", "--tasks", "--seed", "--threads", "99999", "/nonexistent/m.npz", "--scale", "nan"]


@given(argv=st.lists(st.sampled_from(WORDS), max_size=6))
def test_cli_never_raises(argv):
    # Keep it quick: a command that would really train is cut short by giving it no budget.
    if "demo" in argv or ("train" in argv and "--save" in argv):
        argv = [word for word in argv if word not in ("demo", "train")] or ["--version"]
    try:
        status = main(argv)
    except SystemExit as done:  # pragma: no cover - main returns instead
        pytest.fail(f"main raised SystemExit({done.code})")
    assert status in (0, 1, 2)


@given(trajectories=NUMBERS, gamma=NUMBERS, alpha_init=NUMBERS, log_std_init=NUMBERS, horizon=NUMBERS,
       max_action=NUMBERS)
def test_rl_settings_work_or_raise(trajectories, gamma, alpha_init, log_std_init, horizon, max_action):
    try:
        env = mf.rl.Navigation2D(horizon=horizon, max_action=max_action)
        mf.rl.MetaSGDRL(mf.MLP([2, 3, 2]), env=env, inner_trajectories=trajectories, gamma=gamma,
                        alpha_init=alpha_init, log_std_init=log_std_init)
    except (ValueError, TypeError) as error:
        assert str(error)


@given(theta=arrays(max_rows=30), states=arrays(), actions=arrays(), advantages=arrays(), v=arrays(max_rows=30))
def test_policy_surrogate_works_or_raises(theta, states, actions, advantages, v):
    policy = mf.rl.GaussianPolicy(mf.MLP([2, 3, 2]))
    for call in (lambda: policy.surrogate(theta, states, actions, advantages, 2),
                 lambda: policy.surrogate_hvp(theta, states, actions, advantages, 2, v)):
        try:
            call()
        except (ValueError, TypeError) as error:
            assert str(error)
