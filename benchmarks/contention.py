"""Threads on a busy machine: every call with the default threads
(num_threads=None: all cores) against num_threads=1, in the same run, while one busy process
per core competes for the CPUs.

    python benchmarks/contention.py               # busy: one spinning process per core, started here
    python benchmarks/contention.py --idle        # the same calls on an idle machine
    python benchmarks/contention.py --check 1.2   # exit 1 if any default/1-thread ratio exceeds 1.2
    python benchmarks/contention.py --quick       # a smoke run (tiny sizes): seconds, not a measurement

Each call is timed three times per setting (--repeats), the two settings interleaved, and the
medians are compared: a ratio above 1 means the default threads lose to one thread. On a busy
machine single runs vary by tens of percent with the scheduler's time slices; MetaSGD.adapt,
one task on one thread in both settings, shows that noise. The busy processes
are killed on the way out whatever ends the run (an exception, Ctrl-C, SIGTERM), and each
stops by itself once this process is gone.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import metafast as mf  # noqa: E402
from run import machine  # noqa: E402

REPEATS = 3
# A pure-Python spin that ignores Ctrl-C (the parent kills it) and ends when its parent dies
# (it is then re-parented, so getppid changes), so no spinner outlives a killed benchmark.
SPIN = ("import os, signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nparent = os.getppid()\n"
        "while os.getppid() == parent:\n    for _ in range(100_000):\n        pass\n")

Threads = Optional[int]
Run = Callable[[], object]


def cores() -> int:
    """The cores this process may run on (what num_threads=None uses)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through busy()'s cleanup


