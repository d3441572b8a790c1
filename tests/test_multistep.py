"""Multi-step Meta-SGD's tools and MAML: per-step alpha, meta-gradient clipping, initialisation
schemes and the MAML learner, each exact against central finite differences through the whole
inner loop in float64, bit-identical at any thread count, and saved and resumed exactly."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import metafast as mf
from metafast.tasks import GaussianNWay, Sinusoid

STEPS = 3


def adapted_query_loss(model, loss, theta, alphas, task):
    """L_Q after len(alphas) inner steps theta <- theta - alpha_j * grad L_S(theta), from the
    MLP's own loss and gradient (themselves checked against finite differences)."""
    for alpha in alphas:
        _, grad = model.loss_and_grad(theta, task.x_support[0], task.y_support[0], loss=loss)
        theta = theta - alpha * grad
    return model.loss(theta, task.x_query[0], task.y_query[0], loss=loss)


def central_differences(f, x, h=1e-6):
    out = np.empty_like(x)
    for i in range(x.size):
        up, down = x.copy(), x.copy()
        up.flat[i] += h
        down.flat[i] -= h
        out.flat[i] = (f(up) - f(down)) / (2 * h)
    return out


PROBLEMS = {
    "sine-tanh": (mf.MLP([1, 5, 1], activation="tanh"), "mse", Sinusoid(support=4, query=5)),
    "nway-sigmoid": (mf.MLP([3, 4, 3], activation="sigmoid"), "softmax_ce", GaussianNWay(ways=3, dim=3, support=2,
                                                                                        query=2)),
}


