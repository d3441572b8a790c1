"""TRPO's meta-update for MetaSGDRL (docs/math.md, section 4, "TRPO's meta-update"): the
Fisher-vector product of the adapted policies' mean KL through the inner steps against central finite differences of
that KL, the whole search direction against (F + damping I)^-1 g with F from finite
differences, the step's scaling to the trust region, the line search's acceptance rule, and
the learner's bits at any thread count, after a resume and through a saved file."""

from __future__ import annotations

import numpy as np
import pytest

import metafast as mf
from metafast import _core
from metafast.rl.learner import TRPO_OPTIONS

H = 1e-3  # (KL(z0 + h w) + KL(z0 - h w)) / h^2 = w^T F w + c h^2 + O(h^4)


def trpo_learner(inner_steps: int = 1, threads: int = 1, dtype: str = "float64", **options) -> mf.rl.MetaSGDRL:
    return mf.rl.MetaSGDRL(mf.MLP([2, 4, 2], activation="tanh"), env=mf.rl.Navigation2D(horizon=8),
                           inner_trajectories=5, alpha_init=0.05, meta_optimizer="trpo", inner_steps=inner_steps,
                           dtype=dtype, seed=3, num_threads=threads, **options)


def z_of(learner: mf.rl.MetaSGDRL) -> np.ndarray:
    return np.concatenate([learner.theta, learner.alpha])


def curvature(impl, z0: np.ndarray, w: np.ndarray) -> float:
    """w^T F w from the KL of the policies adapted from z0 +- h w, by central differences at
    h = H and H / 2, extrapolated (Richardson) to remove the h^2 term."""
    def at(h: float) -> float:
        return (impl.trpo_surrogate_and_kl(z0 + h * w)[1] + impl.trpo_surrogate_and_kl(z0 - h * w)[1]) / h**2
    return (4 * at(H / 2) - at(H)) / 3


def fisher_by_differences(impl, z0: np.ndarray) -> np.ndarray:
    """F from w^T F w by polarization, u^T F v = ((u + v)^T F (u + v) - (u - v)^T F (u - v)) / 4."""
    n = z0.size
    eye = np.eye(n)
    F = np.empty((n, n))
    for i in range(n):
        for j in range(i, n):
            F[i, j] = F[j, i] = (curvature(impl, z0, eye[i] + eye[j]) - curvature(impl, z0, eye[i] - eye[j])) / 4
    return F


