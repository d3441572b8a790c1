"""Sizes at and beyond the limits give clear errors, never a crash (regressions of a review)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import metafast as mf
from metafast import _core
from metafast.tasks import LinearBinary, Sinusoid

X = np.ones((3, 1))


def test_reptile_batch_larger_than_the_support_set_is_full_batch():
    for shuffle in (False, True):
        learner = mf.Reptile(mf.MLP([1, 4, 1]), inner_batch=2**31, shuffle=shuffle, dtype="float64")
        full = mf.Reptile(mf.MLP([1, 4, 1]), inner_batch=3, shuffle=False, dtype="float64")
        np.testing.assert_array_equal(learner.adapt(X, X, steps=2), full.adapt(X, X, steps=2))


TOO_BIG = {
    "inner-batch": (lambda: mf.Reptile(mf.MLP([1, 4, 1]), inner_batch=2**64 - 1), r"inner_batch must fit in 64 bits"),
    "inner-epochs": (lambda: mf.Reptile(mf.MLP([1, 4, 1]), inner_epochs=2**40), r"inner_epochs must lie in \[1, 16777216\], got 1099511627776"),
    "inner-steps": (lambda: mf.MetaSGD(mf.MLP([1, 5, 1]), inner_steps=2**60), r"inner_steps must lie in \[1, 100000\]"),
    "width": (lambda: mf.MLP([2**64 - 1, 1]), r"^sizes\[0\] must be at most 16777216, got 18446744073709551615$"),
    "raw-width": (lambda: _core.MLP([2**30, 1], "relu", "identity", False), r"sizes must lie in \[1, 16777216\]"),
    "raw-params": (lambda: _core.MLP([2**24, 2**24], "relu", "identity", False), "more than 68719476736 parameters"),
    "threads": (lambda: mf.MetaSGD(mf.MLP([1, 4, 1]), num_threads=5000), "num_threads must be at most 1024"),
    "raw-threads": (lambda: _core.sample_tasks(Sinusoid()._impl, 2, 0, 0, "float64", 5000), r"num_threads must lie in \[0, 1024\]"),
    "seed": (lambda: mf.MetaSGD(mf.MLP([1, 4, 1]), seed=2**64), "seed must be at most"),
    "meta-batch": (lambda: mf.MetaSGD(mf.MLP([1, 4, 1])).fit(Sinusoid(), iterations=1, meta_batch=2**40), "meta_batch must be at most"),
    "num-tasks": (lambda: Sinusoid().sample(2**40), "num_tasks must be at most"),
}


@pytest.mark.parametrize("call,message", TOO_BIG.values(), ids=TOO_BIG.keys())
def test_sizes_beyond_the_limits_are_value_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_failed_fit_keeps_the_recorded_task_family():
    learner = mf.MetaSGD(mf.MLP([1, 4, 1]))
    learner.fit(Sinusoid(), iterations=1, meta_batch=2, progress=False)
    with pytest.raises(ValueError):
        learner.fit(LinearBinary(dim=5), iterations=1, progress=False)
    assert learner.tasks == Sinusoid()
    learner.fit(lambda n, rng: Sinusoid().sample(n, seed=int(rng.integers(100))), iterations=1, meta_batch=2,
                progress=False)
    assert learner.tasks is None  # trained on a sampler: nothing to record


def test_damaged_model_files(tmp_path):
    learner = mf.MetaSGD(mf.MLP([1, 4, 1]))
    learner.save(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz") as archive:
        arrays = {name: archive[name] for name in archive.files}
    broken = dict(arrays)
    del broken["format_version"]
    np.savez(tmp_path / "no-version.npz", **broken)
    not_object = dict(arrays, config=np.array(json.dumps([1, 2])))
    np.savez(tmp_path / "list-config.npz", **not_object)
    bad_model = dict(arrays, config=np.array(json.dumps({"kind": "MetaSGD", "model": {"sizes": "x"}})))
    np.savez(tmp_path / "bad-model.npz", **bad_model)
    for name, message in (("no-version", "no readable format version"), ("list-config", "not an object"),
                          ("bad-model", "damaged config|lacks the entry")):
        with pytest.raises(ValueError, match=message):
            mf.load(tmp_path / f"{name}.npz")


def test_memory_checks_name_the_request(monkeypatch):
    from metafast import _memory

    monkeypatch.setattr(_memory, "available_bytes", lambda: 10 * 2**20)  # a machine with 10 MiB free
    with pytest.raises(ValueError, match=r"sampling 100,000 tasks needs about .* GiB"):
        Sinusoid().sample(100_000)
    with pytest.raises(ValueError, match="a meta-batch of 5000 tasks needs about"):
        mf.MetaSGD(mf.MLP([1, 64, 64, 1])).fit(Sinusoid(), iterations=1, meta_batch=5000, progress=False)
    Sinusoid().sample(10)  # small requests pass
