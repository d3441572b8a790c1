"""The benchmark harness stays runnable: its workloads build, the NumPy peer agrees with
metafast on the fixed data of every workload, and the FLOP model matches a hand count.
(Timings are the benchmark's business, never the tests'.)"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import contention  # noqa: E402
import conv_metafast  # noqa: E402
import conv_reference  # noqa: E402
import conv_workloads  # noqa: E402
import fixtures  # noqa: E402
import impl_metafast  # noqa: E402
import impl_reference  # noqa: E402
import trpo_navigation  # noqa: E402
import workloads  # noqa: E402


@pytest.mark.parametrize("name", sorted(workloads.WORKLOADS))
def test_numpy_peer_agrees_with_metafast(name):
    w = workloads.get(name)
    fixed = fixtures.fixed(w)
    expected = impl_metafast.compute(w, fixed)
    actual = impl_reference.compute(w, fixed)
    for key, value in expected.items():
        assert np.linalg.norm(actual[key] - value) / np.linalg.norm(value) < 1e-5, key


@pytest.mark.parametrize("name", sorted(conv_workloads.WORKLOADS))
def test_metafast_agrees_with_the_numpy_reference_on_the_convolutional_workloads(name):
    w = conv_workloads.get(name)
    fixed = conv_workloads.fixed(w)
    expected, actual = conv_reference.compute(w, fixed), conv_metafast.compute(w, fixed)
    tolerance = 1e-5 if w.algorithm == "maml" else 1e-9  # W5 in float32, W6 in float64 (conv_metafast.compute)
    for key, value in expected.items():
        assert np.abs(actual[key] - value).max() / np.abs(value).max() < tolerance, key


@pytest.mark.parametrize("name", sorted(conv_workloads.WORKLOADS))
def test_convolutional_runners_do_the_work_they_report(name):
    w = conv_workloads.get(name)
    assert conv_metafast.make_runner(w, threads=1)(1) >= 1


def test_flop_model_by_hand():
    # W3: single layer 50 -> 1 (S = 50, S' = 0), 10 support and 10 query rows, one step:
    # support gradient 2*50*10, query gradient 2*50*10, forward 50*10 + HVP 2*50*10, per task.
    w = workloads.get("W3")
    per_task = 100 * 10 + 100 * 10 + (50 + 100) * 10
    assert workloads.flops_per_unit(w) == 2 * per_task * 32


@pytest.mark.parametrize("name", ["W1", "W4"])
def test_runners_do_the_work_they_report(name):
    w = workloads.get(name)
    assert impl_metafast.make_runner(w, threads=1)(3) >= 3
    assert impl_reference.make_runner(w, threads=1)(1) >= 1


def test_contention_quick_prints_a_ratio_per_call(capsys):
    # --idle: the suite does not load the machine (busy() is tested below). --check 0: every
    # ratio exceeds it, so exit status 1 shows that the check looked at them.
    assert contention.main(["--quick", "--idle", "--check", "0"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("machine: ") and lines[1].startswith("idle: ")
    for call in contention.CALLS:
        row = next(line for line in lines if line.strip().startswith(call.name))
        assert re.search(r"\d\.\d\dx$", row), row


def test_contention_busy_processes_die_with_the_block():
    with pytest.raises(RuntimeError), contention.busy(2) as processes:
        assert all(process.poll() is None for process in processes)
        raise RuntimeError
    assert all(process.returncode is not None for process in processes)


def test_the_reproduction_script_runs_and_reports_honestly():
    import reproduce  # noqa: E402

    rows, notes = reproduce.run(quick=True)
    text = reproduce.markdown(rows, notes)
    assert "MAML 0.38" in text and "MAML −11.68" in text and "Reptile" in text
    # A tiny training cannot reach the papers: the table must say so rather than claim it.
    reached = [row for row in rows if row[-1] == "reached"]
    assert not reached and any(row[-1] == "**not reached**" for row in rows)


def test_jax_can_be_held_to_the_level_metafast_is_forced_to(monkeypatch, capsys):
    """--jax-max-isa passes XLA's --xla_cpu_max_isa to the JAX children only when asked, and the
    table's "metafast is" column compares with the first metafast variant asked for."""
    import run

    monkeypatch.setattr(run, "JAX_MAX_ISA", "")
    assert "max_isa" not in run.child_environment(1, "jax")["XLA_FLAGS"]
    monkeypatch.setattr(run, "JAX_MAX_ISA", "AVX2")
    env = run.child_environment(2, "jax")
    assert env["XLA_FLAGS"].endswith(" --xla_cpu_max_isa=AVX2") and "intra_op_parallelism_threads=2" in env["XLA_FLAGS"]
    assert run.child_environment(1, "metafast@avx2")["METAFAST_CPU"] == "avx2"

    rows = [{"impl": "metafast@avx2", "threads": 1, "throughput": 300.0, "max_error": 0.0},
            {"impl": "jax", "threads": 1, "throughput": 100.0, "max_error": 0.0}]
    peak = {"gflops": 100.0}
    run.print_table(workloads.get("W4"), 1e6, rows, {"metafast": peak, "metafast@avx2": peak}, "metafast@avx2")
    table = capsys.readouterr().out
    assert re.search(r"metafast@avx2\s+1\s+300\s+1\.00x", table) and re.search(r"jax\s+1\s+100\s+3\.00x", table)


def test_trpo_navigation_runs(capsys):
    trpo_navigation.main(["--iterations", "1", "--tasks", "3", "--alpha-lr", "0"])
    text = capsys.readouterr().out
    assert "TRPO, inner_steps=1" in text and "alpha_lr=0.0" in text and "return" in text