@pytest.mark.parametrize("inner_steps", [1, 2])
def test_fisher_vector_product_is_the_kl_hessian_through_the_inner_steps(inner_steps):
    learner = trpo_learner(inner_steps, cg_damping=0.0)
    impl = learner._impl
    impl.trpo_prepare(0, 2)
    z0 = z_of(learner)
    assert impl.trpo_surrogate_and_kl(z0)[1] == 0.0  # the adapted policies of z0 are the old ones
    rng = np.random.default_rng(0)
    for _ in range(4):
        u, v = rng.normal(size=(2, z0.size))
        expected = (curvature(impl, z0, u + v) - curvature(impl, z0, u - v)) / 4
        assert u @ impl.trpo_fisher_product(v) == pytest.approx(expected, rel=2e-5)
    # alpha is part of the search: the KL moves with it, and the product sees it.
    alpha_only = np.concatenate([np.zeros(z0.size // 2), rng.normal(size=z0.size // 2)])
    assert alpha_only @ impl.trpo_fisher_product(alpha_only) == pytest.approx(curvature(impl, z0, alpha_only), rel=2e-5)
    assert curvature(impl, z0, alpha_only) > 0


def test_first_order_fisher_product_is_symmetric_and_equals_the_exact_one_on_alpha():
    """first_order drops H_j from J. The product stays J^T F J: symmetric and positive
    semi-definite; with one inner step alpha enters theta_1 without H (d theta_1 / d alpha =
    -grad L_0), so its alpha-alpha block equals the exact product's (checked above against
    finite differences)."""
    exact, first = trpo_learner(cg_damping=0.0), trpo_learner(cg_damping=0.0, first_order=True)
    exact._impl.trpo_prepare(0, 2)
    first._impl.trpo_prepare(0, 2)
    q = exact.theta.size
    rng = np.random.default_rng(1)
    u, v = rng.normal(size=(2, 2 * q))
    fu, fv = first._impl.trpo_fisher_product(u), first._impl.trpo_fisher_product(v)
    assert u @ fv == pytest.approx(v @ fu, rel=1e-10)
    assert v @ fv > 0
    alpha_u, alpha_v = u.copy(), v.copy()
    alpha_u[:q] = alpha_v[:q] = 0
    assert alpha_u @ first._impl.trpo_fisher_product(alpha_v) == pytest.approx(
        alpha_u @ exact._impl.trpo_fisher_product(alpha_v), rel=1e-12)
    assert not np.allclose(fv, exact._impl.trpo_fisher_product(v))  # the H terms matter elsewhere


def test_search_direction_solves_the_damped_fisher_system_from_finite_differences():
    damping = 0.1
    learner = trpo_learner(cg_iterations=200, cg_damping=damping)
    impl = learner._impl
    score, g = impl.trpo_prepare(0, 2)
    z0 = z_of(learner)
    F = fisher_by_differences(impl, z0)
    np.testing.assert_allclose(F, F.T, rtol=0, atol=1e-12)
    product = np.stack([impl.trpo_fisher_product(e) for e in np.eye(z0.size)], axis=1)  # (F + damping I) e_j
    np.testing.assert_allclose(product, F + damping * np.eye(z0.size), rtol=1e-4, atol=1e-6 * np.abs(F).max())
    x = impl.trpo_direction()
    expected = np.linalg.solve(F + damping * np.eye(z0.size), g)
    np.testing.assert_allclose(x, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    # The meta-gradient is the TRPO surrogate's gradient at z0, by central differences.
    surrogate = lambda z: impl.trpo_surrogate_and_kl(z)[0]  # noqa: E731
    for i in range(0, z0.size, 5):
        e = np.eye(z0.size)[i]
        assert (surrogate(z0 + 1e-6 * e) - surrogate(z0 - 1e-6 * e)) / 2e-6 == pytest.approx(g[i], rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("max_kl,tolerance", [(1e-4, 0.1), (1e-6, 0.01)])
def test_the_full_step_reaches_the_trust_region_and_the_line_search_keeps_it(max_kl, tolerance):
    """The full step sqrt(2 max_kl / x^T (F + d I) x) x has the mean KL its quadratic model
    predicts, max_kl x^T F x / x^T (F + d I) x, ever closer as the region shrinks; the line
    search then takes a step that lowers the surrogate within the region."""
    learner = trpo_learner(max_kl=max_kl)  # MAML's cg_iterations and cg_damping
    impl = learner._impl
    impl.trpo_prepare(0, 2)
    z0 = z_of(learner)
    x = impl.trpo_direction()
    damped = x @ impl.trpo_fisher_product(x)
    full = z0 - np.sqrt(2 * max_kl / damped) * x
    before, _ = impl.trpo_surrogate_and_kl(z0)
    surrogate, kl = impl.trpo_surrogate_and_kl(full)
    assert kl == pytest.approx(max_kl * (damped - 1e-5 * x @ x) / damped, rel=tolerance)
    assert surrogate < before
    assert impl.trpo_line_search()
    after, kl_taken = impl.trpo_surrogate_and_kl(z_of(learner))
    assert after < before and kl_taken <= max_kl
    assert not np.array_equal(z_of(learner), z0)


@pytest.mark.parametrize("before,surrogate,kl,max_kl,accepted", [
    (0.0, -1.0, 0.005, 0.01, True),      # better, inside the region
    (0.0, -1.0, 0.01, 0.01, True),       # on its boundary
    (0.0, -1.0, 0.0100001, 0.01, False),  # outside
    (0.0, 0.0, 0.001, 0.01, False),      # no improvement
    (0.0, 1.0, 0.001, 0.01, False),      # worse
    (0.0, float("nan"), 0.001, 0.01, False),
    (0.0, -1.0, float("nan"), 0.01, False),
    (0.0, float("-inf"), 0.001, 0.01, False),
])
def test_line_search_acceptance_rule(before, surrogate, kl, max_kl, accepted):
    assert _core.trpo_step_accepted(before, surrogate, kl, max_kl) is accepted


def test_learner_rejects_every_step_beyond_a_tiny_trust_region():
    learner = trpo_learner(max_kl=1e-300, line_search_steps=3)
    z0 = z_of(learner)
    learner.fit(iterations=2, meta_batch=2, progress=False)
    np.testing.assert_array_equal(z_of(learner), z0)  # every step rejected: nothing moved
    assert learner.iteration == 2


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_trpo_bits_at_any_thread_count_after_a_resume_and_a_save(dtype, tmp_path):
    runs = {}
    for threads in (1, 2):
        learner = trpo_learner(threads=threads, dtype=dtype)
        runs[threads] = (learner.fit(iterations=3, meta_batch=3, progress=False), z_of(learner))
    np.testing.assert_array_equal(runs[1][0], runs[2][0])
    np.testing.assert_array_equal(runs[1][1], runs[2][1])
    assert not np.array_equal(runs[1][1], z_of(trpo_learner(dtype=dtype)))  # it moved
    resumed = trpo_learner(dtype=dtype)
    first = resumed.fit(iterations=1, meta_batch=3, progress=False)
    resumed.save(tmp_path / "trpo.npz")
    loaded = mf.load(tmp_path / "trpo.npz")
    assert loaded.meta_optimizer == "trpo"
    assert all(getattr(loaded, name) == getattr(resumed, name) for name in TRPO_OPTIONS)
    rest = loaded.fit(iterations=2, meta_batch=3, progress=False)
    np.testing.assert_array_equal(np.concatenate([first, rest]), runs[1][0])
    np.testing.assert_array_equal(z_of(loaded), runs[1][1])


def test_trpo_learns_on_2d_navigation():
    learner = mf.rl.MetaSGDRL(mf.MLP([2, 16, 16, 2], activation="relu"), meta_optimizer="trpo", seed=0,
                              inner_trajectories=10, num_threads=2)
    history = learner.fit(iterations=8, meta_batch=6, progress=False)
    assert history[-3:].mean() > history[:2].mean() + 10  # returns are minus distances summed over 100 steps


def test_trpo_options_are_checked():
    model = mf.MLP([2, 4, 2])
    for options, message in [
        (dict(meta_optimizer="newton"), "meta_optimizer must be 'adam', 'sgd' or 'trpo', got 'newton'"),
        (dict(max_kl=0.0), r"max_kl must be a finite number > 0, got 0"),
        (dict(cg_iterations=0), r"cg_iterations must lie in \[1, 1000\], got 0"),
        (dict(cg_damping=-1.0), r"cg_damping must lie in \[0, 1e\+06\], got -1"),
        (dict(line_search_steps=0), r"line_search_steps must lie in \[1, 1000\], got 0"),
        (dict(line_search_ratio=1.5), r"line_search_ratio must lie in \(0, 1\], got 1.5"),
    ]:
        with pytest.raises(ValueError, match=message):
            mf.rl.MetaSGDRL(model, **{"meta_optimizer": "trpo", **options})
    with pytest.raises(TypeError, match="max_kl"):
        mf.rl.MetaSGDRL(model, meta_optimizer="trpo", max_kl="small")
    with pytest.raises(ValueError, match="meta_optimizer='trpo' needs the native Navigation2D tasks, not GymTasks"):
        mf.rl.MetaSGDRL(mf.MLP([1, 1]), env=mf.rl.GymTasks(lambda rng: None, horizon=5), meta_optimizer="trpo")
    learner = mf.rl.MetaSGDRL(model, meta_optimizer="trpo")
    with pytest.raises(ValueError, match="call trpo_prepare first"):
        learner._impl.trpo_direction()
    with pytest.raises(ValueError, match="trpo_prepare needs meta_optimizer='trpo'"):
        mf.rl.MetaSGDRL(model)._impl.trpo_prepare(0, 2)


def test_trpo_from_the_command_line(tmp_path, capsys):
    from metafast.cli import main

    model = tmp_path / "trpo.npz"
    assert main(["train", "metasgd-rl", "--meta-optimizer", "trpo", "--iterations", "2", "--meta-batch", "2",
                 "--trajectories", "4", "--quiet", "--threads", "1", "--save", str(model)]) == 0
    assert mf.load(model).meta_optimizer == "trpo"
    assert main(["train", "metasgd", "--meta-optimizer", "trpo", "--iterations", "2", "--quiet",
                 "--save", str(tmp_path / "no.npz")]) == 2
    assert "meta_optimizer must be 'sgd' or 'adam', got 'trpo'" in capsys.readouterr().err


@pytest.mark.parametrize("optimizer", ["trpo", "adam", "sgd"])
def test_alpha_lr_zero_keeps_alpha_fixed_and_trpo_searches_theta_alone(optimizer):
    """MAML's protocol: a fixed inner step. alpha does not move, theta does; TRPO's gradient,
    Fisher products and direction have no alpha part."""
    learner = trpo_learner(alpha_lr=0.0) if optimizer == "trpo" else mf.rl.MetaSGDRL(
        mf.MLP([2, 4, 2], activation="tanh"), env=mf.rl.Navigation2D(horizon=8), inner_trajectories=5,
        alpha_init=0.05, meta_optimizer=optimizer, alpha_lr=0.0, dtype="float64", seed=3, num_threads=1)
    alpha, theta = learner.alpha, learner.theta
    learner.fit(iterations=2, meta_batch=2, progress=False)
    np.testing.assert_array_equal(learner.alpha, alpha)
    assert not np.array_equal(learner.theta, theta)
    if optimizer == "trpo":
        impl, q = learner._impl, theta.size
        _, g = impl.trpo_prepare(5, 2)
        assert np.all(g[q:] == 0) and np.any(g[:q] != 0)
        assert np.all(impl.trpo_fisher_product(np.ones(2 * q))[q:] == 0)
        assert np.all(impl.trpo_direction()[q:] == 0)
