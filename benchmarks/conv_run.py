"""metafast's convolutional benchmark: W5 (MAML) and W6 (Reptile) on a Conv-4 (see conv_workloads.py).

    python benchmarks/conv_run.py                                   # W5, W6; metafast, pytorch, jax; 1 thread
    python benchmarks/conv_run.py --workloads W5 W6 --impls jax pytorch --threads 1 2 --seconds 10
    python benchmarks/conv_run.py --quick                           # a smoke run, not a measurement

As run.py does for W1-W4 (and with its helpers): every (workload, implementation, threads) runs
in a fresh process pinned to that many cores, with run.py's environment (XLA_FLAGS set before
jax is imported, BLAS single-threaded), after a correctness check on fixed data; an
implementation that fails the check is void, not timed. Each measurement warms up, then takes
the median throughput of --repeats runs of at least --seconds each.

The check's oracle is metafast's NumPy reference ConvNet (conv_reference.py, float64, computed
once per workload in a child process). Error = max |actual - expected| / max |expected| over
theta's entries (W5: the mean meta-gradient; W6: theta after one meta-step), must be <= 1e-4;
the convolution biases are compared apart and reported, not judged (their true gradient is 0
under batch norm: see conv_workloads.conv_biases), and for W6 the error of the update
theta_new - theta is reported too. The check runs unpinned, as run.py's does; XLA's float32
results depend a little on the cores the process may use (W6's error: 1e-6 unpinned, 3e-6
pinned to one core, on a 2-core machine).

Implementations: a module per implementation, ``conv_<name>.py``, with
    NAME: str
    available() -> str | None                # None, or why it cannot run here (then skipped)
    make_runner(w: ConvWorkload, threads: int, seed: int = 0) -> run
        run(units: int) -> int               # does at least `units` units (W5 meta-iterations,
                                             # W6 tasks), episode sampling included; returns how many
    compute(w: ConvWorkload, fixed: conv_workloads.Fixed) -> dict[str, np.ndarray]
        # W5: {"g_theta": mean meta-gradient at fixed.theta over the fixed tasks}
        # W6: {"theta": theta after one meta-step on the fixed tasks}
        # flat, in the reference ConvNet's theta layout (conv_workloads.network's docstring)
"metafast" is conv_metafast.py: skipped until that file exists.

"% peak" is of the fp32 multiply-add peak of one core measured by metafast's core (run.py's
probe; left out when the core cannot be imported).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as base  # noqa: E402  run.py's environment, pinning, machine description, peak probe

MODULES = {"metafast": "conv_metafast", "numpy": "conv_reference", "pytorch": "conv_torch", "jax": "conv_jax"}
TOLERANCE = 1e-4


def run_child(args: list[str], threads: int, timeout: float) -> dict:
    command = [sys.executable, str(HERE / "conv_run.py"), *args]
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=base.child_environment(threads),
                                timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if result.returncode != 0:
        return {"error": (result.stderr.strip().splitlines() or [f"failed ({result.returncode})"])[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ in the child
def load(impl: str):
    """The implementation's module, or the reason it is skipped."""
    name = MODULES[impl]
    if importlib.util.find_spec(name) is None:
        return None, f"benchmarks/{name}.py does not exist yet"
    module = importlib.import_module(name)
    return module, module.available()


def child_reference(workload: str, path: str) -> dict:
    import numpy as np

    import conv_reference
    import conv_workloads

    w = conv_workloads.get(workload)
    started = time.perf_counter()
    expected = conv_reference.compute(w, conv_workloads.fixed(w))
    np.savez(path, **expected)
    return {"seconds": time.perf_counter() - started}


def child_check(workload: str, impl: str, path: str) -> dict:
    import numpy as np

    import conv_workloads

    module, reason = load(impl)
    if reason:
        return {"skipped": reason}
    w = conv_workloads.get(workload)
    fixed = conv_workloads.fixed(w)
    expected = dict(np.load(path))
    actual = module.compute(w, fixed)
    biases = conv_workloads.conv_biases(w)
    errors, notes = {}, {}
    for key, e in expected.items():
        a = np.asarray(actual[key], dtype=np.float64)
        diff = np.abs(a - e)
        errors[key] = float(diff[~biases].max() / np.abs(e[~biases]).max())
        notes[f"{key} conv biases max abs diff"] = float(diff[biases].max())
        if key == "theta":  # the update is small beside theta: its own error
            update = e - fixed.theta
            notes["update"] = float(np.abs((a - fixed.theta) - update)[~biases].max() / np.abs(update[~biases]).max())
    return {"errors": errors, "notes": notes, "ok": all(err <= TOLERANCE for err in errors.values())}


def child_time(workload: str, impl: str, threads: int, seconds: float, repeats: int) -> dict:
    import conv_workloads

    base.pin(threads)
    module, reason = load(impl)
    if reason:
        return {"skipped": reason}
    w = conv_workloads.get(workload)
    started = time.perf_counter()
    run = module.make_runner(w, threads)
    setup = time.perf_counter() - started
    units = 1
    while True:  # warm up and calibrate: double until a run takes a tenth of the target
        started = time.perf_counter()
        run(units)
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
    return {"throughput": statistics.median(rates), "runs": rates, "setup_seconds": setup}


