"""Meta-batches spread over MPI processes give the bits of one process (tests/mpi_worker.py
runs each scenario under mpiexec with 2 and 3 processes)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import metafast as mf

pytest.importorskip("mpi4py", reason='distributed runs need mpi4py: pip install "metafast[mpi]"')
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
if MPIEXEC is None:
    pytest.skip("no mpiexec (the mpich wheel of metafast[mpi] brings one)", allow_module_level=True)

WORKER = Path(__file__).with_name("mpi_worker.py")


def run_processes(processes: int, scenario: str, out: Path, *arguments: str, timeout: float = 120,
                  **variables: str) -> list[list[str]]:
    """Each process's result lines; the run must end by itself within `timeout` seconds."""
    out.mkdir(exist_ok=True)
    for old in out.glob("*.txt"):
        old.unlink()
    environment = dict(os.environ, METAFAST_TEST_OUT=str(out), **variables)
    done = subprocess.run([MPIEXEC, "-n", str(processes), sys.executable, str(WORKER), scenario, *arguments],
                          env=environment, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return [(out / f"{rank}.txt").read_text().splitlines() for rank in range(processes)]


# How the processes combine: through this machine's shared memory; over machines simulated here
# (processes dealt round-robin, so that a machine's processes are not adjacent ranks: the
# machines' first processes exchange messages); by messages alone.
ONE_MACHINE, MACHINES, MESSAGES = {}, {"METAFAST_TEST_MACHINES": "2"}, {"METAFAST_SHARED_MEMORY": "0"}


@pytest.mark.parametrize("processes, threads, layout", [
    (1, 1, ONE_MACHINE), (2, 1, ONE_MACHINE), (2, 2, ONE_MACHINE), (3, 1, ONE_MACHINE), (5, 1, ONE_MACHINE),
    (8, 2, ONE_MACHINE), (5, 1, MACHINES), (3, 2, {"METAFAST_TEST_MACHINES": "3"}), (3, 1, MESSAGES),
    (5, 2, MESSAGES)], ids=lambda value: ",".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else None)
def test_every_learner_gives_the_bits_of_one_process(tmp_path, processes, threads, layout):
    """1 (comm= with one process is one process) to 8 processes, oversubscribed from 3 on 2
    cores, of 1 or 2 threads each, against one process of one thread; from 5 on, some
    processes hold no task of a 4-task meta-batch (the samplers' cases)."""
    results = run_processes(processes, "bits", tmp_path, str(threads), timeout=300, **layout)
    for lines in results:
        assert len(lines) == 15
        assert all(line.endswith(": same") for line in lines), lines


def test_processes_that_outnumber_the_cores_finish_within_a_bound(tmp_path):
    """8 processes on this machine's cores (2 in CI), 3,000 meta-iterations of 25 tasks: about
    2 s through the machine's shared memory where waits yield and sleep (minutes if waiting
    processes took the cores from the computing ones)."""
    started = time.perf_counter()
    assert run_processes(8, "oversubscribed", tmp_path, timeout=90) == [["same"]] * 8
    assert time.perf_counter() - started < 60


def test_resume_on_another_number_of_processes_is_bit_identical(tmp_path):
    checkpoint = tmp_path / "run.npz"
    assert run_processes(2, "resume-start", tmp_path / "a", str(checkpoint)) == [["saved"], ["saved"]]
    assert run_processes(3, "resume-finish", tmp_path / "b", str(checkpoint)) == [["same"]] * 3


def test_a_failing_sampler_ends_every_process_with_its_error(tmp_path):
    results = run_processes(3, "failing-sampler", tmp_path, timeout=60)
    assert results[1] == ["ValueError: sampler broke on process 1"]
    for rank in (0, 2):
        assert results[rank] == ["RankError: process 1 of 3 failed: ValueError: sampler broke on process 1"]


def test_a_failing_callback_ends_every_process_with_its_error(tmp_path):
    results = run_processes(2, "failing-callback", tmp_path, timeout=60)
    assert results[0] == ["RuntimeError: callback broke on process 0"]
    assert results[1] == ["RankError: process 0 of 2 failed: RuntimeError: callback broke on process 0"]


def test_an_error_before_the_exchange_on_one_process_ends_every_process_with_its_error(tmp_path):
    """The others wait for its share in the machine's exchange: the failing process leaves it
    broken, and they stop there instead of waiting forever."""
    results = run_processes(3, "failing-before-the-exchange", tmp_path, timeout=60)
    error = "MemoryError: no memory on process 1"
    assert results == [[f"RankError: process 1 of 3 failed: {error}"], [error], [f"RankError: process 1 of 3 failed: {error}"]]


def test_a_divergence_in_one_share_stops_every_process_where_one_process_stops(tmp_path):
    assert run_processes(2, "diverging", tmp_path, timeout=60) == [
        ["TrainingDivergedError at iteration 3; one process: TrainingDivergedError at iteration 3; same state: True"]] * 2


def test_the_first_process_callback_stops_every_process(tmp_path):
    assert run_processes(2, "stopping-callback", tmp_path) == [["stopped at 3"]] * 2


@pytest.mark.parametrize("learner", ["metasgd", "trpo"])  # trpo: Ctrl-C in any of its sums' relays
def test_ctrl_c_on_the_first_process_stops_every_process(tmp_path, learner):
    environment = dict(os.environ, METAFAST_TEST_OUT=str(tmp_path))
    errors = tmp_path / "stderr.txt"
    with open(errors, "w") as stderr:
        run = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, str(WORKER), "interrupted", learner], env=environment,
                               stdout=subprocess.DEVNULL, stderr=stderr)
    first = tmp_path / "0.txt"
    try:
        deadline = time.monotonic() + 60
        while not (first.exists() and first.read_text().startswith("pid")) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(int(first.read_text().split()[1]), signal.SIGINT)  # the first process only
        assert run.wait(timeout=30) == 0, errors.read_text()[-2000:]
    finally:
        run.kill()
        run.wait()
    for rank in range(2):
        assert (tmp_path / f"{rank}.txt").read_text().splitlines()[-1] == \
            "KeyboardInterrupt at a consistent iteration: True"


