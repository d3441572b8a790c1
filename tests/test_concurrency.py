"""One learner used from several threads, and Ctrl-C in its long calls: every call runs whole
or not at all, snapshots show one iteration's state, and long calls stop within a second."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import metafast as mf

FAMILY = mf.tasks.Sinusoid()


def sine_learner(**settings):
    return mf.MetaSGD(mf.MLP([1, 16, 16, 1]), seed=5, num_threads=1, **settings)


def test_concurrent_fits_each_run_exactly_their_iterations():
    learner = sine_learner()
    histories = []
    threads = [threading.Thread(target=lambda: histories.append(
        learner.fit(FAMILY, iterations=150, meta_batch=4, progress=False))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [len(h) for h in histories] == [150, 150]
    assert learner.iteration == 300 and len(learner.history) == 300
    alone = sine_learner()
    alone.fit(FAMILY, iterations=300, meta_batch=4, progress=False)
    np.testing.assert_array_equal(learner.theta, alone.theta)  # one after the other, as one fit of 300


def test_a_save_during_fit_holds_one_iterations_state(tmp_path):
    learner, path = sine_learner(), tmp_path / "snapshot.npz"
    training = threading.Thread(target=lambda: learner.fit(FAMILY, iterations=40_000, meta_batch=4, progress=False))
    training.start()
    while learner.iteration == 0:
        time.sleep(0.001)
    learner.save(path)  # mid-training
    training.join()
    snapshot = mf.load(path)
    assert 0 < snapshot.iteration < 40_000
    reference = sine_learner()
    reference.fit(FAMILY, iterations=snapshot.iteration, meta_batch=4, progress=False)
    np.testing.assert_array_equal(snapshot.theta, reference.theta)
    np.testing.assert_array_equal(snapshot.alpha, reference.alpha)
    np.testing.assert_array_equal(snapshot.history, reference.history)
    assert snapshot._impl.get_optimizer_state()[2] == snapshot.iteration


def test_ctrl_c_during_meta_steps_leaves_whole_steps():
    learner, batch = sine_learner(), FAMILY.sample(8, seed=3, dtype="float32")
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        for _ in range(10**6):
            learner.meta_step(batch)
    timer.join()
    reference = sine_learner()
    for _ in range(learner.iteration):
        reference.meta_step(batch)
    assert learner.iteration == len(learner.history) > 0
    np.testing.assert_array_equal(learner.theta, reference.theta)  # updates and records match


EVALUATE_FOREVER = """
import metafast as mf
learner = mf.{learner}
print("ready", flush=True)
try:
    {call}
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""

CALLS = {
    "evaluate": ("MetaSGD(mf.MLP([1, 40, 40, 1]))", "learner.evaluate(mf.tasks.Sinusoid(), num_tasks=64, steps=(2**24,))"),
    "adapt": ("Reptile(mf.MLP([1, 40, 1]))", "learner.adapt([[0.0]] * 10, [[1.0]] * 10, steps=2**24)"),
    "rl-evaluate": ("rl.MetaSGDRL(mf.MLP([2, 16, 2]))", "learner.evaluate(num_tasks=4, steps=(2**20,))"),
}


def interrupt(command: list[str], after: float) -> tuple[int, str, str]:
    """Runs ``command``, sends it SIGINT ``after`` seconds past its "ready" line (or its start,
    when it prints none), and returns (exit status, stdout, stderr); it must end within a
    second of the signal."""
    # SIGINT at its default in the child, whatever this process inherited: a suite started in
    # the background of a non-interactive shell ignores SIGINT, and so would its children.
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        if command[1] == "-c":
            assert child.stdout.readline().strip() == "ready"
        time.sleep(after)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        status = child.wait(timeout=20)
        assert time.monotonic() - sent < 1.0
        return status, child.stdout.read().strip(), child.stderr.read()
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
        child.stderr.close()


@pytest.mark.parametrize("call", sorted(CALLS))
def test_ctrl_c_stops_a_long_call_within_a_second(call):
    learner, code = CALLS[call]
    command = [sys.executable, "-c", EVALUATE_FOREVER.format(learner=learner, call=code)]
    assert interrupt(command, after=0.5)[:2] == (0, "interrupted")  # 0.5 s: well into the call


def test_ctrl_c_stops_the_command_line_evaluate_within_a_second(tmp_path):
    model, learner = tmp_path / "m.npz", mf.MetaSGD(mf.MLP([1, 40, 40, 1]))
    learner.fit(FAMILY, iterations=1, meta_batch=2, progress=False)  # a model file that records its tasks
    learner.save(model)
    command = [sys.executable, "-m", "metafast", "evaluate", str(model), "--tasks", "64", "--steps", str(2**24)]
    status, _, errors = interrupt(command, after=1.5)  # past the start-up, into the evaluation
    assert status == 130 and "interrupted" in errors


LONG_FIT = """
import metafast as mf
learner = mf.rl.MetaSGDRL(mf.MLP([2, 64, 64, 2]), env=mf.rl.Navigation2D(horizon=5_000, tolerance=0.0),
                          inner_trajectories=20, num_threads=1)
print("ready", flush=True)
try:
    learner.fit(iterations=1000, meta_batch=32, progress=False)
except KeyboardInterrupt:
    print("interrupted", learner.iteration == len(learner.history), flush=True)
"""


def test_ctrl_c_stops_a_fit_whose_meta_iterations_take_seconds_within_a_second():
    # 1 s: inside the first meta-iteration, about 10 s long
    assert interrupt([sys.executable, "-c", LONG_FIT], after=1.0)[:2] == (0, "interrupted True")
