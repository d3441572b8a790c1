"""metafast's benchmark: W1-W4 (see workloads.py) for metafast and its peers.

    python benchmarks/run.py                       # everything: about 10 minutes
    python benchmarks/run.py --quick               # a smoke run: seconds
    python benchmarks/run.py --workloads W1 W3 --impls metafast numpy --threads 1
    python benchmarks/run.py --impls metafast metafast@avx2 metafast@baseline metafast@native \
        --native /tmp/native          # the dispatch levels, and a native build installed there

Every (workload, implementation, threads) runs in a fresh process pinned to that many cores,
after a correctness pre-check on fixed data (an implementation that disagrees with metafast is
void, not timed). Each measurement warms up, then takes the median throughput of several runs
of at least --seconds each. Peers: metafast.reference ("numpy"), and PyTorch and JAX when they
are installed. "metafast" is the installed build at the level it picks for this CPU;
"metafast@LEVEL" forces a level (METAFAST_CPU=LEVEL), and "metafast@native" runs a native build
(METAFAST_NATIVE=ON) installed in the folder given by --native (CMAKE_ARGS=-DMETAFAST_NATIVE=ON
pip install --target DIR -C build-dir=DIR-build .: a build folder of its own, or the native build
reconfigures the one an editable install shares).
The fp32 multiply-add peak of one core is measured at the level in use (a probe in the core),
not assumed; "% peak" is of that.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

IMPLS = ("metafast", "numpy", "pytorch", "jax")
LEVELS = ("baseline", "avx2", "avx512", "native")
MODULES = {"metafast": "impl_metafast", "numpy": "impl_reference", "pytorch": "impl_torch", "jax": "impl_jax"}
NATIVE_PATH = ""  # where a native build is installed (--native)
JAX_MAX_ISA = ""  # the widest instructions XLA may use (--jax-max-isa), e.g. AVX2 beside metafast@avx2


def implementation(name: str) -> str:
    """An --impls entry: a peer, metafast, or metafast@LEVEL."""
    base, _, level = name.partition("@")
    if base not in IMPLS or (level and (base != "metafast" or level not in LEVELS)):
        raise argparse.ArgumentTypeError(f"{name!r}: expected one of {', '.join(IMPLS)} or metafast@LEVEL "
                                         f"with LEVEL in {', '.join(LEVELS)}")
    return name


def child_environment(threads: int, impl: str = "metafast") -> dict[str, str]:
    env = dict(os.environ)
    _, _, level = impl.partition("@")
    if level == "native":
        if not NATIVE_PATH:
            raise SystemExit("metafast@native needs --native DIR (a native build: "
                             "CMAKE_ARGS=-DMETAFAST_NATIVE=ON pip install --target DIR -C build-dir=DIR-build .)")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [NATIVE_PATH, env.get("PYTHONPATH", "")]))
        env.pop("METAFAST_CPU", None)
    elif level:
        env["METAFAST_CPU"] = level
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"  # metafast takes its thread count per call; BLAS stays single-threaded
    env["XLA_FLAGS"] = f"--xla_cpu_multi_thread_eigen={'false' if threads == 1 else 'true'} intra_op_parallelism_threads={threads}"
    if JAX_MAX_ISA:
        env["XLA_FLAGS"] += f" --xla_cpu_max_isa={JAX_MAX_ISA}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH", "")]))
    return env


def run_child(args: list[str], threads: int, timeout: float, impl: str = "metafast") -> dict:
    command = [sys.executable, str(HERE / "run.py"), *args]
    result = subprocess.run(command, capture_output=True, text=True, env=child_environment(threads, impl),
                            timeout=timeout)
    if result.returncode != 0:
        return {"error": (result.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ in the child
def pin(threads: int) -> None:
    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, set(cores[:threads]))


def child_check(workload: str, impl: str) -> dict:
    import numpy as np

    import fixtures
    import workloads

    module = importlib.import_module(MODULES[impl.partition("@")[0]])
    reason = module.available()
    if reason:
        return {"skipped": reason}
    w = workloads.get(workload)
    fixed = fixtures.fixed(w)
    # metafast at a forced level is checked against the NumPy reference (against itself, in
    # this process, the check could not fail); the peers against metafast.
    oracle = "impl_reference" if impl.startswith("metafast@") else "impl_metafast"
    expected = importlib.import_module(oracle).compute(w, fixed)
    actual = module.compute(w, fixed)
    errors = {k: float(np.linalg.norm(np.asarray(actual[k], np.float64) - expected[k]) / np.linalg.norm(expected[k]))
              for k in expected}
    return {"errors": errors, "ok": all(e < 1e-3 for e in errors.values())}


def child_time(workload: str, impl: str, threads: int, seconds: float, repeats: int) -> dict:
    import workloads

    pin(threads)
    module = importlib.import_module(MODULES[impl.partition("@")[0]])
    reason = module.available()
    if reason:
        return {"skipped": reason}
    w = workloads.get(workload)
    run = module.make_runner(w, threads)
    units = 1
    while True:  # warm up and calibrate: double until a run takes a tenth of the target
        started = time.perf_counter()
        done = run(units)
        elapsed = time.perf_counter() - started
        if elapsed >= min(0.1 * seconds, 0.5) or units > 1 << 30:
            break
        units *= 2
    units = max(1, int(units * seconds / max(elapsed, 1e-9)))
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        done = run(units)
        rates.append(done / (time.perf_counter() - started))
    return {"throughput": statistics.median(rates), "runs": rates}


# ------------------------------------------------------------------ in the driver
def child_peak() -> dict:
    """The fp32 multiply-add peak of one core at the level metafast runs, and the clock."""
    import metafast as mf

    pin(1)
    info = mf.build_info()
    core = mf._core
    return {"level": info["level"], "cpu": info["cpu"], "gflops": core.fma_peak_gflops(1.0),
            "ghz": core.clock_ghz(0.5)}


def describe_peak(peak: dict) -> str:
    per_cycle = peak["gflops"] / peak["ghz"] if peak["ghz"] else float("nan")
    return (f"{peak['gflops']:.1f} GFLOP/s fp32 per core at the {peak['level']} level on {peak['cpu']}, "
            f"measured ({per_cycle:.1f} flop/cycle at the {peak['ghz']:.2f} GHz a dependent-add chain runs at)")


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        model = next(l.split(":")[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                     if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} logical cores, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=["W1", "W2", "W3", "W4"])
    parser.add_argument("--impls", nargs="+", type=implementation, default=list(IMPLS),
                        help="peers and metafast variants: metafast, metafast@LEVEL, numpy, pytorch, jax")
    parser.add_argument("--native", default="", help="folder holding a native build, for metafast@native")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one timed run (default 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement; the median counts")
    parser.add_argument("--quick", action="store_true", help="0.2 s runs, 2 repeats: a smoke test, not a measurement")
    parser.add_argument("--jax-max-isa", default="", metavar="ISA",
                        help="hold JAX to these instructions (XLA's --xla_cpu_max_isa: SSE4_2, AVX, AVX2, AVX512), "
                             "to compare it with metafast@LEVEL at the same level")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    global NATIVE_PATH, JAX_MAX_ISA
    NATIVE_PATH = os.path.abspath(args.native) if args.native else ""
    JAX_MAX_ISA = args.jax_max_isa
    if args.child:
        if args.child[0] == "peak":
            print(json.dumps(child_peak()))
            return 0
        kind, workload, impl, *rest = args.child
        result = child_check(workload, impl) if kind == "check" else child_time(
            workload, impl, int(rest[0]), float(rest[1]), int(rest[2]))
        print(json.dumps(result))
        return 0

    import workloads

    if args.quick:
        args.seconds, args.repeats = 0.2, 2
    print(f"machine: {machine()}")
    if JAX_MAX_ISA:
        print(f"JAX held to {JAX_MAX_ISA} (--xla_cpu_max_isa={JAX_MAX_ISA})")
    peaks = {impl: run_child(["--child", "peak"], 1, timeout=120, impl=impl)
             for impl in args.impls if impl.startswith("metafast")}
    peaks.setdefault("metafast", run_child(["--child", "peak"], 1, timeout=120))
    for impl, peak in peaks.items():
        if "error" in peak:
            raise SystemExit(f"{impl}: {peak['error']}")
        print(f"peak ({impl}): {describe_peak(peak)}")
    results: dict = {"machine": machine(), "jax_max_isa": JAX_MAX_ISA, "peaks": peaks, "workloads": {}}
    # "metafast is" compares with the first metafast variant asked for
    reference = next(impl for impl in [*args.impls, "metafast"] if impl.startswith("metafast"))
    for name in args.workloads:
        w = workloads.get(name)
        flops = workloads.flops_per_unit(w)
        rows = []
        print(f"\n{name}: {w.algorithm}, MLP {'-'.join(map(str, w.sizes))} {w.activation}, {w.meta_batch} task(s) per "
              f"meta-iteration; {flops / 1e6:.3f} MFLOP per unit ({w.unit[:-2]})")
        for impl in args.impls:
            check = run_child(["--child", "check", name, impl], 1, timeout=600, impl=impl)
            if "skipped" in check or "error" in check:
                print(f"  {impl:9s} skipped: {check.get('skipped') or check.get('error')}")
                continue
            if not check["ok"]:
                print(f"  {impl:9s} VOID: disagrees with metafast on fixed data {check['errors']}")
                continue
            for threads in args.threads:
                timing = run_child(["--child", "time", name, impl, str(threads), str(args.seconds), str(args.repeats)],
                                   threads, timeout=60 + 20 * args.seconds * args.repeats, impl=impl)
                if "throughput" not in timing:
                    print(f"  {impl:9s} {threads}t failed: {timing}")
                    continue
                rows.append({"impl": impl, "threads": threads, "throughput": timing["throughput"],
                             "max_error": max(check["errors"].values())})
        print_table(w, flops, rows, peaks, reference)
        results["workloads"][name] = {"flops_per_unit": flops, "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def print_table(w, flops: float, rows: list[dict], peaks: dict, reference: str) -> None:
    if not rows:
        return
    best = {t: r["throughput"] for r in rows if r["impl"] == reference for t in [r["threads"]]}
    one_thread = {r["impl"]: r["throughput"] for r in rows if r["threads"] == 1}
    width = max(9, *(len(r["impl"]) for r in rows))
    print(f"  {'impl':{width}s} {'threads':>7s} {w.unit:>12s} {'metafast is':>12s} {'GFLOP/s':>8s} {'% peak':>7s} "
          f"{'vs 1 thread':>11s}  {'check':>8s}")
    for r in rows:
        gflops = r["throughput"] * flops / 1e9
        # metafast's variants against the peak of their own level, peers against the machine's
        peak = r["threads"] * peaks.get(r["impl"], peaks["metafast"])["gflops"]
        ratio = f"{best[r['threads']] / r['throughput']:>11.2f}x" if r["threads"] in best else f"{'-':>12s}"
        scaling = f"{r['throughput'] / one_thread[r['impl']]:>10.2f}x" if r["impl"] in one_thread else f"{'-':>11s}"
        print(f"  {r['impl']:{width}s} {r['threads']:>7d} {r['throughput']:>12,.0f} {ratio} {gflops:>8.2f} "
              f"{100 * gflops / peak:>6.1f}% {scaling}  {r['max_error']:>8.1e}")
    print(f"  (metafast is: {reference}'s throughput over the row's; % peak: of threads x the measured one-core peak of the level in use, the best level for peers; "
          "GFLOP/s = throughput x FLOPs per unit)")


if __name__ == "__main__":
    sys.exit(main())
