"""Distributed meta-batches: W2, W3 and W4 on 2 MPI processes x 1 thread against one process
with 2 threads (and with 1), in the same run, and a model of the exchange's cost at more
processes from the latency and bandwidth measured here.

    python benchmarks/distributed.py               # needs pip install "metafast[mpi]"
    python benchmarks/distributed.py --seconds 0.3 # quicker, noisier

Each configuration runs in fresh processes (mpiexec for the distributed one); every number is
the median of --repeats timed fits of about --seconds each, after a warm-up. The processes of
one machine combine their forests of the task tree through shared memory; machines merge
theirs, per meta-iteration, in ceil(log2 R) rounds of messages and broadcast the root (W
values): the benchmark prints the bytes a forest holds, and for R machines models the
exchange as 2 ceil(log2 R) x (latency + bytes / bandwidth) on the critical path beside the
compute of one share (1/R of a meta-iteration on one thread) - a paper model for machines we
cannot test: real networks add contention and the share's compute does not shrink below one
task. Then W4 over --processes counts of one thread each (oversubscribed where they
outnumber the cores: each share's compute then takes R / cores times as long): the measured
time per meta-iteration against one process of 2 threads, the same by messages alone
(METAFAST_SHARED_MEMORY=0, as processes on separate machines exchange), the part that is not
one share's compute, and the tree's model; and the modelled exchange at 64, 512 and 4,096
machines on InfiniBand and Ethernet, for the tree and for the relay of metafast's earlier
versions (R - 1 + ceil(log2 R) hops of one sum each).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from metafast.distributed import split  # noqa: E402
from run import machine  # noqa: E402
from workloads import WORKLOADS  # noqa: E402

DEFAULT_WORKLOADS = ("W2", "W3", "W4")


def child(workload: str, threads: int, seconds: float, repeats: int) -> None:
    """Times fit on this workload (over MPI.COMM_WORLD when started by mpiexec); the first
    process prints {"iterations_per_second": ..., "width": ..., "itemsize": ...}."""
    from fixtures import family
    from impl_metafast import learner
    from metafast.distributed import launched_world

    comm = launched_world()
    if comm is not None:
        from mpi4py import MPI
    w = WORKLOADS[workload]
    learn, tasks = learner(w, threads), family(w)

    def fit(iterations: int) -> float:
        """The fit's time, the longest of the processes' (so that every process decides alike)."""
        if comm is not None:
            comm.Barrier()
        started = time.perf_counter()
        learn.fit(tasks, iterations=iterations, meta_batch=w.meta_batch, progress=False, comm=comm)
        elapsed = time.perf_counter() - started
        return elapsed if comm is None else comm.allreduce(elapsed, op=MPI.MAX)

    iterations = 4
    while fit(iterations) < seconds / 4:  # warm-up, and a count that takes about `seconds`
        iterations *= 2
    iterations *= 4
    rates = [iterations / fit(iterations) for _ in range(repeats)]
    if comm is None or comm.Get_rank() == 0:
        width = sum(len(v) for v in learn._params().values())
        print(json.dumps({"iterations_per_second": statistics.median(rates), "width": width,
                          "itemsize": learn.dtype.itemsize}))


def ping_pong() -> None:
    """Latency (8-byte messages) and bandwidth (1 MB) between two processes."""
    import numpy as np
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, other = comm.Get_rank(), 1 - comm.Get_rank()
    results = {}
    for name, size, rounds in (("latency", 8, 2000), ("bandwidth", 1 << 20, 200)):
        message = np.zeros(size, dtype=np.uint8)
        comm.Barrier()
        started = time.perf_counter()
        for _ in range(rounds):
            if rank == 0:
                comm.Send(message, dest=other)
                comm.Recv(message, source=other)
            else:
                comm.Recv(message, source=other)
                comm.Send(message, dest=other)
        one_way = (time.perf_counter() - started) / (2 * rounds)
        results[name] = one_way if name == "latency" else size / one_way
    if rank == 0:
        print(json.dumps(results))


def launch(arguments: list[str], processes: int, threads: int, shared_memory: bool = True) -> dict:
    environment = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=os.pathsep.join(
        filter(None, [str(HERE), os.environ.get("PYTHONPATH", "")])))
    if not shared_memory:
        environment["METAFAST_SHARED_MEMORY"] = "0"
    command = [sys.executable, str(Path(__file__).resolve()), *arguments]
    if processes > 1:
        mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
        if mpiexec is None:
            raise SystemExit('no mpiexec: pip install "metafast[mpi]"')
        command = [mpiexec, "-n", str(processes), *command]
    done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# Links for the modelled clusters: one-way latency (s) and bandwidth (bytes/s) of a message
# between two machines, typical figures (MPI over InfiniBand HDR; TCP over 10 Gb Ethernet).
CLUSTER_LINKS = {"InfiniBand HDR": (1.5e-6, 12.5e9), "10 Gb Ethernet": (25e-6, 1.1e9)}
MODELLED_RANKS = (64, 512, 4096)


def relay_hops(ranks: int) -> int:
    """Messages on the critical path of the relay of earlier versions: R - 1 hops, then the
    broadcast back."""
    return ranks - 1 + math.ceil(math.log2(ranks)) if ranks > 1 else 0


def tree_hops(ranks: int) -> int:
    """The same for the merge of the forests over the task tree and the root's broadcast."""
    return 2 * math.ceil(math.log2(ranks)) if ranks > 1 else 0


