"""The NumPy references themselves: the book port keeps the book's semantics, and its theta
update is the first-order Meta-SGD meta-gradient that metafast computes."""

from __future__ import annotations

import numpy as np
import pytest

import metafast as mf
from metafast import reference


def test_book_port_is_reproducible():
    a = reference.BookMetaSGD(seed=4).train(epochs=20)
    b = reference.BookMetaSGD(seed=4).train(epochs=20)
    assert a == b and len(a) == 20


def test_book_port_updates_alpha_with_thetas_meta_gradient():
    book = reference.BookMetaSGD(seed=0)
    theta0, alpha0 = book.theta.copy(), book.alpha.copy()
    book.train(epochs=30)
    assert not np.allclose(book.theta, theta0)
    np.testing.assert_allclose(book.alpha - alpha0, book.theta - theta0, rtol=1e-12, atol=1e-15)


def test_book_theta_step_is_first_order_meta_sgd():
    """Replays the book's random stream and compares one epoch with metafast's first-order
    meta-gradient on the same tasks."""
    book = reference.BookMetaSGD(rng=np.random.default_rng(7))
    theta0, alpha0 = book.theta[:, 0].copy(), book.alpha[:, 0].copy()
    book.train(epochs=1)

    replay = np.random.default_rng(7)
    replay.normal(size=50), replay.normal(size=50)  # theta and alpha
    train = [reference.book_sample_points(10, replay) for _ in range(2)]
    test = [reference.book_sample_points(10, replay) for _ in range(2)]
    batch = mf.TaskBatch(np.stack([x for x, _ in train]), np.stack([y for _, y in train]).astype(float),
                         np.stack([x for x, _ in test]), np.stack([y for _, y in test]).astype(float))
    learner = mf.MetaSGD(mf.MLP([50, 1], activation="identity", output="sigmoid", bias=False), loss="bce",
                         first_order=True, dtype="float64")
    learner.theta, learner.alpha = theta0, alpha0
    _, g_theta, _ = learner.meta_gradient(batch)
    np.testing.assert_allclose(book.theta[:, 0], theta0 - book.beta * g_theta, rtol=1e-12)


def test_reference_adapt_and_optimizers():
    model = mf.MLP([2, 3, 1], activation="tanh")
    theta = model.init(seed=0)
    alpha = np.full(model.num_params, 0.1)
    x, y = np.ones((4, 2)), np.zeros((4, 1))
    _, grad = model.loss_and_grad(theta, x, y)
    np.testing.assert_allclose(reference.adapt(model, theta, alpha, x, y, steps=1), theta - alpha * grad, rtol=1e-14)
    params, state = reference.adam_update(theta, grad, (np.zeros_like(theta), np.zeros_like(theta), 0), lr=0.01)
    np.testing.assert_allclose(np.abs(params - theta)[grad != 0], 0.01, rtol=1e-6)  # Adam's first step is lr * sign
    assert state[2] == 1
    np.testing.assert_allclose(reference.sgd_update(theta, grad, 0.5), theta - 0.5 * grad)
    with pytest.raises(ValueError):
        reference.adapt(model, theta, alpha, x, y, steps=-1)


@pytest.mark.parametrize("family", [mf.tasks.Sinusoid(support=7, query=3), mf.tasks.Sinusoid.book(),
                                    mf.tasks.GaussianNWay(ways=3, dim=3, support=2, query=1),
                                    mf.tasks.LinearBinary(dim=21, support=9, query=4)],
                         ids=["sinusoid", "sinusoid-book", "gaussian-nway", "linear-binary"])