@pytest.mark.parametrize("model,loss,family", PROBLEMS.values(), ids=PROBLEMS.keys())
def test_per_step_alpha_meta_gradient_is_exact(model, loss, family):
    learner = mf.MetaSGD(model, loss=loss, inner_steps=STEPS, alpha_per_step=True, alpha_init=(0.05, 0.3),
                         dtype="float64", seed=2)
    task = family.sample(1, seed=4, dtype="float64")
    value, g_theta, g_alpha = learner.meta_gradient(task)
    theta, alphas = learner.theta, learner.alpha
    assert alphas.shape == (STEPS, model.num_params) and g_alpha.shape == alphas.shape
    assert value == pytest.approx(adapted_query_loss(model, loss, theta, alphas, task), rel=1e-12)
    np.testing.assert_allclose(g_theta, central_differences(
        lambda t: adapted_query_loss(model, loss, t, alphas, task), theta), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(g_alpha, central_differences(
        lambda a: adapted_query_loss(model, loss, theta, a, task), alphas), rtol=1e-5, atol=1e-8)


def test_one_shared_alpha_is_the_per_step_alphas_summed():
    model = mf.MLP([1, 5, 1], activation="tanh")
    shared = mf.MetaSGD(model, inner_steps=STEPS, alpha_init=0.1, dtype="float64", seed=1)
    per_step = mf.MetaSGD(model, inner_steps=STEPS, alpha_init=0.1, alpha_per_step=True, dtype="float64", seed=1)
    task = Sinusoid().sample(3, seed=2, dtype="float64")
    loss, g_theta, g_alpha = shared.meta_gradient(task)
    loss_steps, g_theta_steps, g_alpha_steps = per_step.meta_gradient(task)
    assert loss == loss_steps
    np.testing.assert_array_equal(g_theta, g_theta_steps)
    np.testing.assert_allclose(g_alpha, g_alpha_steps.sum(axis=0), rtol=1e-12, atol=1e-15)


def test_first_order_per_step_alpha_gradients_sum_to_the_shared_one():
    model = mf.MLP([1, 5, 1], activation="tanh")
    task = Sinusoid().sample(3, seed=2, dtype="float64")
    gradients = [mf.MetaSGD(model, inner_steps=STEPS, alpha_init=0.1, first_order=True, alpha_per_step=per_step,
                            dtype="float64", seed=1).meta_gradient(task) for per_step in (False, True)]
    np.testing.assert_array_equal(gradients[0][1], gradients[1][1])
    np.testing.assert_allclose(gradients[0][2], gradients[1][2].sum(axis=0), rtol=1e-12, atol=1e-15)
    # One step: first order is exact for alpha.
    one = mf.MetaSGD(model, inner_steps=1, alpha_init=(0.05, 0.2), first_order=True, alpha_per_step=True,
                     dtype="float64", seed=1)
    single = task[:1]
    np.testing.assert_allclose(one.meta_gradient(single)[2], central_differences(
        lambda a: adapted_query_loss(model, "mse", one.theta, a, single), one.alpha), rtol=1e-5, atol=1e-8)


def test_the_core_refuses_an_alpha_its_learner_does_not_hold():
    maml = mf.MAML(mf.MLP([1, 4, 1]), dtype="float64")
    with pytest.raises(ValueError, match="this learner has no alpha"):
        maml._impl.set_params(maml.theta, np.zeros(13))
    meta_sgd = mf.MetaSGD(mf.MLP([1, 4, 1]), dtype="float64")
    with pytest.raises(ValueError, match="alpha is missing"):
        meta_sgd._impl.set_params(meta_sgd.theta)


def test_adaptation_beyond_the_trained_steps_reuses_the_last_alpha():
    model = mf.MLP([1, 5, 1], activation="tanh")
    learner = mf.MetaSGD(model, inner_steps=2, alpha_per_step=True, alpha_init=(0.01, 0.2), dtype="float64", seed=3)
    task = Sinusoid().sample(1, seed=5, dtype="float64")
    alphas = learner.alpha
    theta = learner.theta
    for alpha in (alphas[0], alphas[1], alphas[1], alphas[1]):
        theta = theta - alpha * model.loss_and_grad(theta, task.x_support[0], task.y_support[0], loss="mse")[1]
    np.testing.assert_allclose(learner.adapt(task.x_support[0], task.y_support[0], steps=4), theta, rtol=1e-12)


def test_meta_sgd_evaluates_its_trained_steps_by_default_and_warns_where_more_diverge():
    """Its learned step sizes are for inner_steps steps: evaluate reports 0, 1 and those by
    default; tasks adapted beyond them that diverge warn (evaluate) and a non-finite
    adaptation warns (adapt); MAML and Reptile never warn."""
    family = Sinusoid(support=5, query=5)
    for steps in (1, 3):
        learner = mf.MetaSGD(mf.MLP([1, 8, 1]), inner_steps=steps, num_threads=1)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert learner.evaluate(family, num_tasks=4).steps == tuple(sorted({0, 1, steps}))
            learner.evaluate(family, num_tasks=20, steps=(0, steps + 5))  # beyond, but nothing diverges
    model = mf.MLP([1, 8, 1], activation="relu")
    theta = model.init(0)
    overshooting = mf.MetaSGD(model, inner_steps=1, alpha_init=0.5, init=theta, dtype="float64", num_threads=1)
    task = family.sample(1, seed=2, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        overshooting.adapt(task.x_support[0], task.y_support[0], 1)  # the trained step: no warning
        overshooting.evaluate(family, num_tasks=20, steps=(0, 1))
    with pytest.warns(mf.BeyondTrainedStepsWarning, match=r"adaptation diverged on \d+\.\d% of the tasks after 40 steps, "
                      r"beyond the 1 step this Meta-SGD learner's step sizes were meta-trained for"):
        report = overshooting.evaluate(family, num_tasks=20, steps=(0, 1, 40))
    assert report.diverged[-1] > 0 and report.diverged[1] == 0
    with pytest.warns(mf.BeyondTrainedStepsWarning, match=r"100\.0% of the tasks after 400 steps"):
        with np.errstate(all="ignore"):
            assert not np.all(np.isfinite(overshooting.adapt(task.x_support[0], task.y_support[0], 400)))
    maml = mf.MAML(model, inner_lr=0.5, init=theta, dtype="float64", num_threads=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert maml.evaluate(family, num_tasks=20, steps=(0, 1, 40)).diverged[-1] > 0  # as asked: no warning
        assert mf.Reptile(mf.MLP([1, 8, 1]), num_threads=1).evaluate(family, num_tasks=4).steps == (0, 1, 5, 10)


def test_maml_is_meta_sgd_with_a_constant_alpha_whose_gradient_is_discarded():
    model = mf.MLP([1, 6, 1], activation="tanh")
    maml = mf.MAML(model, inner_lr=0.05, inner_steps=2, meta_optimizer="sgd", meta_lr=0.01, dtype="float64", seed=7)
    meta_sgd = mf.MetaSGD(model, alpha_init=0.05, inner_steps=2, meta_optimizer="sgd", meta_lr=0.01,
                          dtype="float64", seed=7)
    for k in range(4):
        batch = Sinusoid(support=5, query=5).sample(4, seed=k, dtype="float64")
        loss, g_theta = maml.meta_gradient(batch)
        assert (loss, *g_theta) == (meta_sgd.meta_gradient(batch)[0], *meta_sgd.meta_gradient(batch)[1])
        maml.meta_step(batch)
        meta_sgd.meta_step(batch)
        meta_sgd.alpha = np.full(model.num_params, 0.05)  # discard what alpha learned
        np.testing.assert_array_equal(maml.theta, meta_sgd.theta)
    assert not any(hasattr(maml, name) for name in ("alpha", "alpha_lr", "alpha_per_step", "alpha_init"))


def test_maml_meta_gradient_is_exact():
    model = mf.MLP([1, 5, 1], activation="tanh")
    maml = mf.MAML(model, inner_lr=0.1, inner_steps=STEPS, dtype="float64", seed=1)
    task = Sinusoid(support=4, query=4).sample(1, seed=3, dtype="float64")
    _, g_theta = maml.meta_gradient(task)
    alphas = [np.full(model.num_params, 0.1)] * STEPS
    np.testing.assert_allclose(g_theta, central_differences(
        lambda t: adapted_query_loss(model, "mse", t, alphas, task), maml.theta), rtol=1e-5, atol=1e-8)
    first_order = mf.MAML(model, inner_lr=0.1, inner_steps=1, first_order=True, dtype="float64", seed=1)
    _, g_first = first_order.meta_gradient(task)
    adapted = first_order.adapt(task.x_support[0], task.y_support[0])
    np.testing.assert_allclose(g_first, model.loss_and_grad(adapted, task.x_query[0], task.y_query[0], loss="mse")[1],
                               rtol=1e-12)


@pytest.mark.parametrize("clip", [1e-3, 1e3])
def test_clipping_scales_the_exact_meta_gradient_to_its_norm(clip):
    model = mf.MLP([1, 8, 1], activation="tanh")
    learner = mf.MetaSGD(model, inner_steps=2, meta_optimizer="sgd", meta_lr=0.1, alpha_lr=0.1,
                         clip_grad_norm=clip, dtype="float64", seed=0)
    batch = Sinusoid().sample(5, seed=1, dtype="float64")
    _, g_theta, g_alpha = learner.meta_gradient(batch)  # exact, unclipped
    gradient = np.concatenate([g_theta, g_alpha])
    scale = min(1.0, clip / np.linalg.norm(gradient))
    before = np.concatenate([learner.theta, learner.alpha])
    learner.meta_step(batch)
    after = np.concatenate([learner.theta, learner.alpha])
    np.testing.assert_allclose(after, before - 0.1 * scale * gradient, rtol=1e-12, atol=1e-15)
    assert (scale < 1) == (clip == 1e-3)


MAKERS = {
    "per-step-clipped": lambda threads: mf.MetaSGD(mf.MLP([1, 16, 16, 1]), inner_steps=3, alpha_per_step=True,
                                                   clip_grad_norm=0.5, seed=5, num_threads=threads),
    "maml": lambda threads: mf.MAML(mf.MLP([1, 16, 16, 1]), inner_lr=0.02, inner_steps=2, clip_grad_norm=1.0,
                                    init=("normal", 0.1), seed=5, num_threads=threads),
}


@pytest.mark.parametrize("make", MAKERS.values(), ids=MAKERS.keys())
def test_bits_are_the_same_at_any_thread_count_and_resume_exactly(make, tmp_path):
    one, two = make(1), make(2)
    for learner in (one, two):
        learner.fit(Sinusoid(), iterations=12, meta_batch=7, progress=False)
    np.testing.assert_array_equal(one.theta, two.theta)
    np.testing.assert_array_equal(one.history, two.history)
    half = make(2)
    half.fit(Sinusoid(), iterations=5, meta_batch=7, progress=False)
    half.save(tmp_path / "half.npz")
    resumed = mf.load(tmp_path / "half.npz")
    assert type(resumed) is type(one)
    resumed.fit(Sinusoid(), iterations=7, meta_batch=7, progress=False)
    assert resumed._state().keys() == one._state().keys()
    for name, value in one._state().items():
        np.testing.assert_array_equal(resumed._state()[name], value, err_msg=name)


def test_initialisation_schemes():
    model = mf.MLP([50, 400, 3], activation="tanh")
    weights = slice(0, 50 * 400)
    biases = slice(50 * 400, 50 * 400 + 400)
    pytorch = model.init(1, scheme="pytorch")
    bound = 1 / np.sqrt(50)
    assert np.abs(pytorch[weights]).max() <= bound and np.abs(pytorch[weights]).max() > 0.99 * bound
    assert np.abs(pytorch[biases]).max() <= bound and np.std(pytorch[biases]) > 0.5 * bound / np.sqrt(3)
    normal = model.init(1, scheme=("normal", 0.01))
    assert normal[weights].std() == pytest.approx(0.01, rel=0.02) and np.all(normal[biases] == 0)
    he, glorot = model.init(1, scheme="he"), model.init(1, scheme="glorot")
    assert np.abs(he[weights]).max() == pytest.approx(np.sqrt(6 / 50), rel=1e-3)
    assert np.abs(glorot[weights]).max() == pytest.approx(np.sqrt(6 / 450), rel=1e-3)
    np.testing.assert_array_equal(model.init(1), glorot)  # "auto": Glorot before tanh
    with pytest.raises(ValueError, match="scheme must be 'auto', 'he', 'glorot', 'pytorch' or \\('normal', std\\)"):
        model.init(1, scheme="xavier")
    # A learner starts from the scheme, or from an explicit theta; a saved file rebuilds it.
    learner = mf.MAML(mf.MLP([1, 8, 1]), init="pytorch", seed=4)
    np.testing.assert_array_equal(learner.theta, mf.MLP([1, 8, 1]).init(4, "float32", scheme="pytorch"))
    explicit = np.linspace(-1, 1, mf.MLP([1, 8, 1]).num_params)
    np.testing.assert_array_equal(mf.MetaSGD(mf.MLP([1, 8, 1]), init=explicit, dtype="float64").theta, explicit)
    with pytest.raises(ValueError, match=r"init as an array must be theta, of shape \(25,\)"):
        mf.MetaSGD(mf.MLP([1, 8, 1]), init=explicit[:-1])


@pytest.mark.parametrize("cls", [mf.MetaSGD, mf.MAML])
def test_the_default_initialisation_is_auto_for_one_step_and_glorot_for_more(cls, tmp_path):
    relu = mf.MLP([1, 8, 8, 1], activation="relu")
    for steps, scheme in ((1, "auto"), (2, "glorot"), (5, "glorot")):
        learner = cls(relu, inner_steps=steps, seed=3)
        np.testing.assert_array_equal(learner.theta, relu.init(3, "float32", scheme=scheme))
        assert learner.init is None
        learner.save(tmp_path / "m.npz")  # reloads from its theta, whatever the default was
        np.testing.assert_array_equal(mf.load(tmp_path / "m.npz").theta, learner.theta)
    assert not np.array_equal(relu.init(3, scheme="auto"), relu.init(3, scheme="glorot"))  # He before ReLU
    tanh = mf.MLP([1, 8, 8, 1], activation="tanh")  # no ReLU: the same theta as ever
    np.testing.assert_array_equal(cls(tanh, inner_steps=3, seed=3).theta, tanh.init(3, "float32"))


def test_the_inner_loop_of_the_default_start_does_not_overshoot():
    """The support loss's largest curvature under the multi-step default stays below the
    2 / alpha that steps of alpha = 0.01 need, and five steps lower every task's loss, where
    He's larger first-layer limit ("auto" before a ReLU) overflows on some (docs/math.md)."""
    model = mf.MLP([1, 40, 40, 1], activation="relu")
    tasks = Sinusoid(support=5, query=1).sample(40, seed=1)
    ratios = {}
    for scheme in ("auto", "glorot"):
        theta0 = model.init(0, scheme=scheme)
        worst_curvature, worst_ratio = 0.0, 0.0
        for t in range(40):
            x, y = tasks.x_support[t], tasks.y_support[t]
            v = np.random.default_rng(t).normal(size=theta0.size)
            for _ in range(25):  # power iteration on the exact Hessian-vector product
                hv = model.hvp(theta0, x, y, v)
                curvature = np.linalg.norm(hv) / np.linalg.norm(v)
                v = hv / np.linalg.norm(hv)
            theta = theta0.copy()
            with np.errstate(all="ignore"):
                for _ in range(5):
                    theta = theta - 0.01 * model.loss_and_grad(theta, x, y)[1]
                ratio = model.loss(theta, x, y) / model.loss(theta0, x, y)
            worst_curvature = max(worst_curvature, curvature)
            worst_ratio = max(worst_ratio, ratio if np.isfinite(ratio) else np.inf)
        ratios[scheme] = (worst_curvature, worst_ratio)
    assert ratios["glorot"][0] < 2 / 0.01 and ratios["glorot"][1] < 1
    assert ratios["auto"][0] > 2 / 0.01 and ratios["auto"][1] > 1e3


def test_maml_five_step_sine_setting_trains_with_the_defaults():
    """MAML's standard 5-step setting as a user writes it (issue: it diverged at meta-iteration
    1): a few hundred meta-iterations lower the loss; the full 70,000 run is in
    benchmarks/reproduce.py (docs/results.md)."""
    learner = mf.MetaSGD(mf.MLP([1, 40, 40, 1], activation="relu"), loss="mse", inner_steps=5, alpha_init=0.01,
                         meta_lr=1e-3, clip_grad_norm=10.0, seed=0, num_threads=2)
    family = Sinusoid(support=5, query=10)
    before = learner.evaluate(family, num_tasks=200, steps=(5,), seed=7).loss[0]
    losses = learner.fit(family, iterations=400, meta_batch=25, progress=False)
    assert learner.iteration == 400 and np.all(np.isfinite(losses))
    after = learner.evaluate(family, num_tasks=200, steps=(5,), seed=7).loss[0]
    assert after < 0.6 * before


def test_new_options_are_checked():
    with pytest.raises(ValueError, match="clip_grad_norm must be a finite number > 0, got 0"):
        mf.MetaSGD(mf.MLP([1, 4, 1]), clip_grad_norm=0.0)
    with pytest.raises(ValueError, match=r"inner_lr must lie in \[0, 1e\+30\], got -0.1"):
        mf.MAML(mf.MLP([1, 4, 1]), inner_lr=-0.1)
    per_step = mf.MetaSGD(mf.MLP([1, 4, 1]), inner_steps=2, alpha_per_step=True)
    with pytest.raises(ValueError, match=r"alpha must have shape \(2, 13\), got \(13,\)"):
        per_step.alpha = np.zeros(13)
    per_step.alpha = np.full((2, 13), 0.5)
    assert np.all(per_step.alpha == 0.5)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("per_step", [False, True])
def test_alpha_learns_at_its_own_rate(optimizer, per_step):
    """One update moves theta at meta_lr and alpha at alpha_lr, by the rule of the optimizer."""
    learner = mf.MetaSGD(mf.MLP([1, 6, 1], activation="tanh"), inner_steps=2, alpha_init=0.05, meta_lr=0.01,
                         alpha_lr=3e-4, meta_optimizer=optimizer, alpha_per_step=per_step, dtype="float64", seed=2)
    batch = Sinusoid(support=4, query=4).sample(5, seed=1, dtype="float64")
    theta, alpha = learner.theta, learner.alpha
    _, g_theta, g_alpha = learner.meta_gradient(batch)
    learner.meta_step(batch)

    def updated(value, gradient, lr):
        if optimizer == "sgd":
            return value - lr * gradient
        m, v = 0.1 * gradient, 0.001 * gradient**2  # Adam's first step, bias-corrected below
        return value - lr * (m / 0.1) / (np.sqrt(v / 0.001) + 1e-8)

    np.testing.assert_allclose(learner.theta, updated(theta, g_theta, 0.01), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(learner.alpha, updated(alpha, g_alpha, 3e-4), rtol=1e-12, atol=1e-15)


def test_alpha_lr_defaults_to_meta_lr_at_alphas_scale_with_several_steps(tmp_path):
    def alpha_lr(**kwargs):
        return mf.MetaSGD(mf.MLP([1, 4, 1]), **kwargs).alpha_lr

    assert alpha_lr(alpha_init=0.01, meta_lr=1e-3) == 1e-3  # one step: theta's rate
    assert alpha_lr(alpha_init=0.01, meta_lr=1e-3, inner_steps=5) == pytest.approx(1e-5)
    assert alpha_lr(alpha_init=(0.005, 0.1), meta_lr=2e-3, inner_steps=2) == pytest.approx(1.05e-4)
    assert alpha_lr(alpha_init=0.0, alpha_lr=1e-4, inner_steps=3) == 1e-4
    assert alpha_lr(alpha_init=0.0, meta_lr=1e-3, inner_steps=3) == 1e-3  # no scale to take
    with pytest.raises(ValueError, match="alpha_lr must be a finite number > 0, got -1e-05"):
        mf.MetaSGD(mf.MLP([1, 4, 1]), alpha_lr=-1e-5)
    with pytest.raises(TypeError, match="alpha_lr must be a number"):
        mf.MetaSGD(mf.MLP([1, 4, 1]), alpha_lr="fast")
    learner = mf.MetaSGD(mf.MLP([1, 4, 1]), alpha_lr=2e-4)
    learner.save(tmp_path / "m.npz")
    assert mf.load(tmp_path / "m.npz").alpha_lr == 2e-4
    # A file from before alpha_lr: alpha learnt at meta_lr, and goes on so.
    mf.MetaSGD(mf.MLP([1, 4, 1]), inner_steps=3, meta_lr=2e-3).save(tmp_path / "old.npz")
    with np.load(tmp_path / "old.npz") as archive:
        arrays = dict(archive)
    config = json.loads(str(arrays["config"]))
    del config["alpha_lr"]
    arrays["config"] = np.array(json.dumps(config))
    np.savez(tmp_path / "old.npz", **arrays)
    assert mf.load(tmp_path / "old.npz").alpha_lr == 2e-3