# ------------------------------------------------------------------ in the driver
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=["W5", "W6"])
    parser.add_argument("--impls", nargs="+", choices=list(MODULES), default=["metafast", "pytorch", "jax"],
                        help="metafast (conv_metafast.py), numpy (the reference: slow), pytorch, jax")
    parser.add_argument("--threads", nargs="+", type=int, default=[1])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one timed run (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement; the median counts")
    parser.add_argument("--quick", action="store_true", help="0.5 s runs, 1 repeat: a smoke test, not a measurement")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        kind, workload, *rest = args.child
        if kind == "reference":
            result = child_reference(workload, rest[0])
        elif kind == "check":
            result = child_check(workload, rest[0], rest[1])
        else:
            result = child_time(workload, rest[0], int(rest[1]), float(rest[2]), int(rest[3]))
        print(json.dumps(result), flush=True)
        sys.stderr.flush()
        # No interpreter teardown: it has crashed (SIGSEGV) after the result was printed while
        # metafast's core was being reinstalled in place, which must not void the result.
        os._exit(0)

    import conv_workloads

    if args.quick:
        args.seconds, args.repeats = 0.5, 1
    print(f"machine: {base.machine()}")
    peak = base.run_child(["--child", "peak"], 1, timeout=120)
    if "error" in peak:
        print(f"peak: not measured (metafast's core: {peak['error']}); no % peak column")
        peak = None
    else:
        print(f"peak (metafast): {base.describe_peak(peak)}")
    results: dict = {"machine": base.machine(), "peak": peak, "workloads": {}}
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.workloads:
            w = conv_workloads.get(name)
            flops = conv_workloads.flops_per_unit(w)
            print(f"\n{name}: {w.algorithm}, Conv-4 {w.channels[0]} channels, head {w.head}, {w.ways}-way "
                  f"{w.support_shots}-shot, {w.meta_batch} tasks per meta-iteration; {flops / 1e6:,.1f} MFLOP per "
                  f"unit ({w.unit[:-2]})")
            path = os.path.join(scratch, f"{name}.npz")
            reference = run_child(["--child", "reference", name, path], 1, timeout=600)
            if "error" in reference:
                print(f"  reference failed: {reference['error']}")
                continue
            rows, checks = [], {}
            for impl in args.impls:
                check = run_child(["--child", "check", name, impl, path], 1, timeout=900)
                if "skipped" in check or "error" in check:
                    print(f"  {impl:9s} skipped: {check.get('skipped') or check.get('error')}")
                    continue
                notes = ", ".join(f"{k} {v:.1e}" for k, v in check["notes"].items())
                verdict = "ok" if check["ok"] else "VOID"
                print(f"  {impl:9s} check {verdict}: error {max(check['errors'].values()):.1e} "
                      f"(max abs diff / max abs value, tolerance {TOLERANCE:.0e}; {notes})")
                checks[impl] = check
                if not check["ok"]:
                    continue
                for threads in args.threads:
                    timing = run_child(["--child", "time", name, impl, str(threads), str(args.seconds),
                                        str(args.repeats)], threads, timeout=900 + 3 * args.seconds * args.repeats)
                    if "throughput" not in timing:
                        print(f"  {impl:9s} {threads}t failed: {timing}")
                        continue
                    rows.append({"impl": impl, "threads": threads, "throughput": timing["throughput"],
                                 "runs": timing["runs"], "max_error": max(check["errors"].values())})
            print_table(w, flops, rows, peak)
            results["workloads"][name] = {"flops_per_unit": flops, "rows": rows, "checks": checks}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def print_table(w, flops: float, rows: list[dict], peak: dict | None) -> None:
    if not rows:
        return
    # ratios against metafast when it ran, else against the first implementation that did
    reference = "metafast" if any(r["impl"] == "metafast" for r in rows) else rows[0]["impl"]
    best = {r["threads"]: r["throughput"] for r in rows if r["impl"] == reference}
    one_thread = {r["impl"]: r["throughput"] for r in rows if r["threads"] == 1}
    width = max(9, *(len(r["impl"]) for r in rows))
    label = f"{reference} is"
    print(f"  {'impl':{width}s} {'threads':>7s} {w.unit:>12s} {label:>12s} {'GFLOP/s':>8s} {'% peak':>7s} "
          f"{'vs 1 thread':>11s}  {'check':>8s}")
    for r in rows:
        gflops = r["throughput"] * flops / 1e9
        share = f"{100 * gflops / (r['threads'] * peak['gflops']):>6.1f}%" if peak else f"{'-':>7s}"
        ratio = f"{best[r['threads']] / r['throughput']:>11.2f}x" if r["threads"] in best else f"{'-':>12s}"
        scaling = f"{r['throughput'] / one_thread[r['impl']]:>10.2f}x" if r["impl"] in one_thread else f"{'-':>11s}"
        print(f"  {r['impl']:{width}s} {r['threads']:>7d} {r['throughput']:>12,.2f} {ratio} {gflops:>8.2f} "
              f"{share} {scaling}  {r['max_error']:>8.1e}")
    print(f"  ({reference} is: its throughput over the row's, at the same threads; % peak: of threads x the measured "
          "one-core peak; GFLOP/s = throughput x FLOPs per unit)")


if __name__ == "__main__":
    sys.exit(main())
