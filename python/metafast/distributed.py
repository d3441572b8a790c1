"""Meta-batches spread over MPI processes (mpi4py), with the bits of one process.

``learner.fit(tasks, ..., comm=MPI.COMM_WORLD)`` on every process of an MPI run: process r of
R computes a contiguous share of each meta-batch's tasks (task i keeps its random stream
(seed, iteration, i), so the shares are the tasks one process would compute), with its own
threads. The task sums are combined in task order by a relay: process r receives the sum of
the tasks before its share from process r - 1, its core adds its own tasks onto it one after
another, exactly as the threads of one process do, and passes the sum on; the last process
broadcasts the total. Every process then makes the same update from the same bits, so theta,
alpha, the optimizer state and the history equal one process's, for any number of processes
and threads (an MPI reduction would add in an order of its own choosing).

Cost per meta-iteration, for W parameters of b bytes (the sum: 2 x model size for Meta-SGD,
1 x for Reptile): R - 1 relay messages of W b + 16 bytes, one after another, and a broadcast
of W b + 16 bytes (ceil(log2 R) rounds; with two processes a plain message back, which costs
about 0.9 us less than MPICH's broadcast here); each process sends and receives about 2 W b
bytes.
With latency L and bandwidth B, the exchange takes about (R - 1 + ceil(log2 R)) (L + W b / B)
on the critical path, beside the compute of one share.

Between chunks of meta-iterations the processes agree (one allgather of a few bytes) on the
next chunk, on stopping (the first process's callback, Ctrl-C anywhere) and on failures: a
process that fails makes every process raise (its own error, or :class:`RankError` naming it)
instead of leaving the others waiting. At the start, every process checks that all hold the
same learner (configuration, parameters, optimizer state, iteration) and the same meta-batch.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np

from ._share import FailedElsewhere, RankError, Share, Status

__all__ = ["RankError", "TaskRelay", "launched_world", "share_of", "split"]

_RELAY_TAG = 2719  # the relay's messages, apart from anything else the program sends
_TOTAL_TAG = 2720  # the total, sent back by the last of two processes


def split(total: int, parts: int, part: int) -> tuple[int, int]:
    """``(first, count)`` of the tasks that process ``part`` of ``parts`` computes: contiguous,
    in order, sizes within one of each other (the larger shares last)."""
    size, smaller = divmod(total, parts)[0], parts - total % parts
    first = part * size + max(0, part - smaller)
    return first, size + (part >= smaller)


class TaskRelay:
    """The combination of a meta-iteration's task sums across the processes of ``comm``, in
    task order. The core calls ``start`` before it adds this process's tasks and ``finish``
    after, handing over the message in place: the sum, then the score and a flag saying
    whether a process has failed (two float64), as bytes."""

    def __init__(self, comm: Any) -> None:
        self.comm, self.rank, self.size = comm, comm.Get_rank(), comm.Get_size()
        self.first = self.rank == 0  # the core starts the first process's sum at zero itself

    def start(self, message: np.ndarray) -> None:
        """Receives the sum of the tasks before this process's (the first process never asks)."""
        self.comm.Recv(message, source=self.rank - 1, tag=_RELAY_TAG)

    def finish(self, message: np.ndarray) -> None:
        """Passes the sum on; leaves the sum of all tasks, its score and flag, in ``message``."""
        last = self.size - 1
        if self.rank < last:
            self.comm.Send(message, dest=self.rank + 1, tag=_RELAY_TAG)
        if self.size > 2:
            self.comm.Bcast(message, root=last)
        elif self.size == 2:  # one message back, without a collective's overhead
            if self.rank == last:
                self.comm.Send(message, dest=0, tag=_TOTAL_TAG)
            else:
                self.comm.Recv(message, source=last, tag=_TOTAL_TAG)


class _DistributedShare(Share):
    """A share of a distributed run: the relay in the core, agreements through ``comm``."""

    def __init__(self, comm: Any, total: int) -> None:
        rank, size = comm.Get_rank(), comm.Get_size()
        first, count = split(total, size, rank)
        super().__init__(total, first, count, TaskRelay(comm))
        self.comm, self.rank = comm, rank

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def all_ok(self, ok: bool) -> bool:
        return bool(self.comm.allreduce(int(ok), op=_mpi().MIN))

    def agree(self, status: Status) -> list[Status]:
        # Errors travel as their text (any exception pickles as a string).
        error = status.error
        text = None if error is None else "" if isinstance(error, FailedElsewhere) else _describe(error)
        gathered = self.comm.allgather((status.chunk, status.stop, status.interrupted, text))
        return [status if rank == self.rank else Status(chunk, stop, interrupted, _error_of(text))
                for rank, (chunk, stop, interrupted, text) in enumerate(gathered)]


def share_of(learner: Any, comm: Any, meta_batch: int) -> Share:
    """This process's share of ``learner``'s meta-batches in a run over ``comm``, after checking
    that every process holds the same learner and meta-batch."""
    if not hasattr(comm, "Get_rank") or not hasattr(comm, "allgather"):
        raise TypeError(f"comm must be an mpi4py communicator (e.g. MPI.COMM_WORLD), got {type(comm).__name__}")
    fingerprint = _fingerprint(learner, meta_batch)
    prints = comm.allgather(fingerprint)
    differing = [rank for rank, other in enumerate(prints) if other != prints[0]]
    if differing:
        raise ValueError(f"the processes of the run hold different learners or meta-batches (processes "
                         f"{differing} differ from process 0: seed, model, hyperparameters, parameters, "
                         "optimizer state, iteration and meta_batch must be the same everywhere)")
    return _DistributedShare(comm, meta_batch)


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


def _mpi() -> Any:
    from mpi4py import MPI

    return MPI
