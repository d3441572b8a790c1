"""The exchange of task forests through a machine's shared memory (the core's MachineExchange,
which a distributed run's processes on one machine use), driven here by threads standing for
the processes: each thread's learner holds one share of the meta-batch, and all of them must
end with the bits of one learner holding the whole batch."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import metafast as mf

CONTROL_BYTES = mf._core.machine_control_bytes


def segment(bytes_: int) -> np.ndarray:
    """Zeroed memory on a cache line, as the distributed layer's shared window gives it."""
    raw = np.zeros(bytes_ + 64, dtype=np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start:start + bytes_]


class Relay:
    """What distributed.MachineRelay hands the core, for process `rank` of this machine."""

    def __init__(self, memory, rank, bounds, watch=lambda: None):
        self.segment, self.machine_rank, self.machine_bounds = memory, rank, bounds
        self.machines, self.across, self.watch = 1, None, watch


def learner(sizes, dtype):
    return mf.MetaSGD(mf.MLP(sizes), seed=5, num_threads=1, dtype=dtype)


def spread_steps(sizes, dtype, bounds, bytes_, steps=3):
    """`steps` meta-steps of a batch spread over len(bounds) - 1 threads; their thetas and alphas."""
    total = bounds[-1]
    batches = [mf.tasks.Sinusoid().sample(total, seed=step, dtype=dtype) for step in range(steps)]
    memory = segment(bytes_)
    learners = [learner(sizes, dtype) for _ in bounds[:-1]]
    errors = []

    def process(rank):
        first, last = bounds[rank], bounds[rank + 1]
        try:
            for batch in batches:
                learners[rank]._impl.meta_step(batch.x_support[first:last], batch.y_support[first:last],
                                               batch.x_query[first:last], batch.y_query[first:last],
                                               relay=Relay(memory, rank, bounds), first_task=first, total_tasks=total)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=process, args=(rank,)) for rank in range(len(learners))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    alone = learner(sizes, dtype)
    for batch in batches:
        alone._impl.meta_step(batch.x_support, batch.y_support, batch.x_query, batch.y_query)
    return [(l.theta, l.alpha) for l in learners], (alone.theta, alone.alpha)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bounds", [[0, 5], [0, 1, 5], [0, 2, 3, 5], [0, 0, 5, 5], [0, 3, 3, 4, 5]])
def test_a_machines_processes_give_the_bits_of_one(dtype, bounds):
    spread, alone = spread_steps([1, 12, 1], dtype, bounds, 1 << 20)
    for theta, alpha in spread:
        assert np.array_equal(theta, alone[0]) and np.array_equal(alpha, alone[1])


def test_a_forest_wider_than_a_region_goes_through_in_blocks_with_the_same_bits():
    # 2 x 20,601 float64 values (330 KB) per node against regions of 64 KiB: six blocks per exchange
    bytes_ = CONTROL_BYTES + 4 * (64 << 10)
    spread, alone = spread_steps([1, 100, 200, 1], "float64", [0, 3, 6, 7], bytes_, steps=2)
    for theta, alpha in spread:
        assert np.array_equal(theta, alone[0]) and np.array_equal(alpha, alone[1])


def test_a_segment_too_small_for_the_processes_is_refused():
    batch = mf.tasks.Sinusoid().sample(2, dtype="float32")
    with pytest.raises(ValueError, match="a shared segment of 300 bytes is too small for 2 processes"):
        learner([1, 8, 1], "float32")._impl.meta_step(
            batch.x_support[:1], batch.y_support[:1], batch.x_query[:1], batch.y_query[:1],
            relay=Relay(segment(300), 0, [0, 1, 2]), first_task=0, total_tasks=2)