def test_a_killed_process_ends_the_run_and_its_checkpoint_resumes_on_another_count(tmp_path):
    """SIGKILL to one of 3 processes mid-run: the run ends within 10 s (MPICH's launcher ends
    it), the last checkpoint is intact and resumes on 2 processes with
    the bits of one process."""
    environment = dict(os.environ, METAFAST_TEST_OUT=str(tmp_path))
    checkpoint = tmp_path / "run.npz"
    errors = tmp_path / "stderr.txt"
    with open(errors, "w") as stderr:
        run = subprocess.Popen([MPIEXEC, "-n", "3", sys.executable, str(WORKER), "lost", str(checkpoint)],
                               env=environment, stdout=stderr, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not checkpoint.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        victim = int((tmp_path / "1.txt").read_text().split()[1])
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        assert run.wait(timeout=10) != 0
        assert time.monotonic() - killed < 10
    finally:
        run.kill()
        run.wait()
    # MPICH's launcher reports a process killed by signal 9 (the first whose end it sees, which
    # its own clean-up may make another than the victim).
    assert "BAD TERMINATION" in errors.read_text() and "signal 9" in errors.read_text()
    saved = mf.load(checkpoint, num_threads=1)
    assert saved.iteration > 0 and saved.iteration % 50 == 0
    assert run_processes(2, "resume-lost", tmp_path / "b", str(checkpoint)) == [["same"]] * 2


def test_a_wait_for_a_lost_process_on_this_machine_raises_naming_it(monkeypatch):
    """Where the launcher leaves the others running (srun's default), a process waiting for a
    lost one on its machine raises RankError naming it within about a second, and at every
    later wait at once."""
    from metafast import distributed

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: its pid is free
    waiter = distributed.Waiter(0, 3, [(2, gone.pid)], spin=0.0)
    aborts = []
    monkeypatch.setattr(distributed, "_abort_at_exit", lambda: aborts.append(True))

    class Never:
        def Test(self):
            return False

    started = time.monotonic()
    with pytest.raises(distributed.RankError, match=rf"process 2 of 3 \(pid {gone.pid} on this machine\) was lost"):
        waiter.wait(Never())
    assert time.monotonic() - started < 3 and aborts == [True]
    with pytest.raises(distributed.RankError, match="was lost"):
        waiter.wait(Never())
    waiter.lost, waiter.neighbours = None, [(1, os.getpid())]  # alive: the wait goes on until done

    class Later:
        polls = 0

        def Test(self):
            self.polls += 1
            return self.polls > 3

    waiter.wait(Later())


def test_processes_holding_different_learners_are_refused(tmp_path):
    for lines in run_processes(2, "mismatch", tmp_path):
        assert len(lines) == 1 and lines[0].startswith("ValueError: the processes of the run hold different learners")


def test_the_command_line_under_mpiexec_writes_one_model_equal_to_one_process(tmp_path):
    command = [sys.executable, "-m", "metafast", "train", "metasgd", "--iterations", "20", "--hidden", "8", "--quiet",
               "--threads", "1", "--save"]
    subprocess.run([MPIEXEC, "-n", "2", *command, str(tmp_path / "spread.npz")], check=True, capture_output=True,
                   timeout=120)
    subprocess.run([*command, str(tmp_path / "alone.npz")], check=True, capture_output=True, timeout=120)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alone.npz", "spread.npz"]
    spread, alone = np.load(tmp_path / "spread.npz"), np.load(tmp_path / "alone.npz")
    assert spread.files == alone.files
    assert all(np.array_equal(spread[name], alone[name]) for name in alone.files)


@pytest.mark.parametrize("variables, expected", [
    ({}, False), ({"SLURM_NTASKS": "1"}, False), ({"SLURM_NTASKS": "4"}, True), ({"PMI_SIZE": "2"}, True),
    ({"OMPI_COMM_WORLD_SIZE": "3"}, True), ({"PMIX_SIZE": "x"}, False)], ids=lambda v: str(v))
def test_launchers_are_recognised_by_their_environment(monkeypatch, variables, expected):
    """`srun metafast train` and `mpiexec -n N metafast train` take MPI.COMM_WORLD; a plain
    process (or a launcher's run of one) needs no MPI at all."""
    from metafast import distributed

    for name in distributed._SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    world = object()
    monkeypatch.setattr(distributed, "_mpi", lambda: type("MPI", (), {"COMM_WORLD": world}))
    assert (distributed.launched_world() is world) == expected
    if expected:
        def missing():
            raise ImportError("No module named 'mpi4py'")
        monkeypatch.setattr(distributed, "_mpi", missing)
        with pytest.raises(ImportError, match=r"started by an MPI launcher, which needs mpi4py"):
            distributed.launched_world()
    else:
        assert distributed.launched_world() is None
