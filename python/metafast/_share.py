"""A process's share of a meta-batch, and how the processes of a run agree.

One process (the usual case) holds every task of the meta-batch and agrees with itself. In a
distributed run (:mod:`metafast.distributed`) each process holds a contiguous range of the
tasks, the core combines the task sums across processes over the task tree, and the processes
agree, at every boundary between chunks of meta-iterations, on the next chunk and on whether
to stop or fail, so that none waits for a partner that will never come.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence


class FailedElsewhere(Exception):
    """Another process's share of a meta-iteration failed; its error comes at the next
    agreement."""


@dataclass
class Status:
    """What a process brings to an agreement between chunks."""

    chunk: int  # the meta-iterations it proposes for the next chunk (the first process's count)
    stop: bool = False  # its callback asked to stop (the first process's decides)
    interrupted: bool = False  # Ctrl-C arrived
    error: Optional[BaseException] = None  # what failed here since the last agreement


class Share:
    """Tasks ``[first, first + count)`` of a meta-batch of ``total``, combined with the other
    processes' by ``relay`` (None: this process holds them all)."""

    def __init__(self, total: int, first: int = 0, count: int | None = None, relay: Any = None) -> None:
        self.total, self.first = total, first
        self.count = total if count is None else count
        self.relay = relay
        self._failed_elsewhere = False

    @property
    def is_root(self) -> bool:
        """Whether this process writes the run's files and shows its progress."""
        return True

    def core(self) -> dict[str, Any]:
        """The keyword arguments that hand the core this share and its relay."""
        return {} if self.relay is None else dict(relay=self.relay, first_task=self.first, total_tasks=self.total)

    def of(self, arrays: Sequence[Any]) -> tuple[Any, ...]:
        """This share's tasks of a batch's arrays (tasks first)."""
        if self.relay is None:
            return tuple(arrays)
        return tuple(a[self.first:self.first + self.count] for a in arrays)

    def result(self, answer: tuple[Any, Any, bool]) -> tuple[Any, Any]:
        """The core's answer ``(first, second, failed_elsewhere)`` without its last part, which
        :meth:`raise_if_failed_elsewhere` raises once what the core completed is recorded."""
        self._failed_elsewhere = bool(answer[2])
        return answer[0], answer[1]

    def raise_if_failed_elsewhere(self) -> None:
        """FailedElsewhere when the core's last answer reported another process's failure."""
        if self._failed_elsewhere:
            self._failed_elsewhere = False
            raise FailedElsewhere

    def abandon(self) -> None:
        """Tells the other processes, where they may be waiting for this one in the core's
        exchange, that it failed before it got there (a distributed run on one machine)."""

    def all_ok(self, ok: bool) -> bool:
        """Whether every process is ready (one collective call per meta-iteration on paths
        where Python runs between them, such as a user's sampler)."""
        return ok

    def agree(self, status: Status) -> list[Status]:
        """Every process's status, in process order (one collective call per boundary)."""
        return [status]


class RankError(RuntimeError):
    """Raised by every other process of a distributed run when one process failed."""


def raise_agreed_error(statuses: Sequence[Status], own: BaseException | None) -> None:
    """Raises, in every process, the error one of them met since the last agreement: its
    own where this process failed, else a RankError naming the first that did."""
    failed = [(rank, status.error) for rank, status in enumerate(statuses)
              if status.error is not None and not isinstance(status.error, FailedElsewhere)]
    if own is not None and not isinstance(own, FailedElsewhere):
        raise own
    if failed:
        rank, error = failed[0]
        raise RankError(f"process {rank} of {len(statuses)} failed: {error}")
    if own is not None and not any(status.interrupted for status in statuses):
        # failed elsewhere, yet no process says why (a process stopped by Ctrl-C says so)
        raise RankError("a process of the run failed without saying why")