def forest_nodes(first: int, last: int, total: int) -> int:
    """Nodes of the task tree's forest of tasks [first, last) of `total` (docs/math.md, section 6)."""
    top, count, a = 1 << max(total - 1, 0).bit_length(), 0, first
    while a < last:
        s = 1
        while s < top and a % (2 * s) == 0 and min(a + 2 * s, total) <= last:
            s *= 2
        a, count = min(a + s, total), count + 1
    return count


def largest_forest(tasks: int, ranks: int) -> int:
    """The most nodes a message of the forests' merge holds, over its rounds and processes."""
    largest, step = 1, 1
    while step < ranks:
        for sender in range(step, ranks, 2 * step):
            last = min(sender + step, ranks) - 1
            largest = max(largest, forest_nodes(split(tasks, ranks, sender)[0], sum(split(tasks, ranks, last)), tasks))
        step *= 2
    return largest


def exchange_seconds(hops: int, latency: float, bandwidth: float, message: int) -> float:
    return hops * (latency + message / bandwidth)


def tree_exchange(ranks: int, tasks: int, latency: float, bandwidth: float, vector: int) -> float:
    """The tree's exchange: its merges (forests of up to largest_forest nodes) and the root's broadcast."""
    rounds = tree_hops(ranks) // 2
    forest = largest_forest(tasks, ranks) * vector
    return exchange_seconds(rounds, latency, bandwidth, forest) + exchange_seconds(rounds, latency, bandwidth, vector)


def model(latency: float, bandwidth: float, vector: int, one_thread_seconds: float, tasks: int) -> str:
    """The modelled speed-up over one process at 8, 64 and 512 processes."""
    parts = []
    for ranks in (8, 64, 512):
        exchange = tree_exchange(ranks, tasks, latency, bandwidth, vector)
        compute = one_thread_seconds * max(1, math.ceil(tasks / ranks)) / tasks
        parts.append(f"{ranks}: {one_thread_seconds / (compute + exchange):.2f}x")
    return ", ".join(parts)


def cluster_table(vector: int, tasks: int) -> list[str]:
    """The exchange per meta-iteration of a sum of `vector` bytes over `tasks` tasks at
    MODELLED_RANKS processes, tree against relay, on each of CLUSTER_LINKS."""
    lines = [f"  {'link':16s} {'R':>5s} {'tree':>10s} {'relay':>10s}"]
    for name, (latency, bandwidth) in CLUSTER_LINKS.items():
        for ranks in MODELLED_RANKS:
            relay = exchange_seconds(relay_hops(ranks), latency, bandwidth, vector)
            tree = tree_exchange(ranks, tasks, latency, bandwidth, vector)
            lines.append(f"  {name:16s} {ranks:>5d} {1e3 * tree:>8.3f}ms {1e3 * relay:>8.2f}ms")
    return lines


