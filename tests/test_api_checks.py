"""Mistakes a new user makes in the first hour get an error that says what to do."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import metafast as mf


def test_a_family_class_instead_of_an_instance_is_named():
    with pytest.raises(TypeError, match=r"not the class Sinusoid: give Sinusoid\(\)"):
        mf.MetaSGD(mf.MLP([1, 8, 1])).fit(mf.tasks.Sinusoid, iterations=1, progress=False)


def test_a_sampler_returning_another_number_of_tasks_is_refused():
    def sampler(num_tasks, rng):
        return mf.tasks.Sinusoid().sample(num_tasks + 1, dtype="float32")

    with pytest.raises(ValueError, match="asked for 4 tasks but returned 5"):
        mf.MetaSGD(mf.MLP([1, 8, 1])).fit(sampler, iterations=1, meta_batch=4, progress=False)


def test_a_task_index_out_of_range_is_an_index_error():
    batch = mf.tasks.Sinusoid().sample(4)
    with pytest.raises(IndexError, match="task 10 is out of range for a batch of 4 tasks"):
        batch[10]
    assert batch[-1].num_tasks == 1 and batch[3].num_tasks == 1


def test_a_checkpoint_without_checkpoint_every_is_refused(tmp_path):
    with pytest.raises(ValueError, match="checkpoint needs checkpoint_every"):
        mf.MetaSGD(mf.MLP([1, 8, 1])).fit(mf.tasks.Sinusoid(), iterations=1, progress=False,
                                          checkpoint=tmp_path / "m.npz")


def test_adam_betas_need_not_be_increasing():
    learner = mf.MetaSGD(mf.MLP([1, 8, 1]), adam_betas=(0.999, 0.9))
    learner.fit(mf.tasks.Sinusoid(), iterations=2, meta_batch=2, progress=False)
    assert np.all(np.isfinite(learner.theta))


def test_divergence_at_the_first_iteration_says_what_is_kept_and_what_to_change():
    batch = mf.tasks.Sinusoid().sample(2, dtype="float32")
    meta_sgd = mf.MetaSGD(mf.MLP([1, 8, 1]), alpha_init=1e30)
    with pytest.raises(mf.TrainingDivergedError, match=r"keeps its initial parameters \(try a smaller meta_lr"):
        meta_sgd.meta_step(batch)
    reptile = mf.Reptile(mf.MLP([1, 8, 1]), inner_optimizer="sgd", inner_lr=1e30)
    with pytest.raises(mf.TrainingDivergedError, match=r"\(try a smaller inner_lr or epsilon\)"):
        reptile.meta_step(batch)


def test_a_chained_reptile_cannot_be_spread_over_processes():
    learner = mf.Reptile(mf.MLP([1, 8, 1]), reset_optimizer=False)
    with pytest.raises(ValueError, match="comm needs reset_optimizer=True"):
        learner.fit(mf.tasks.Sinusoid(), iterations=1, progress=False, comm=object())


RAISING_RELAY = """
import metafast as mf
class Relay:  # a combination across processes that fails (as an MPI error would)
    rank, size, bounds, segment = {rank}, 2, {bounds}, None
    def send(self, message, dest):
        raise RuntimeError("the relay broke")
    def receive(self, message, source):
        raise RuntimeError("the relay broke")
    def broadcast(self, message):
        raise RuntimeError("the relay broke")
learner = mf.MetaSGD(mf.MLP([1, 8, 1]), num_threads=1)
batch = mf.tasks.Sinusoid().sample(4, dtype="float32")
try:
    learner._impl.meta_step(batch.x_support, batch.y_support, batch.x_query, batch.y_query, relay=Relay(),
                            first_task=0, total_tasks=4)
except RuntimeError as error:
    print(error)
"""


@pytest.mark.parametrize("rank", [0, 1])
def test_a_failing_combination_across_processes_is_an_exception_not_a_crash(rank):
    done = subprocess.run([sys.executable, "-c", RAISING_RELAY.format(rank=rank, bounds=[0, 4 * (1 - rank), 4])], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "the relay broke"


class MalformedRelay:
    """Process 0 of 2, sent a forest that is not the one process 1's share of tasks makes."""

    rank, size, bounds, segment = 0, 2, [0, 2, 4], None

    def __init__(self, words):
        self.words = words  # (word index, value) written into the received message's header

    def receive(self, message, source):
        header = message.view(np.uint64)
        for index, value in self.words:
            header[index] = value

    def send(self, message, dest):
        raise AssertionError("process 0 only receives")

    broadcast = send


@pytest.mark.parametrize("words, error", [
    ([(0, 3)], "a relay message holds 3 nodes of the task tree, 1 expected"),
    ([(0, 1), (2, 3)], "a relay message starts at task 3, task 2 expected")])
def test_a_malformed_message_from_another_process_is_an_error_and_changes_nothing(words, error):
    learner = mf.MetaSGD(mf.MLP([1, 8, 1]), num_threads=1)
    batch = mf.tasks.Sinusoid().sample(4, dtype="float32")
    theta = learner.theta.copy()
    with pytest.raises(RuntimeError, match=error):
        learner._impl.meta_step(batch.x_support[:2], batch.y_support[:2], batch.x_query[:2], batch.y_query[:2],
                                relay=MalformedRelay(words), first_task=0, total_tasks=4)
    assert np.array_equal(learner.theta, theta)


def test_a_negative_initial_learning_rate_is_refused():
    with pytest.raises(ValueError, match="alpha_init must be >= 0.0, got -0.1"):
        mf.MetaSGD(mf.MLP([1, 4, 1]), alpha_init=-0.1)
    with pytest.raises(ValueError, match=r"alpha_init\[0\] must be >= 0.0, got -0.1"):
        mf.MetaSGD(mf.MLP([1, 4, 1]), alpha_init=(-0.1, 0.1))
    with pytest.raises(ValueError, match="alpha_init must be >= 0.0, got -1.0"):
        mf.rl.MetaSGDRL(mf.MLP([2, 4, 2]), alpha_init=-1.0)
    assert np.all(mf.MetaSGD(mf.MLP([1, 4, 1]), alpha_init=0.0).alpha == 0)  # zero: no step until meta-learned
