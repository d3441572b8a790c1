"""Thread teams that follow the machine: a call's team shrinks to the cores other processes
leave free, and results never depend on it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np

import metafast as mf
from metafast import _core

CORES = os.cpu_count() or 1


def test_free_cores_lie_between_none_and_all():
    assert 0.0 <= _core.free_cores() <= CORES


def test_free_cores_drop_when_every_core_is_busy():
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(CORES)]
    try:
        time.sleep(0.35)  # past a sampling window of the load
        readings = []
        for _ in range(3):
            time.sleep(0.12)
            readings.append(_core.free_cores())
    finally:
        for process in busy:
            process.kill()
            process.wait()
    assert min(readings) < 1.0, readings


ADAPTIVE_RUN = """
import numpy as np, metafast as mf
def run(threads):
    learner = mf.MetaSGD(mf.MLP([1, 16, 1]), seed=4, num_threads=threads)
    learner.fit(mf.tasks.Sinusoid(), iterations=40, meta_batch=6, progress=False)
    batch = mf.tasks.Sinusoid().sample(6, seed=9, dtype="float32")
    return np.concatenate([learner.theta, learner.alpha, learner.history, learner.meta_gradient(batch)[1]])
reference = run(1)
for threads in (2, 5, None):
    assert np.array_equal(run(threads), reference), threads
print("same")
"""


def test_adaptive_teams_give_the_bits_of_one_thread():
    environment = dict(os.environ, METAFAST_TEAMS="auto")
    result = subprocess.run([sys.executable, "-c", ADAPTIVE_RUN], env=environment, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "same"
