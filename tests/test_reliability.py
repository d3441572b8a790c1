"""Reliability: exact resume from checkpoints in a new process, skipping diverged batches,
learners trained from several Python threads at once, and no memory growth in long runs."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import metafast as mf
from metafast.tasks import Sinusoid


def sine_learner(**kwargs):
    settings = {"meta_lr": 1e-3, "seed": 3, "alpha_init": (0.005, 0.02), **kwargs}
    return mf.MetaSGD(mf.MLP([1, 16, 16, 1]), **settings)


@pytest.mark.parametrize("kind", ["metasgd", "reptile"])
def test_checkpoint_resume_in_a_new_process_is_bit_identical(tmp_path, kind):
    make = (lambda: sine_learner()) if kind == "metasgd" else (
        lambda: mf.Reptile(mf.MLP([1, 16, 1], activation="tanh"), reset_optimizer=False, shuffle=True, seed=2))
    straight = make()
    straight.fit(Sinusoid(), iterations=20, meta_batch=4, progress=False)
    checkpoint, resumed_path = tmp_path / "checkpoint.npz", tmp_path / "resumed.npz"
    first = make()
    first.fit(Sinusoid(), iterations=10, meta_batch=4, progress=False, checkpoint=checkpoint, checkpoint_every=5)
    assert mf.load(checkpoint).iteration == 10
    script = (f"import metafast as mf; l = mf.load({str(checkpoint)!r}); "
              f"l.fit(l.tasks, iterations=10, meta_batch=4, progress=False); l.save({str(resumed_path)!r})")
    subprocess.run([sys.executable, "-c", script], check=True)
    resumed = mf.load(resumed_path)
    np.testing.assert_array_equal(resumed.theta, straight.theta)
    np.testing.assert_array_equal(resumed.history, straight.history)
    for a, b in zip(resumed._impl.get_optimizer_state(), straight._impl.get_optimizer_state()):
        np.testing.assert_array_equal(a, b)
    if kind == "metasgd":
        np.testing.assert_array_equal(resumed.alpha, straight.alpha)


def test_checkpoint_every_needs_a_path():
    with pytest.raises(ValueError, match="checkpoint_every needs a checkpoint path"):
        sine_learner().fit(Sinusoid(), iterations=2, checkpoint_every=1, progress=False)
    with pytest.raises(ValueError, match="on_divergence must be 'raise' or 'skip'"):
        sine_learner().fit(Sinusoid(), iterations=2, on_divergence="ignore", progress=False)


def test_skip_a_diverged_batch_and_go_on():
    family = Sinusoid()

    def sampler(num_tasks, rng):
        batch = family.sample(num_tasks, seed=int(rng.integers(1 << 30)))
        if sampler.calls == 2:  # a batch whose squared errors overflow float32
            batch = mf.TaskBatch(batch.x_support, batch.y_support * 1e30, batch.x_query, batch.y_query * 1e30)
        sampler.calls += 1
        return batch

    sampler.calls = 0
    learner = sine_learner()
    history = learner.fit(sampler, iterations=5, meta_batch=3, progress=False, on_divergence="skip")
    assert learner.iteration == 5 and np.isnan(history[2])
    assert np.all(np.isfinite(np.delete(history, 2))) and np.all(np.isfinite(learner.theta))


def test_learners_in_two_python_threads_match_learners_trained_alone():
    alone = [sine_learner(seed=s, num_threads=1) for s in (1, 2)]
    for learner in alone:
        learner.fit(Sinusoid(), iterations=40, meta_batch=5, progress=False)
    together = [sine_learner(seed=s, num_threads=1) for s in (1, 2)]
    threads = [threading.Thread(target=l.fit, args=(Sinusoid(),), kwargs=dict(iterations=40, meta_batch=5, progress=False))
               for l in together]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for a, b in zip(alone, together):
        np.testing.assert_array_equal(a.theta, b.theta)
        np.testing.assert_array_equal(a.history, b.history)


def resident_megabytes() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 2**20


def running_under_address_sanitizer() -> bool:
    maps = Path("/proc/self/maps")
    return maps.exists() and "libasan" in maps.read_text()


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc")
@pytest.mark.skipif(running_under_address_sanitizer(),
                    reason="AddressSanitizer's quarantine keeps freed memory resident, so RSS measures nothing here")
def test_repeated_fit_evaluate_save_load_do_not_grow_memory(tmp_path):
    def cycle():
        learner = sine_learner()
        learner.fit(Sinusoid(), iterations=5, meta_batch=8, progress=False)
        learner.evaluate(Sinusoid(), num_tasks=50, steps=(0, 1))
        learner.save(tmp_path / "m.npz")
        mf.load(tmp_path / "m.npz").fit(Sinusoid(), iterations=2, meta_batch=8, progress=False)

    for _ in range(20):  # warm up allocators and caches
        cycle()
    before = resident_megabytes()
    for _ in range(150):
        cycle()
    assert resident_megabytes() - before < 15


def overflowing_batch(target):
    """A batch whose support targets make the meta-gradient finite but its square, in Adam's
    second moment, overflow."""
    ones = np.ones((1, 3, 1))
    return mf.TaskBatch(ones, np.full((1, 3, 1), target), ones, ones)


OVERFLOWS = {
    "metasgd-float32": (lambda: mf.MetaSGD(mf.MLP([1, 4, 4, 1], activation="tanh"), num_threads=1), 1e19),
    "metasgd-float64": (lambda: mf.MetaSGD(mf.MLP([1, 4, 4, 1], activation="tanh"), num_threads=1, dtype="float64"),
                        1e100),
    "maml-float32": (lambda: mf.MAML(mf.MLP([1, 4, 4, 1], activation="tanh"), num_threads=1), 1e19),
    "reptile-carried-adam": (lambda: mf.Reptile(mf.MLP([1, 4, 4, 1], activation="tanh"), reset_optimizer=False,
                                                inner_optimizer="adam", num_threads=1), 1e20),
    # log_std -25: the policy gradient is about 1e23, finite in float32, its square is not
    "rl": (lambda: mf.rl.MetaSGDRL(mf.MLP([2, 8, 2]), log_std_init=-25.0, alpha_init=0.0, inner_trajectories=4,
                                   num_threads=1), None),
}


def learner_state(learner):
    m, v, step = learner._impl.get_optimizer_state()
    return [*learner._params().values(), m, v, np.array(step), np.array(learner.iteration)]


@pytest.mark.parametrize("case", sorted(OVERFLOWS))
def test_an_update_whose_optimizer_state_overflows_is_refused(tmp_path, case):
    make, target = OVERFLOWS[case]
    learner = make()
    before = learner_state(learner)
    if target is None:
        step = lambda: learner.fit(iterations=1, meta_batch=2, progress=False)  # noqa: E731
        skip = lambda: learner.fit(iterations=1, meta_batch=2, progress=False, on_divergence="skip")  # noqa: E731
    else:
        step = lambda: learner.meta_step(overflowing_batch(target))  # noqa: E731
        skip = lambda: learner.fit(overflowing_batch(target), iterations=1, meta_batch=1, progress=False,  # noqa: E731
                                   on_divergence="skip")
    with pytest.raises(mf.TrainingDivergedError):
        step()
    after = learner_state(learner)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert np.isnan(skip()).all()  # skipped: no update, the state still the one before
    assert all(np.array_equal(a, b) for a, b in zip(before[:-1], learner_state(learner)[:-1]))
    learner.save(tmp_path / "learner.npz")  # what is kept loads
    assert np.isfinite(mf.load(tmp_path / "learner.npz")._impl.get_optimizer_state()[1]).all()
