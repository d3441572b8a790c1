"""What tests/test_distributed.py runs under mpiexec: one scenario per call, each process
writing its results, one per line, to RANK.txt in the folder METAFAST_TEST_OUT names."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from mpi4py import MPI

import metafast as mf
import metafast.distributed

# Several machines simulated on this one: its processes dealt round-robin to this many.
metafast.distributed._SIMULATED_MACHINES = int(os.environ.get("METAFAST_TEST_MACHINES", "0"))

COMM = MPI.COMM_WORLD
RANK = COMM.Get_rank()


def sine_metasgd(**settings):
    return mf.MetaSGD(mf.MLP([1, 12, 1]), seed=3, num_threads=1, **settings)


def sine_reptile(**settings):
    return mf.Reptile(mf.MLP([1, 12, 1]), seed=3, num_threads=1, inner_epochs=2, epsilon_final=0.0, **settings)


def rl_learner(**settings):
    return mf.rl.MetaSGDRL(mf.MLP([2, 8, 2]), inner_trajectories=4, seed=3, num_threads=2, **settings)


def family_fit(meta_batch, iterations=12):
    return lambda learner, comm: learner.fit(mf.tasks.Sinusoid(), iterations=iterations, meta_batch=meta_batch,
                                             progress=False, comm=comm)


def sampler(num_tasks, rng):
    return mf.tasks.Sinusoid(support=4, query=4).sample(num_tasks, seed=int(rng.integers(2**31)), dtype="float32")


def digits_like_family():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 7)
    return mf.tasks.Classification(rng.normal(size=(labels.size, 3)), labels, ways=3, shots=2, query=2)


def image_family():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 7)
    return mf.tasks.Classification(rng.normal(size=(labels.size, 1, 6, 6)), labels, ways=3, shots=2, query=2)


def small_convnet():
    return mf.ConvNet((1, 6, 6), channels=(3,), outputs=3, stride=1, pool="max")


CASES = {
    "metasgd, uneven shares": (sine_metasgd, family_fit(5)),
    "metasgd, fewer tasks than processes": (sine_metasgd, family_fit(2)),
    "metasgd, second order through 2 steps": (lambda: sine_metasgd(inner_steps=2), family_fit(4)),
    "metasgd on a sampler": (sine_metasgd, lambda l, comm: l.fit(sampler, iterations=6, meta_batch=4, progress=False,
                                                                  comm=comm)),
    "maml, clipped": (
        lambda: mf.MAML(mf.MLP([1, 12, 1]), inner_steps=2, clip_grad_norm=0.1, seed=3, num_threads=1),
        family_fit(5)),
    "metasgd on a data-set family": (
        lambda: mf.MetaSGD(mf.MLP([3, 6, 3]), loss="softmax_ce", seed=3, num_threads=1),
        lambda l, comm: l.fit(digits_like_family(), iterations=5, meta_batch=5, progress=False, comm=comm)),
    "metasgd on a ConvNet, image family": (
        lambda: mf.MetaSGD(small_convnet(), loss="softmax_ce", inner_steps=2, seed=3, num_threads=1),
        lambda l, comm: l.fit(image_family(), iterations=5, meta_batch=5, progress=False, comm=comm)),
    "reptile on a ConvNet, image family": (
        lambda: mf.Reptile(small_convnet(), loss="softmax_ce", inner_epochs=2, inner_batch=4, seed=3, num_threads=1),
        lambda l, comm: l.fit(image_family(), iterations=5, meta_batch=5, progress=False, comm=comm)),
    "reptile on a task pool": (
        sine_reptile,
        lambda l, comm: l.fit(mf.tasks.Sinusoid().sample(7, seed=1), iterations=5, meta_batch=4, progress=False,
                              comm=comm)),
    "reptile, annealed epsilon": (sine_reptile, family_fit(5)),
    "reptile on a sampler": (sine_reptile, lambda l, comm: l.fit(sampler, iterations=4, meta_batch=4, progress=False,
                                                                  comm=comm)),
    "reptile, fewer tasks than processes": (sine_reptile, family_fit(1)),
    "metasgd-rl": (rl_learner, lambda l, comm: l.fit(iterations=3, meta_batch=3, progress=False, comm=comm)),
    "metasgd-rl, trpo": (lambda: rl_learner(meta_optimizer="trpo"),
                         lambda l, comm: l.fit(iterations=3, meta_batch=5, progress=False, comm=comm)),
    "metasgd-rl, trpo, alpha fixed, 2 steps, fewer tasks than processes": (
        lambda: rl_learner(meta_optimizer="trpo", alpha_lr=0.0, inner_steps=2),
        lambda l, comm: l.fit(iterations=2, meta_batch=2, progress=False, comm=comm)),
}


def same_state(a, b) -> bool:
    first, second = a._state(), b._state()
    return first.keys() == second.keys() and all(np.array_equal(first[k], second[k], equal_nan=True) for k in first)


def report(result: str) -> None:
    with open(Path(os.environ["METAFAST_TEST_OUT"]) / f"{RANK}.txt", "a") as out:
        out.write(result + "\n")


def bits(threads: str = "1") -> None:
    """Each case over the processes with `threads` threads each, against one process of one."""
    for name, (make, fit) in CASES.items():
        spread, alone = make(), make()
        spread.num_threads, alone.num_threads = int(threads), 1
        fit(spread, COMM)
        fit(alone, None)
        report(f"{name}: {'same' if same_state(spread, alone) else 'DIFFERENT'}")


def oversubscribed() -> None:
    """A long fit of short meta-iterations, with more processes than cores."""
    spread, alone = sine_metasgd(), sine_metasgd()
    fit = family_fit(25, iterations=3000)
    fit(spread, COMM)
    fit(alone, None)
    report("same" if same_state(spread, alone) else "DIFFERENT")


def resume_start(path: str) -> None:
    learner = sine_metasgd()
    learner.fit(mf.tasks.Sinusoid(), iterations=10, meta_batch=5, progress=False, checkpoint=path,
                checkpoint_every=5, comm=COMM)
    report("saved")


def resume_finish(path: str) -> None:
    resumed = mf.load(path, num_threads=1)
    resumed.fit(mf.tasks.Sinusoid(), iterations=10, meta_batch=5, progress=False, comm=COMM)
    alone = sine_metasgd()
    alone.fit(mf.tasks.Sinusoid(), iterations=20, meta_batch=5, progress=False)
    report("same" if same_state(resumed, alone) else "DIFFERENT")


def resume_lost(path: str) -> None:
    """The checkpoint of a run that lost a process, resumed here for 20 meta-iterations."""
    resumed = mf.load(path, num_threads=1)
    total = resumed.iteration + 20
    resumed.fit(mf.tasks.Sinusoid(), iterations=20, meta_batch=5, progress=False, comm=COMM)
    alone = sine_metasgd()
    alone.fit(mf.tasks.Sinusoid(), iterations=total, meta_batch=5, progress=False)
    report("same" if same_state(resumed, alone) else "DIFFERENT")


def failing_sampler() -> None:
    def flaky(num_tasks, rng):
        if RANK == 1 and flaky.calls == 3:
            raise ValueError("sampler broke on process 1")
        flaky.calls += 1
        return sampler(num_tasks, rng)

    flaky.calls = 0
    raised(lambda: sine_metasgd().fit(flaky, iterations=10, meta_batch=4, progress=False, comm=COMM))


def failing_callback() -> None:
    def callback(learner, iteration, loss):
        if RANK == 0 and iteration >= 4:
            raise RuntimeError("callback broke on process 0")

    raised(lambda: sine_metasgd().fit(mf.tasks.Sinusoid(), iterations=200, meta_batch=4, progress=False,
                                      callback=callback, comm=COMM))


def failing_before_the_exchange() -> None:
    """Process 1 fails in Python at its third chunk, before it reaches the core, where the
    others wait for its share."""
    learner = sine_metasgd()
    if RANK == 1:
        native, calls = learner._native_fit, []

        def failing(*arguments):
            calls.append(None)
            if len(calls) == 3:
                raise MemoryError("no memory on process 1")
            return native(*arguments)

        learner._native_fit = failing
    raised(lambda: learner.fit(mf.tasks.Sinusoid(), iterations=10**6, meta_batch=4, progress=False, comm=COMM))


def stopping_callback() -> None:
    learner = sine_metasgd()
    learner.fit(mf.tasks.Sinusoid(), iterations=10_000, meta_batch=4, progress=False, comm=COMM,
                callback=lambda l, iteration, loss: RANK == 0 and iteration >= 3)
    report(f"stopped at {learner.iteration}")


def interrupted(learner_kind: str) -> None:
    """A long fit; the test sends SIGINT to the first process once every process is training."""
    learner = rl_learner(meta_optimizer="trpo") if learner_kind == "trpo" else sine_metasgd()
    fit = (lambda **options: learner.fit(meta_batch=3, **options)) if learner_kind == "trpo" else (
        lambda **options: learner.fit(mf.tasks.Sinusoid(), meta_batch=4, **options))

    def started(learner, iteration, loss):
        if iteration >= 2 and not started.said:
            started.said = True
            report(f"pid {os.getpid()}")

    started.said = False
    try:
        fit(iterations=10**9, progress=False, callback=started, comm=COMM)
    except KeyboardInterrupt:
        report(f"KeyboardInterrupt at a consistent iteration: {len(learner.history) == learner.iteration}")


def lost(path: str) -> None:
    """A long fit with checkpoints; the test kills the second process once the first is written."""
    report(f"pid {os.getpid()}")
    sine_metasgd().fit(mf.tasks.Sinusoid(), iterations=10**9, meta_batch=5, progress=False, checkpoint=path,
                       checkpoint_every=50, comm=COMM)


def mismatch() -> None:
    raised(lambda: mf.MetaSGD(mf.MLP([1, 12, 1]), seed=RANK, num_threads=1).fit(
        mf.tasks.Sinusoid(), iterations=5, meta_batch=4, progress=False, comm=COMM))


def diverging() -> None:
    """A task of process 1's share overflows at the fourth meta-iteration: every process must
    stop there with the state one process has there."""
    def extreme(num_tasks, rng):
        batch = sampler(num_tasks, rng)
        extreme.calls += 1
        y_query = batch.y_query.copy()
        if extreme.calls == 4:
            y_query[-1] = 1e30  # finite in float32, its square is not
        return mf.TaskBatch(batch.x_support, batch.y_support, batch.x_query, y_query)

    outcomes = []
    for comm in (COMM, None):
        extreme.calls = 0
        learner = sine_metasgd()
        try:
            learner.fit(extreme, iterations=10, meta_batch=4, progress=False, comm=comm)
        except mf.TrainingDivergedError as error:
            outcomes.append((learner, f"{type(error).__name__} at iteration {learner.iteration}"))
        else:
            outcomes.append((learner, "no error"))
    (spread, spread_text), (alone, alone_text) = outcomes
    report(f"{spread_text}; one process: {alone_text}; same state: {same_state(spread, alone)}")


def raised(run) -> None:
    try:
        run()
    except Exception as error:  # noqa: BLE001 - what each process raised is the result
        report(f"{type(error).__name__}: {error}")
    else:
        report("no error")


if __name__ == "__main__":
    scenario, *arguments = sys.argv[1:]
    {"bits": bits, "oversubscribed": oversubscribed, "resume-start": resume_start, "resume-finish": resume_finish, "failing-sampler": failing_sampler,
     "failing-callback": failing_callback,
     "failing-before-the-exchange": failing_before_the_exchange, "stopping-callback": stopping_callback,
     "interrupted": interrupted, "mismatch": mismatch, "diverging": diverging, "lost": lost,
     "resume-lost": resume_lost}[scenario](*arguments)
