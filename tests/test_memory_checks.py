"""Allocations a user's arguments can make large are estimated first and refused with a
ValueError naming the request, before anything is allocated (fast, and in bounded memory)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import metafast as mf

CASES = {
    "a learner of a huge model": "mf.MetaSGD(mf.MLP([1, 30000, 30000, 1]))",
    "a Reptile learner of a huge model": "mf.Reptile(mf.MLP([1, 40000, 40000, 1]))",
    "a network's pass over many rows": (
        "import numpy as np; model = mf.MLP([1, 200000, 1]); "
        "model.forward(model.init(dtype='float32'), np.zeros((100000, 1), np.float32))"),
    "a ConvNet's pass over one row": (
        "import numpy as np; net = mf.ConvNet((1, 512, 512), channels=(2**16,), stride=1); "
        "net.forward(np.zeros(net.num_params, np.float32), np.zeros((1, 1, 512, 512), np.float32))"),
    "a meta-batch of tasks with huge support sets": (
        "mf.MetaSGD(mf.MLP([1, 2000, 2000, 1])).fit(mf.tasks.Sinusoid(support=100000, query=10), iterations=1, "
        "meta_batch=25, progress=False)"),
    "RL rollouts of a huge horizon in fit": (
        "mf.rl.MetaSGDRL(mf.MLP([2, 100, 100, 2]), env=mf.rl.Navigation2D(horizon=10**7)).fit(iterations=1, "
        "progress=False)"),
    "an evaluation of many tasks at many step counts": (
        "mf.MetaSGD(mf.MLP([1, 8, 1])).evaluate(mf.tasks.Sinusoid(), num_tasks=10**6, steps=range(2**16))"),
    "an RL evaluation of many tasks at many step counts": (
        "mf.rl.MetaSGDRL(mf.MLP([2, 4, 2])).evaluate(num_tasks=2**24, steps=range(2**16))"),
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


def supervised_case(learner, family, alpha_vectors):
    def run():
        learner.fit(family, iterations=2, meta_batch=4, progress=False)
        learner.evaluate(family, num_tasks=3, steps=[0, 1, 2])
        return learner._impl.bytes_needed(4, family._impl)
    return learner, run, alpha_vectors


def rl_case(**options):
    learner = mf.rl.MetaSGDRL(mf.MLP([2, 8, 2]), env=mf.rl.Navigation2D(horizon=12), inner_trajectories=4,
                              inner_steps=2, num_threads=2, **options)

    def run():
        learner.fit(iterations=2, meta_batch=3, progress=False)
        learner.evaluate(num_tasks=2, trajectories=6, steps=[0, 1])
        return learner._impl.bytes_needed(3, 6)
    return learner, run, 1


ESTIMATED = {
    "metasgd": lambda: supervised_case(mf.MetaSGD(mf.MLP([1, 16, 16, 1]), inner_steps=2, alpha_per_step=True,
                                                  num_threads=2), mf.tasks.Sinusoid(support=5, query=7), 2),
    "maml-float64": lambda: supervised_case(mf.MAML(mf.MLP([1, 16, 1]), dtype="float64", num_threads=2),
                                            mf.tasks.Sinusoid(support=9, query=3), 0),
    "reptile": lambda: supervised_case(mf.Reptile(mf.MLP([3, 16, 3]), loss="softmax_ce", shuffle=True,
                                                  reset_optimizer=False, inner_optimizer="adam", inner_batch=4,
                                                  num_threads=2), mf.tasks.GaussianNWay(ways=3, dim=3), 0),
    "metasgd-convnet": lambda: supervised_case(
        mf.MetaSGD(mf.ConvNet((2, 7, 5), channels=(3, 2), outputs=3, stride=1, pool="max"), loss="softmax_ce",
                   inner_steps=2, alpha_per_step=True, num_threads=2),
        mf.tasks.Classification(np.random.default_rng(0).normal(size=(60, 2, 7, 5)), np.arange(60) % 4, ways=3,
                                shots=2, query=3), 2),
    "reptile-convnet": lambda: supervised_case(
        mf.Reptile(mf.ConvNet((2, 7, 5), channels=(4,), outputs=3, head="flatten"), loss="softmax_ce",
                   inner_batch=4, shuffle=True, reset_optimizer=False, inner_optimizer="adam", dtype="float64",
                   num_threads=2),
        mf.tasks.Classification(np.random.default_rng(0).normal(size=(60, 2, 7, 5)), np.arange(60) % 4, ways=3,
                                shots=2, query=3), 0),
    "rl": rl_case,
    "rl-trpo": lambda: rl_case(meta_optimizer="trpo"),  # every task's adaptation kept between the passes
}


@pytest.mark.parametrize("case", sorted(ESTIMATED))
def test_the_cores_estimates_cover_what_it_allocates(case):
    """The memory checks' estimates are the core's own sizes: a learner's buffers after training
    and evaluation hold no more than its lifetime estimate and its run's, and not far less."""
    learner, run, alpha_vectors = ESTIMATED[case]()
    needed = run()
    theta = learner.theta.size
    estimate = learner._learner_bytes(theta, alpha_vectors, learner.dtype) + needed
    allocated = learner._impl.allocated_bytes()
    assert allocated <= estimate < 3 * allocated + 200_000  # + Adam's kept steps, counted in full