def exchanges(args: argparse.Namespace, link: dict, timing: list[str]) -> None:
    """W4 on R processes of one thread: the measured time per meta-iteration, against one
    process of 2 threads, and with the machine's shared memory turned off (messages alone);
    the compute of one share (from one process's), the rest (the exchange and its waits)
    against the tree's model of messages, and the model's exchange at cluster scale, tree
    against the former relay."""
    w = WORKLOADS["W4"]
    one = launch(["--child", "W4", "1", *timing], 1, 1)
    two_threads = 1 / launch(["--child", "W4", "2", *timing], 1, 2)["iterations_per_second"]
    per_task = 1 / one["iterations_per_second"] / w.meta_batch
    vector = one["width"] * one["itemsize"]
    cores = len(os.sched_getaffinity(0))
    print(f"\nW4 over R processes x 1 thread ({cores} cores here), per meta-iteration; one process of 2 threads: "
          f"{1e6 * two_threads:.1f}us")
    print(f"  {'R':>3s} {'measured':>10s} {'/ 1x2':>6s} {'messages':>10s} {'/ 1x2':>6s} {'share compute':>14s} "
          f"{'exchange':>10s} {'tree model':>12s}")
    for ranks in args.processes:
        measured = 1 / launch(["--child", "W4", "1", *timing], ranks, 1)["iterations_per_second"]
        messages = 1 / launch(["--child", "W4", "1", *timing], ranks, 1, shared_memory=False)["iterations_per_second"]
        compute = per_task * math.ceil(w.meta_batch / ranks) * max(1.0, ranks / cores)
        modelled = tree_exchange(ranks, w.meta_batch, link["latency"], link["bandwidth"], vector)
        print(f"  {ranks:>3d} {1e6 * measured:>8.1f}us {measured / two_threads:>5.2f}x {1e6 * messages:>8.1f}us "
              f"{messages / two_threads:>5.2f}x {1e6 * compute:>12.1f}us {1e6 * (measured - compute):>8.1f}us "
              f"{1e6 * modelled:>10.1f}us" + ("  (oversubscribed)" if ranks > cores else ""), flush=True)
    print("  (measured: a machine's processes combine through shared memory; messages: METAFAST_SHARED_MEMORY=0, "
          "every process by MPI messages, as processes on different machines do; tree model: messages)")
    print(f"\nModelled exchange per meta-iteration of W4's {vector:,}-byte sum at cluster scale, R machines "
          "(latency + bytes / bandwidth per hop; tree: ceil(log2 R) rounds of forests, then the root's "
          "broadcast; the earlier relay: R - 1 + ceil(log2 R) hops of the sum):")
    print("\n".join(cluster_table(vector, w.meta_batch)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=list(DEFAULT_WORKLOADS), choices=sorted(WORKLOADS))
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "THREADS"), help=argparse.SUPPRESS)
    parser.add_argument("--ping-pong", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--processes", nargs="*", type=int, default=[2, 4, 8],
                        help="process counts whose exchange per meta-iteration is measured on W4 (1 thread each)")
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], int(args.child[1]), args.seconds, args.repeats)
        return 0
    if args.ping_pong:
        ping_pong()
        return 0

    print(f"machine: {machine()}")
    link = launch(["--ping-pong"], 2, 1)
    print(f"MPI between 2 processes here: latency {1e6 * link['latency']:.1f} us, bandwidth "
          f"{link['bandwidth'] / 1e9:.2f} GB/s (one way)")
    print(f"  {'workload':9s} {'1 x 1 thread':>13s} {'1 x 2 threads':>14s} {'2 x 1 thread':>13s} "
          f"{'2x1 / 1x2':>10s} {'bytes/it':>9s}  modelled speed-up over 1 x 1 at R processes")
    timing = ["--seconds", str(args.seconds), "--repeats", str(args.repeats)]
    for name in args.workloads:
        w = WORKLOADS[name]
        one = launch(["--child", name, "1", *timing], 1, 1)
        two_threads = launch(["--child", name, "2", *timing], 1, 2)
        two_processes = launch(["--child", name, "1", *timing], 2, 1)
        vector = one["width"] * one["itemsize"]
        # per meta-iteration, the second process sends its forest, the first the root
        sent = forest_nodes(split(w.meta_batch, 2, 1)[0], w.meta_batch, w.meta_batch) * vector
        ratio = two_processes["iterations_per_second"] / two_threads["iterations_per_second"]
        print(f"  {name:9s} {one['iterations_per_second']:>13,.0f} {two_threads['iterations_per_second']:>14,.0f} "
              f"{two_processes['iterations_per_second']:>13,.0f} {ratio:>9.2f}x {sent:>9,d}  "
              f"{model(link['latency'], link['bandwidth'], vector, 1 / one['iterations_per_second'], w.meta_batch)}",
              flush=True)
    print("  (meta-iterations/s; bytes/it: the second process's forest, per meta-iteration, which it writes "
          "to the machine's shared memory or sends)")
    if args.processes:
        exchanges(args, link, timing)
    return 0


if __name__ == "__main__":
    sys.exit(main())