def test_counter_rng_port_reproduces_native_sampling(family):
    """The Python port of the core's generator draws the same numbers, so a batch can be
    rebuilt in NumPy: Sinusoid draws A, phi, then x per row; GaussianNWay the centres, then
    the support rows' noise, then the query rows'; LinearBinary w, then the rows' x (32-bit
    uniforms, two per output: 189 support values leave half an output unused). Odd counts
    (9 centres, 21 weights) drop a sine."""
    seed, iteration = 2**63 + 5, 41
    batch = family.sample(2, seed=seed, iteration=iteration)
    for task in range(2):
        rng = reference.CounterRng(seed, iteration, task)
        if isinstance(family, mf.tasks.Sinusoid):
            amplitude = rng.uniform(*family.amplitude)
            phase = family.phase_sign * rng.uniform(*family.phase)
            low, high = family.x_range
            for x_array, y_array in ((batch.x_support, batch.y_support), (batch.x_query, batch.y_query)):
                for row in range(x_array.shape[1]):
                    if family.grid:
                        x = low + (high - low) * rng.below(family.grid) / (family.grid - 1)
                    else:
                        x = rng.uniform(low, high)
                    # To the last bit, but for fused multiply-adds in a native build.
                    assert x_array[task, row, 0] == pytest.approx(x, rel=1e-15, abs=1e-15)
                    assert y_array[task, row, 0] == pytest.approx(amplitude * np.sin(x + phase), rel=1e-14, abs=1e-13)
        elif isinstance(family, mf.tasks.GaussianNWay):
            centres = np.array(rng.fill_normal(family.ways * family.dim)).reshape(family.ways, family.dim)
            for x_array in (batch.x_support, batch.x_query):
                noise = np.array(rng.fill_normal(x_array.shape[1] * family.dim)).reshape(-1, family.dim)
                expected = centres[np.arange(x_array.shape[1]) % family.ways] + family.spread * noise
                # The core's polynomial log, sin and cos agree with the C library's to a few ulp.
                np.testing.assert_allclose(x_array[task], expected, rtol=1e-14, atol=1e-14)
        else:
            w = np.array(rng.fill_normal(family.dim))
            for x_array, y_array in ((batch.x_support, batch.y_support), (batch.x_query, batch.y_query)):
                x = np.array(rng.fill_uniform32(x_array.shape[1] * family.dim, -1.0, 1.0)).reshape(-1, family.dim)
                np.testing.assert_array_equal(x_array[task], x)  # exact: multiples of 2^-31
                np.testing.assert_array_equal(y_array[task, :, 0], (x @ w > 0).astype(float))


def test_fill_normal_polynomials_match_the_c_library_over_the_whole_range():
    """Many draws of the core's vectorised Box-Muller against the port's math.log, sin, cos,
    including the tails (u1 near 1 gives the largest radii) and all four quadrants."""
    family = mf.tasks.GaussianNWay(ways=2, dim=1000, support=1, query=1, spread=1.0)
    batch = family.sample(20, seed=9)
    for task in range(20):
        rng = reference.CounterRng(9, 0, task)
        centres = np.array(rng.fill_normal(2000)).reshape(2, 1000)
        np.testing.assert_allclose(batch.x_support[task] - centres, np.array(rng.fill_normal(2000)).reshape(2, 1000),
                                   rtol=1e-13, atol=4e-15)
    draws = (batch.x_support - batch.x_query).ravel() / np.sqrt(2)
    assert abs(draws.mean()) < 0.01 and abs(draws.std() - 1) < 0.01


def test_book_reptile_port_runs_the_books_network():
    book = reference.BookReptile(seed=3)
    losses = book.train(epochs=3)
    assert len(losses) == 3 and all(np.isfinite(losses))
    x = np.linspace(-5, 5, 100).reshape(-1, 1)
    assert np.abs(book.predict(x)).max() <= 1.0  # the book's tanh output caps predictions at ±1
    assert reference.BookReptile(seed=3).train(epochs=3) == losses


@pytest.mark.parametrize("x_range", [(-5.0, 5.0), (-1000.0, 1000.0)])
def test_sinusoid_polynomial_sine_matches_the_c_library(x_range):
    """Sinusoid evaluates its waves with a vectorised polynomial sine (range reduction by a
    two-part 2 pi): within a few ulp of numpy's sin, far from the origin too, every quadrant."""
    family = mf.tasks.Sinusoid(amplitude=(1.0, 1.0), phase=(0.0, 0.0), x_range=x_range, support=997, query=3)
    batch = family.sample(10, seed=4)
    np.testing.assert_allclose(batch.y_support, np.sin(batch.x_support), rtol=0, atol=1e-15)
