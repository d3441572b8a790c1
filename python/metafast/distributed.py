"""Meta-batches spread over MPI processes (mpi4py), with the bits of one process.

``learner.fit(tasks, ..., comm=MPI.COMM_WORLD)`` on every process of an MPI run: each process
computes a contiguous share of each meta-batch's tasks (task i keeps its random stream (seed,
iteration, i), so the shares are the tasks one process would compute), with its own threads;
the processes of one machine hold adjacent shares. Every sum over the tasks follows one fixed
pairwise tree over the task indices (docs/math.md, section 6): each process reduces its share
to the share's forest of that tree; the processes of a machine write their forests into
memory they share (an MPI shared-memory window), and the last to arrive merges them; the
machines' first processes merge the machines' forests in ceil(log2 M) rounds of messages (in
round j, machine m with bit j set sends its forest to machine m - 2**j) and the first
broadcasts the root, which each machine's processes read from their shared memory. Every
process then makes the same update from the same bits, so theta, alpha, the optimizer state
and the history equal one process's, for any number of processes, machines and threads (an
MPI reduction would add in an order of its own choosing).

Cost per meta-iteration, for W parameters of b bytes (the sum: 2 x model size for Meta-SGD,
1 x for Reptile) and T tasks: on a machine, each process copies its forest (a few nodes of W
b bytes) in and the root out, and one merges, with no message and no Python call; across M
machines, ceil(log2 M) rounds of messages of at most (2 log2 T + 2) W b bytes (a forest),
then a broadcast of W b bytes (ceil(log2 M) rounds; with two machines a plain message). With
latency L and bandwidth B, that takes about 2 ceil(log2 M) (L + n W b / B) on the critical
path, n the nodes per message, beside the compute of one share.
METAFAST_SHARED_MEMORY=0 (or an MPI without shared-memory windows) makes every process
exchange by messages, as if each were a machine.

Between chunks of meta-iterations the processes agree (one allgather of a few bytes) on the
next chunk, on stopping (the first process's callback, Ctrl-C anywhere) and on failures: a
process that fails makes every process raise (its own error, or :class:`RankError` naming it)
instead of leaving the others waiting. At the start, every process checks that all hold the
same learner (configuration, parameters, optimizer state, iteration) and the same meta-batch.

Waits never spin unbounded. In the core's exchange on a machine a waiting process yields its
core between polls of the shared counter for up to 2 ms (a process that is ready to compute,
another share of the same meta-iteration, runs instead) and then sleeps in the kernel until
the counter moves; the last process to arrive does the merge itself, so a meta-iteration
waits for no process to be scheduled but the slowest. That keeps processes that outnumber
the cores fast: on 2 cores of an AMD EPYC (Zen 5), W4 takes 62 / 73 / 96 us per
meta-iteration on 2 / 4 / 8 processes against 64 us in one process of 2 threads, and 75 /
130 / 295 us by messages alone. Every other wait for another process (the machines'
messages, the agreements) is a non-blocking MPI request that this process polls
(:class:`Waiter`), yielding its core between polls for up to 10 ms, then sleeping between
polls with pauses growing to a millisecond (sleeping sooner costs far more: a sleeping
process also delays the messages it passes on, up to 100x slower, measured). While they
sleep, both check once a second that the processes of the run on their machine are alive:
one that is gone (killed, out of memory) makes them raise :class:`RankError` naming it, and,
as no MPI call can complete with it gone, end the program with ``MPI_Abort`` when it exits.
Launchers end a run whose process died themselves, MPICH's and Open MPI's by default,
SLURM's with ``srun --kill-on-bad-exit=1``; processes on other machines are left to them.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import socket
import time
from typing import Any

import numpy as np

from ._share import FailedElsewhere, RankError, Share, Status

__all__ = ["MachineRelay", "RankError", "TaskRelay", "Waiter", "launched_world", "share_of", "split"]

_RELAY_TAG = 2719  # the forests' messages, apart from anything else the program sends
_TOTAL_TAG = 2720  # the total, sent by the first of two processes to the other
_SIMULATED_MACHINES = 0  # tests: this machine's processes dealt round-robin to this many machines


def split(total: int, parts: int, part: int) -> tuple[int, int]:
    """``(first, count)`` of the tasks that process ``part`` of ``parts`` computes: contiguous,
    in order, sizes within one of each other, the larger shares first (process 0, which
    merges the forests last, finishes last, with the others' forests already there)."""
    size, larger = divmod(total, parts)
    return part * size + min(part, larger), size + (part < larger)


class Waiter:
    """Waits for MPI requests of the processes of ``comm`` without taking a core from those
    that compute.

    A wait polls the request and yields the core between polls (``os.sched_yield``: another
    process that is ready runs, and with none the poll goes on at once) for up to ``spin``
    seconds, then sleeps between polls with pauses doubling from 20 us to 1 ms (a slow
    partner, a chunk boundary). Once a second of sleeping it checks that the run's other
    processes on this machine are alive; one that is gone raises :class:`RankError` naming
    it, now and at every later wait."""

    SPIN = 0.01
    FIRST_PAUSE = 20e-6
    LONGEST_PAUSE = 1e-3
    CHECK_EVERY = 1.0

    def __init__(self, rank: int, size: int, neighbours: list[tuple[int, int]], spin: float = SPIN) -> None:
        self.rank, self.size = rank, size
        self.neighbours = neighbours  # (rank, pid) of the run's other processes on this machine
        self.spin = spin
        self.lost: str | None = None

    @classmethod
    def of(cls, comm: Any) -> "Waiter":
        """The waiter of this process of ``comm`` (a collective call)."""
        rank, host = comm.Get_rank(), socket.gethostname()
        everyone = comm.allgather((host, os.getpid()))
        return cls(rank, comm.Get_size(), [(other, pid) for other, (name, pid) in enumerate(everyone)
                                           if name == host and other != rank])

    def wait(self, request: Any) -> None:
        """Returns once ``request`` is complete."""
        if self.lost:
            raise RankError(self.lost)
        if request.Test():
            return
        started = time.perf_counter()
        spin_until, next_check, pause = started + self.spin, started + self.spin + self.CHECK_EVERY, self.FIRST_PAUSE
        while not request.Test():
            now = time.perf_counter()
            if now < spin_until:
                os.sched_yield()
                continue
            time.sleep(pause)
            pause = min(2 * pause, self.LONGEST_PAUSE)
            if now >= next_check:
                self.check_neighbours()
                next_check = now + self.CHECK_EVERY

    def check_neighbours(self) -> None:
        """RankError when a process of the run on this machine is gone."""
        for rank, pid in self.neighbours:
            if not _alive(pid):
                self.lost = (f"process {rank} of {self.size} (pid {pid} on this machine) was lost: it ended while "
                             f"process {self.rank} waited for it (killed, or out of memory?); the run cannot go on")
                _abort_at_exit()
                raise RankError(self.lost)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (Linux's /proc; elsewhere it counts as alive)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rsplit(b")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        return True
    return state not in (b"Z", b"X")  # a zombie: killed, not yet reaped by its launcher


def _abort_at_exit() -> None:
    """Ends the program with MPI_Abort instead of MPI_Finalize, which would wait for the lost
    process forever (registered after mpi4py's finalizer, so it runs first)."""
    atexit.register(lambda: _mpi().COMM_WORLD.Abort(1))


class TaskRelay:
    """Moves the core's messages of the task tree between the processes of ``comm`` (or the
    machines' first processes): the core merges their forests in ``ceil(log2 R)`` rounds
    (``send`` and ``receive``), then process 0 broadcasts the root (``broadcast``). Process r
    holds tasks ``[bounds[r], bounds[r + 1])``. Messages are bytes in the core's buffers, sent
    and received in place."""

    segment = None  # the core combines by messages alone

    def __init__(self, comm: Any, waiter: Waiter, bounds: list[int]) -> None:
        self.comm, self.rank, self.size = comm, comm.Get_rank(), comm.Get_size()
        self.waiter, self.bounds = waiter, bounds

    def send(self, message: np.ndarray, dest: int) -> None:
        self.waiter.wait(self.comm.Isend(message, dest=dest, tag=_RELAY_TAG))

    def receive(self, message: np.ndarray, source: int) -> None:
        self.waiter.wait(self.comm.Irecv(message, source=source, tag=_RELAY_TAG))

    def broadcast(self, message: np.ndarray) -> None:
        """Process 0's ``message`` everywhere."""
        if self.size > 2:
            self.waiter.wait(self.comm.Ibcast(message, root=0))
        elif self.size == 1:
            return
        elif self.rank == 0:  # one message, without a collective's overhead
            self.waiter.wait(self.comm.Isend(message, dest=1, tag=_TOTAL_TAG))
        else:
            self.waiter.wait(self.comm.Irecv(message, source=0, tag=_TOTAL_TAG))


class MachineRelay:
    """What the core needs to combine the forests of this machine's processes through their
    shared memory (``segment``): this process's index among them (``machine_rank``), their
    tasks (process p of the machine holds ``[machine_bounds[p], machine_bounds[p + 1])``),
    the run's number of ``machines`` and on the machine's first process, where there are
    several, the relay to the other machines (``across``), and ``watch``, which the core
    calls about once a second while it waits: it raises :class:`RankError` when a process of
    the run on this machine is gone."""

    def __init__(self, machine: "_Machine", machine_bounds: list[int], across: TaskRelay | None) -> None:
        self.segment, self.machine_rank = machine.segment, machine.rank
        self.machine_bounds, self.machines, self.across = machine_bounds, len(machine.machines), across
        self.watch = machine.waiter.check_neighbours


class _Machine:
    """The processes of a run on one machine (MPI's shared-memory communicator): the memory
    they share for the core's exchange (None where MPI gives none, or with
    METAFAST_SHARED_MEMORY=0), and the run's processes in machine order (each machine's
    processes adjacent, so that a machine's shares are adjacent tasks). Made once per
    communicator (a collective call) and kept as its attribute."""

    # The segment: a region per process and one for the machine, each up to 1 MiB (a wider
    # forest goes through in blocks of columns), 16 MiB in all at most.
    REGION_BYTES = (64 << 10, 1 << 20)
    SEGMENT_BYTES = 16 << 20
    _keyval: Any = None

    def __init__(self, comm: Any) -> None:
        mpi = _mpi()
        rank = comm.Get_rank()
        self.world = comm
        self.comm = comm.Split_type(mpi.COMM_TYPE_SHARED, key=rank)
        if _SIMULATED_MACHINES:
            self.comm = self.comm.Split(self.comm.Get_rank() % _SIMULATED_MACHINES, key=rank)
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.waiter = Waiter.of(comm)
        first = self.comm.bcast(rank, root=0)  # the machine's name: its first process's rank
        places = comm.allgather((first, self.rank))
        self.order = sorted(range(comm.Get_size()), key=places.__getitem__)  # processes, machine by machine
        self.machines = sorted({first for first, _ in places})
        self.leaders = comm.Split(0 if self.rank == 0 else mpi.UNDEFINED, key=rank)
        self.leaders_waiter = Waiter.of(self.leaders) if self.rank == 0 else None
        self.window, self.segment = None, None
        wanted = os.environ.get("METAFAST_SHARED_MEMORY", "1") != "0"
        if comm.allreduce(wanted, op=mpi.LAND):  # every machine combines alike, or none does
            region = min(max(self.SEGMENT_BYTES // (self.size + 1), self.REGION_BYTES[0]), self.REGION_BYTES[1])
            size = _core().machine_control_bytes + (self.size + 1) * region + 64  # 64: room to align
            try:
                self.window = mpi.Win.Allocate_shared(size if self.rank == 0 else 0, 1, comm=self.comm)
                memory, _ = self.window.Shared_query(0)
            except mpi.Exception:  # an MPI without shared memory: messages
                self.window = None
            if comm.allreduce(self.window is not None, op=mpi.LAND):
                array = np.frombuffer(memory, dtype=np.uint8)
                start = -array.ctypes.data % 64
                self.segment = array[start:start + size - 64]

    @classmethod
    def of(cls, comm: Any) -> "_Machine":
        """The machine of ``comm``'s processes (a collective call the first time)."""
        if cls._keyval is None:
            cls._keyval = _mpi().Comm.Create_keyval()
        machine = comm.Get_attr(cls._keyval)
        if machine is None:
            machine = cls(comm)
            comm.Set_attr(cls._keyval, machine)
        return machine

    def reset(self) -> None:
        """Zeroes the exchange's counters (the machine's first process, while no process of it
        exchanges: before the run's start agreement)."""
        if self.segment is not None and self.rank == 0:
            self.segment[:_core().machine_control_bytes] = 0

    def relay(self, total: int) -> tuple[int, int, Any]:
        """``(first, count, relay)`` of this process's share of meta-batches of ``total``."""
        processes, rank = len(self.order), self.world.Get_rank()
        bounds = [split(total, processes, place)[0] for place in range(processes)] + [total]
        if self.segment is None:  # messages alone, in rank order
            return bounds[rank], bounds[rank + 1] - bounds[rank], TaskRelay(self.world, self.waiter, bounds)
        place = self.order.index(rank)
        machine_first = place - self.rank  # the machine's first process's place
        across = None
        if self.rank == 0 and len(self.machines) > 1:
            starts = [bounds[self.order.index(first)] for first in self.machines]
            across = TaskRelay(self.leaders, self.leaders_waiter, starts + [total])
        relay = MachineRelay(self, bounds[machine_first:machine_first + self.size + 1], across)
        return bounds[place], bounds[place + 1] - bounds[place], relay


class _DistributedShare(Share):
    """A share of a distributed run: the tree's merges in the core, agreements through ``comm``."""

    def __init__(self, comm: Any, total: int, waiter: Waiter, machine: _Machine) -> None:
        self.comm, self.rank, self.waiter = comm, comm.Get_rank(), waiter
        first, count, relay = machine.relay(total)
        super().__init__(total, first, count, relay)

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def abandon(self) -> None:
        if isinstance(self.relay, MachineRelay):
            _core().leave_machine_exchange(self.relay.segment)

    def all_ok(self, ok: bool) -> bool:
        mine, every = np.array([int(ok)], dtype=np.int32), np.zeros(1, dtype=np.int32)
        self.waiter.wait(self.comm.Iallreduce(mine, every, op=_mpi().MIN))
        return bool(every[0])

    def agree(self, status: Status) -> list[Status]:
        # Errors travel as their text (any exception pickles as a string).
        error = status.error
        text = None if error is None else "" if isinstance(error, FailedElsewhere) else _describe(error)
        self.waiter.wait(self.comm.Ibarrier())  # every process is here: the allgather does not wait
        gathered = self.comm.allgather((status.chunk, status.stop, status.interrupted, text))
        return [status if rank == self.rank else Status(chunk, stop, interrupted, _error_of(text))
                for rank, (chunk, stop, interrupted, text) in enumerate(gathered)]


def share_of(learner: Any, comm: Any, meta_batch: int) -> Share:
    """This process's share of ``learner``'s meta-batches in a run over ``comm``, after checking
    that every process holds the same learner and meta-batch."""
    if not hasattr(comm, "Get_rank") or not hasattr(comm, "allgather"):
        raise TypeError(f"comm must be an mpi4py communicator (e.g. MPI.COMM_WORLD), got {type(comm).__name__}")
    machine = _Machine.of(comm)
    machine.reset()
    waiter = machine.waiter
    fingerprint = _fingerprint(learner, meta_batch)
    waiter.wait(comm.Ibarrier())
    prints = comm.allgather(fingerprint)
    differing = [rank for rank, other in enumerate(prints) if other != prints[0]]
    if differing:
        raise ValueError(f"the processes of the run hold different learners or meta-batches (processes "
                         f"{differing} differ from process 0: seed, model, hyperparameters, parameters, "
                         "optimizer state, iteration and meta_batch must be the same everywhere)")
    return _DistributedShare(comm, meta_batch, waiter, machine)


# How launchers tell a process the size of its run: MPICH and Intel MPI (Hydra), Open MPI, PMIx,
# SLURM's srun.
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "SLURM_NTASKS")


def launched_world() -> Any:
    """``MPI.COMM_WORLD`` when this process was started by an MPI launcher (``mpiexec``,
    ``mpirun``, ``srun``) with more than one process, else None (no MPI needed)."""
    sizes = [int(os.environ[name]) for name in _SIZE_VARIABLES if os.environ.get(name, "").isdigit()]
    if not sizes or max(sizes) <= 1:
        return None
    try:
        return _mpi().COMM_WORLD
    except ImportError:
        raise ImportError(f"this process is one of {max(sizes)} started by an MPI launcher, which needs "
                          'mpi4py: pip install "metafast[mpi]"') from None


def _fingerprint(learner: Any, meta_batch: int) -> str:
    """A digest of everything that must be equal on every process of a run."""
    digest = hashlib.sha256(json.dumps([learner._config(), meta_batch], sort_keys=True, default=str).encode())
    for name, array in sorted(learner._state().items()):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _error_of(text: str | None) -> BaseException | None:
    """Another process's error from its text ("": it saw a failure elsewhere)."""
    if text is None:
        return None
    return FailedElsewhere() if text == "" else RankError(text)


def _core() -> Any:
    from ._dispatch import core

    return core


def _mpi() -> Any:
    from mpi4py import MPI

    return MPI