@contextlib.contextmanager
def busy(count: int) -> Iterator[list[subprocess.Popen]]:
    """``count`` processes spinning a pure-Python loop, killed when the block is left."""
    processes: list[subprocess.Popen] = []
    handles_term = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if handles_term else None
    try:
        for _ in range(count):
            processes.append(subprocess.Popen([sys.executable, "-c", SPIN], stdin=subprocess.DEVNULL,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(0.3)  # past the interpreters' start-up: spinning before anything is timed
        yield processes
    finally:
        for process in processes:
            process.kill()
        for process in processes:
            process.wait()
        if handles_term:
            signal.signal(signal.SIGTERM, previous)


# ------------------------------------------------------------------ the calls
SINE = mf.tasks.Sinusoid(support=10, query=10)


def sine_batch() -> mf.TaskBatch:
    return SINE.sample(25, seed=1, dtype="float32")


def metasgd(threads: Threads) -> mf.MetaSGD:
    return mf.MetaSGD(mf.MLP([1, 40, 40, 1], activation="relu"), loss="mse", meta_lr=1e-3, seed=0,
                      num_threads=threads)


def numpy_sampler(num_tasks: int, rng: np.random.Generator) -> mf.TaskBatch:
    """A user's own sampler, in NumPy (sine tasks like Sinusoid's): the learner's threads are
    all that differs between the two settings."""
    amplitude = rng.uniform(0.1, 5.0, (num_tasks, 1, 1))
    phase = rng.uniform(0.0, np.pi, (num_tasks, 1, 1))
    x = rng.uniform(-5.0, 5.0, (num_tasks, 20, 1))
    y = amplitude * np.sin(x - phase)
    x, y = x.astype(np.float32), y.astype(np.float32)
    return mf.TaskBatch(x[:, :10], y[:, :10], x[:, 10:], y[:, 10:])


def meta_step(threads: Threads, count: int) -> Run:
    learner, batch = metasgd(threads), sine_batch()
    return lambda: [learner.meta_step(batch) for _ in range(count)]


def meta_gradient(threads: Threads, count: int) -> Run:
    learner, batch = metasgd(threads), sine_batch()
    return lambda: [learner.meta_gradient(batch) for _ in range(count)]


def fit_family(threads: Threads, count: int) -> Run:
    learner = metasgd(threads)
    return lambda: learner.fit(SINE, iterations=count, meta_batch=25, progress=False)


def fit_sampler(threads: Threads, count: int) -> Run:
    learner = metasgd(threads)
    return lambda: learner.fit(numpy_sampler, iterations=count, meta_batch=25, progress=False)


def evaluate(threads: Threads, count: int) -> Run:
    learner = metasgd(threads)

    def run() -> list:
        with warnings.catch_warnings():  # 5 and 10 steps beyond the trained one are the workload here
            warnings.simplefilter("ignore", mf.BeyondTrainedStepsWarning)
            return [learner.evaluate(SINE, num_tasks=600, steps=(0, 1, 5, 10), seed=123) for _ in range(count)]
    return run


def adapt(threads: Threads, count: int) -> Run:
    learner, batch = metasgd(threads), sine_batch()
    x, y = batch.x_support[0], batch.y_support[0]
    return lambda: [learner.adapt(x, y) for _ in range(count)]


def reptile_fit(threads: Threads, count: int) -> Run:
    learner = mf.Reptile(mf.MLP([1, 64, 64, 1], activation="tanh"), loss="mse", inner_lr=1e-2, inner_epochs=10,
                         inner_batch=10, epsilon=0.1, seed=0, num_threads=threads)
    family = mf.tasks.Sinusoid.book()
    return lambda: learner.fit(family, iterations=count, meta_batch=8, progress=False)


def rl_fit(threads: Threads, count: int) -> Run:
    learner = mf.rl.MetaSGDRL(mf.MLP([2, 32, 32, 2], activation="relu"), inner_trajectories=20, seed=0,
                              num_threads=threads)
    return lambda: learner.fit(iterations=count, meta_batch=20, progress=False)


@dataclass(frozen=True)
class Call:
    name: str
    what: str           # the work, with {n} for the count
    count: int          # calls or meta-iterations at --scale 1
    prepare: Callable[[Threads, int], Run]


CALLS = (
    Call("MetaSGD.meta_step", "{n} calls, 25 sine tasks", 300, meta_step),
    Call("MetaSGD.meta_gradient", "{n} calls, 25 sine tasks", 300, meta_gradient),
    Call("MetaSGD.fit family", "{n} it x 25 Sinusoid tasks", 3000, fit_family),
    Call("MetaSGD.fit sampler", "{n} it x 25 NumPy-sampled tasks", 300, fit_sampler),
    Call("MetaSGD.evaluate", "{n} calls, 600 tasks, steps 0 1 5 10", 20, evaluate),
    Call("MetaSGD.adapt", "{n} calls, 1 task, 1 step", 10_000, adapt),
    Call("Reptile.fit family", "{n} it x 8 book sine tasks, 1-64-64-1 tanh", 300, reptile_fit),
    Call("MetaSGDRL.fit", "{n} it x 20 goals, 2-32-32-2 relu", 20, rl_fit),
)


def timed(run: Run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def measure(call: Call, count: int, repeats: int) -> tuple[float, float]:
    """Median seconds with the default threads and with one thread, runs interleaved (the
    order alternating, so a drift in the machine's load favours neither)."""
    runs = {None: call.prepare(None, count), 1: call.prepare(1, count)}
    times: dict[Threads, list[float]] = {None: [], 1: []}
    for repeat in range(repeats):
        for threads in ((None, 1) if repeat % 2 == 0 else (1, None)):
            times[threads].append(timed(runs[threads]))
    return statistics.median(times[None]), statistics.median(times[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", action="store_true", help="no busy processes: the idle machine's scaling")
    parser.add_argument("--check", type=float, metavar="RATIO",
                        help="exit 1 if any call's default/1-thread time ratio exceeds RATIO")
    parser.add_argument("--repeats", type=int, default=REPEATS, help=f"timed runs per setting (default {REPEATS})")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every call's count (default 1)")
    parser.add_argument("--quick", action="store_true", help="--scale 0.01: a smoke test, not a measurement")
    args = parser.parse_args(argv)
    scale = 0.01 if args.quick else args.scale

    busy_count = 0 if args.idle else cores()
    default_threads = metasgd(None).num_threads
    print(f"machine: {machine()}")
    print("idle: no busy processes" if args.idle else f"busy: {busy_count} spinning processes, one per core")
    print(f"default threads = {default_threads} (num_threads=None) against num_threads=1, median of {args.repeats} "
          f"interleaved runs each; MLP 1-40-40-1 relu unless said")
    # Settings that change how teams are formed (the test suite sets METAFAST_TEAMS=exact).
    settings = sorted((k, v) for k, v in os.environ.items() if k.startswith(("METAFAST_", "OMP_", "GOMP_")))
    if settings:
        print("environment: " + " ".join(f"{k}={v}" for k, v in settings))
    sys.stdout.flush()
    print(f"  {'call':22s} {'work':42s} {'default ms':>10s} {'1 thread ms':>11s} {'default/1':>10s}")
    ratios = {}
    with busy(busy_count):
        for threads in (None, 1):  # one-time costs (the thread team, first-touch pages) before timing
            meta_step(threads, 1)()
        for call in CALLS:
            count = max(1, round(call.count * scale))
            default, one = measure(call, count, args.repeats)
            ratios[call.name] = default / one
            print(f"  {call.name:22s} {call.what.format(n=count):42s} {1e3 * default:>10.1f} {1e3 * one:>11.1f} "
                  f"{ratios[call.name]:>9.2f}x", flush=True)
    print("  (default/1 above 1: the default threads are slower than one thread)")
    if args.check is not None:
        over = [name for name, ratio in ratios.items() if ratio > args.check]
        if over:
            print(f"ratio above {args.check:g}: {', '.join(over)}")
            return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the busy processes are already gone
        sys.exit(130)
