"""Ctrl-C during fit: stops quickly, leaves the learner consistent, and training can go on."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import metafast as mf

    learner = mf.MetaSGD(mf.MLP([1, 40, 40, 1]), seed=1)
    print("ready", flush=True)
    try:
        learner.fit(mf.tasks.Sinusoid(), iterations=10**9, meta_batch=25, progress=False)
    except KeyboardInterrupt:
        stopped = time.time()
        assert learner.iteration == len(learner.history) > 0
        # The parameters are those of the last recorded iteration: replaying gives the same.
        replay = mf.MetaSGD(mf.MLP([1, 40, 40, 1]), seed=1)
        replay.fit(mf.tasks.Sinusoid(), iterations=learner.iteration, meta_batch=25, progress=False)
        assert np.array_equal(replay.theta, learner.theta)
        learner.fit(mf.tasks.Sinusoid(), iterations=3, meta_batch=25, progress=False)
        print("interrupted", stopped, flush=True)
        sys.exit(0)
    sys.exit(1)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigint_stops_fit_cleanly():
    process = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    time.sleep(1.0)
    sent = time.time()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    word, stopped = out.split()
    assert word == "interrupted"
    assert float(stopped) - sent < 0.5  # chunks last about a tenth of a second