def test_a_wait_for_a_partner_ends_when_watch_raises_and_changes_nothing():
    """The distributed layer's watch raises RankError when a process of the machine is gone;
    the core calls it about once a second of waiting."""
    calls = []

    def watch():
        calls.append(time.perf_counter())
        raise RuntimeError("process 1 of 2 was lost")

    batch = mf.tasks.Sinusoid().sample(2, dtype="float32")
    waiting = learner([1, 8, 1], "float32")
    theta = waiting.theta.copy()
    started = time.perf_counter()
    with pytest.raises(RuntimeError, match="process 1 of 2 was lost"):
        waiting._impl.meta_step(batch.x_support[:1], batch.y_support[:1], batch.x_query[:1], batch.y_query[:1],
                                relay=Relay(segment(1 << 20), 0, [0, 1, 2], watch), first_task=0, total_tasks=2)
    assert len(calls) == 1 and 0.5 < calls[0] - started < 5
    assert np.array_equal(waiting.theta, theta)


def test_a_relay_whose_share_differs_from_the_call_is_refused():
    batch = mf.tasks.Sinusoid().sample(2, dtype="float32")
    with pytest.raises(ValueError, match="the relay's share starts at task 1, not 0"):
        learner([1, 8, 1], "float32")._impl.meta_step(
            batch.x_support[:1], batch.y_support[:1], batch.x_query[:1], batch.y_query[:1],
            relay=Relay(segment(1 << 20), 1, [0, 1, 2]), first_task=0, total_tasks=2)


def test_a_process_that_leaves_the_exchange_ends_the_others_wait_as_failed_elsewhere():
    """What the distributed layer does when a process fails before it reaches the exchange:
    the waiting processes stop within a tick (a tenth of a second), their share failed
    elsewhere, their learner unchanged."""
    batch = mf.tasks.Sinusoid().sample(2, dtype="float32")
    memory, waiting = segment(1 << 20), learner([1, 8, 1], "float32")
    theta = waiting.theta.copy()
    leaving = threading.Timer(0.3, mf._core.leave_machine_exchange, args=(memory,))
    leaving.start()
    started = time.perf_counter()
    answer = waiting._impl.meta_step(batch.x_support[:1], batch.y_support[:1], batch.x_query[:1], batch.y_query[:1],
                                     relay=Relay(memory, 0, [0, 1, 2]), first_task=0, total_tasks=2)
    assert 0.3 <= time.perf_counter() - started < 2
    assert answer[2]  # failed elsewhere
    assert np.array_equal(waiting.theta, theta)


def test_leaving_checks_its_segment():
    with pytest.raises(ValueError, match="segment must be a machine exchange's writeable, aligned shared memory"):
        mf._core.leave_machine_exchange(np.zeros(16, dtype=np.uint8))


def test_processes_that_disagree_on_the_shares_end_with_an_error_and_change_nothing():
    """Process 0 thinks it holds tasks [0, 1) of 4, process 1 [2, 4): whichever merges finds a
    forest that is not the one the shares make, raises, and leaves the exchange; the other's
    share fails elsewhere. Neither learner moves."""
    batch = mf.tasks.Sinusoid().sample(4, dtype="float32")
    memory = segment(1 << 20)
    shares = [(0, 1, [0, 1, 4]), (2, 4, [0, 2, 4])]
    learners = [learner([1, 8, 1], "float32") for _ in shares]
    thetas = [l.theta.copy() for l in learners]
    outcomes = [None, None]

    def process(rank):
        first, last, bounds = shares[rank]
        try:
            outcomes[rank] = learners[rank]._impl.meta_step(
                batch.x_support[first:last], batch.y_support[first:last], batch.x_query[first:last],
                batch.y_query[first:last], relay=Relay(memory, rank, bounds), first_task=first, total_tasks=4)
        except RuntimeError as error:
            outcomes[rank] = error

    threads = [threading.Thread(target=process, args=(rank,)) for rank in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    errors = [o for o in outcomes if isinstance(o, RuntimeError)]
    answers = [o for o in outcomes if isinstance(o, tuple)]
    assert len(errors) == 1 and len(answers) == 1, outcomes
    assert "wrote" in str(errors[0]) or "starts at task" in str(errors[0])
    assert answers[0][2]  # failed elsewhere
    for l, theta in zip(learners, thetas):
        assert np.array_equal(l.theta, theta)
