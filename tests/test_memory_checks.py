"""Allocations a user's arguments can make large are estimated first and refused with a
ValueError naming the request, before anything is allocated (fast, and in bounded memory)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

CASES = {
    "a learner of a huge model": "mf.MetaSGD(mf.MLP([1, 30000, 30000, 1]))",
    "a Reptile learner of a huge model": "mf.Reptile(mf.MLP([1, 40000, 40000, 1]))",
    "a network's pass over many rows": (
        "import numpy as np; model = mf.MLP([1, 200000, 1]); "
        "model.forward(model.init(dtype='float32'), np.zeros((100000, 1), np.float32))"),
    "a meta-batch of tasks with huge support sets": (
        "mf.MetaSGD(mf.MLP([1, 2000, 2000, 1])).fit(mf.tasks.Sinusoid(support=100000, query=10), iterations=1, "
        "meta_batch=25, progress=False)"),
    "RL rollouts of a huge horizon in fit": (
        "mf.rl.MetaSGDRL(mf.MLP([2, 100, 100, 2]), env=mf.rl.Navigation2D(horizon=10**7)).fit(iterations=1, "
        "progress=False)"),
    "an evaluation of many tasks at many step counts": (
        "mf.MetaSGD(mf.MLP([1, 8, 1])).evaluate(mf.tasks.Sinusoid(), num_tasks=10**6, steps=range(2**16))"),
    "RL rollouts of a huge horizon in evaluate": (
        "mf.rl.MetaSGDRL(mf.MLP([2, 100, 100, 2]), env=mf.rl.Navigation2D(horizon=10**7)).evaluate()"),
}

LIMITED = """
import os, resource
if "libasan" not in os.environ.get("LD_PRELOAD", ""):  # AddressSanitizer reserves terabytes of address space
    resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))  # a regression fails here, not the machine
import metafast as mf
try:
    {call}
except ValueError as error:
    print("ValueError:", error)
"""


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_request_beyond_the_memory_is_refused_before_allocating(case):
    code = textwrap.dedent(LIMITED.format(call=CASES[case]))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ValueError:") and "GiB" in done.stdout, done.stdout
