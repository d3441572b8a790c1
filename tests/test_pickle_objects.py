"""Pickle (protocols 2 to 5) and copy of the model, the task families, TaskBatch and
EvaluationReport: every round trip gives an equal object that computes the same bits and owns
its core object; a pickled payload is rebuilt through the public constructor, so a tampered one
is refused with the error user input gets."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import metafast as mf
from conftest import COPIERS
from metafast.tasks import (
    Classification,
    GaussianNWay,
    LinearBinary,
    Regression,
    SeedBinary,
    Sinusoid,
    TaskPool,
)
from metafast.tasks.family import _rebuilt

RNG = np.random.default_rng(3)
FEATURES, LABELS = RNG.normal(size=(60, 3)), np.arange(60) % 6
X, Y_1D, TASK_IDS = RNG.normal(size=(40, 2)), RNG.normal(size=40), np.arange(40) % 4
POOL = mf.TaskBatch(RNG.normal(size=(5, 4, 2)), RNG.normal(size=(5, 4, 1)), RNG.normal(size=(5, 3, 2)),
                    RNG.normal(size=(5, 3, 1)))
LABEL_POOL = mf.TaskBatch(RNG.normal(size=(5, 4, 2)).astype(np.float32), RNG.integers(0, 3, size=(5, 4)),
                          RNG.normal(size=(5, 3, 2)).astype(np.float32), RNG.integers(0, 3, size=(5, 3)))
REPORT = mf.EvaluationReport.from_samples((0, 1, 5), RNG.normal(size=(7, 3)) ** 2, RNG.uniform(size=(7, 3)))
ONE_TASK_REPORT = mf.EvaluationReport.from_samples((0, 1), np.array([[1.0, np.inf]]), None)  # NaN and inf inside

FAMILIES = {
    "Sinusoid": Sinusoid(amplitude=(0.5, 2.0), support=4, query=3),
    "Sinusoid.book": Sinusoid.book(support=5, query=5),
    "LinearBinary": LinearBinary(dim=4, support=3, query=2),
    "SeedBinary": SeedBinary(dim=4, support=3, query=2),
    "GaussianNWay": GaussianNWay(ways=3, dim=2, support=2, query=2, spread=0.3),
    "Classification": Classification(FEATURES, LABELS, ways=3, shots=2, query=3, classes=[0, 2, 3, 5]),
    "Regression": Regression(X, Y_1D, TASK_IDS, support=3, query=4, tasks=[3, 1, 2]),
    "TaskPool": TaskPool(POOL),
    "TaskPool-labels": TaskPool(LABEL_POOL, classes=4),
}
MODELS = {
    "MLP-tanh": mf.MLP([1, 8, 8, 1], activation="tanh"),
    "MLP-sigmoid-output-no-bias": mf.MLP([3, 5, 2], activation="relu", output="sigmoid", bias=False),
}
OTHERS = {
    "TaskBatch": POOL,
    "TaskBatch-labels-float32": LABEL_POOL,
    "EvaluationReport": REPORT,
    "EvaluationReport-NaN": ONE_TASK_REPORT,
}
OBJECTS = {**MODELS, **FAMILIES, **OTHERS}


@pytest.mark.parametrize("copier", COPIERS.values(), ids=COPIERS.keys())
@pytest.mark.parametrize("obj", OBJECTS.values(), ids=OBJECTS.keys())
def test_round_trip_gives_an_equal_object(obj, copier):
    copied = copier(obj)
    assert type(copied) is type(obj)
    assert copied == obj and not copied != obj
    assert repr(copied) == repr(obj)


@pytest.mark.parametrize("copier", COPIERS.values(), ids=COPIERS.keys())
@pytest.mark.parametrize("model", MODELS.values(), ids=MODELS.keys())
def test_model_copy_computes_the_same_bits_with_its_own_core_object(model, copier):
    copied = copier(model)
    assert copied._impl is not model._impl
    theta = model.init(seed=4) + 0.1
    x = np.linspace(-1, 1, 6 * model.sizes[0]).reshape(6, -1)
    np.testing.assert_array_equal(copied.forward(theta, x), model.forward(theta, x))
    assert copied.forward(theta, x).dtype == np.float64


@pytest.mark.parametrize("copier", COPIERS.values(), ids=COPIERS.keys())
@pytest.mark.parametrize("family", FAMILIES.values(), ids=FAMILIES.keys())
def test_family_copy_samples_the_same_bits_with_its_own_core_object(family, copier):
    copied = copier(family)
    assert copied._impl is not family._impl
    for dtype in ("float64", "float32"):
        expected, actual = family.sample(3, seed=1, iteration=2, dtype=dtype), copied.sample(3, seed=1, iteration=2,
                                                                                            dtype=dtype)
        assert actual == expected
        for name in ("x_support", "y_support", "x_query", "y_query"):
            assert getattr(actual, name).dtype == getattr(expected, name).dtype
            assert getattr(actual, name).tobytes() == getattr(expected, name).tobytes()
    assert getattr(copied, "fingerprint", None) == getattr(family, "fingerprint", None)


def test_data_family_keeps_its_data_from_later_changes_of_the_users_arrays():
    features = FEATURES.copy()
    family = Classification(features, LABELS, ways=3, shots=2, query=3)
    before = family.sample(2, seed=0)
    features[:] = 0.0
    assert pickle.loads(pickle.dumps(family)).sample(2, seed=0) == before


def test_batch_equality_compares_dtypes_and_values():
    assert POOL != POOL.astype("float32")
    changed = mf.TaskBatch(POOL.x_support, POOL.y_support + 1, POOL.x_query, POOL.y_query)
    assert POOL != changed and POOL != "a batch"


def test_report_equality_compares_dtypes_and_values_as_batches_do():
    """One helper (`_validation.same_array`) decides both equalities: NaN equals NaN, another
    dtype or another value differs."""
    twin = mf.EvaluationReport.from_samples((0, 1), np.array([[1.0, np.inf]]), None)
    assert twin == ONE_TASK_REPORT and np.isnan(twin.loss_ci95).all()
    fields = {name: getattr(ONE_TASK_REPORT, name) for name in ONE_TASK_REPORT.__dataclass_fields__}
    assert mf.EvaluationReport(**{**fields, "loss": ONE_TASK_REPORT.loss.astype(np.float32)}) != ONE_TASK_REPORT
    assert mf.EvaluationReport(**{**fields, "loss": ONE_TASK_REPORT.loss + 1}) != ONE_TASK_REPORT
    assert mf.EvaluationReport(**{**fields, "accuracy": np.zeros(2)}) != ONE_TASK_REPORT  # an array against None


SAME_ARRAY = {
    "nan-equals-nan": (np.array([1.0, np.nan]), np.array([1.0, np.nan]), True),
    "complex-nan": (np.array([np.nan + 0j]), np.array([np.nan + 0j]), True),
    "integers": (np.arange(3), np.arange(3), True),
    "another-dtype": (np.zeros(2), np.zeros(2, np.float32), False),
    "another-shape": (np.zeros(2), np.zeros((1, 2)), False),
    "another-value": (np.zeros(2), np.array([0.0, 1.0]), False),
}


@pytest.mark.parametrize("a,b,same", SAME_ARRAY.values(), ids=SAME_ARRAY.keys())
def test_same_array(a, b, same):
    from metafast import _validation

    assert _validation.same_array(a, b) is same and _validation.same_array(b, a) is same


class Payload:
    """Pickles as ``function(*args)``: a payload crafted or tampered with by hand."""

    def __init__(self, function, *args):
        self.reduced = (function, args)

    def __reduce__(self):
        return self.reduced


def loads(function, *args):
    return pickle.loads(pickle.dumps(Payload(function, *args), protocol=2))


TAMPERED = {
    "MLP-zero-width": ((mf.MLP, [1, 0, 1], "relu", "identity", True), ValueError, r"sizes\[1\] must be at least 1, got 0"),
    "MLP-negative-width": ((mf.MLP, [1, -5, 1], "relu", "identity", True), ValueError, r"sizes\[1\] must be at least 1, got -5"),
    "MLP-huge-width": ((mf.MLP, [1, 2**40, 1], "relu", "identity", True), ValueError, r"sizes\[1\] must be at most 16777216"),
    "MLP-float-width": ((mf.MLP, [1, 2.5, 1], "relu", "identity", True), TypeError, "must be an integer"),
    "MLP-unknown-activation": ((mf.MLP, [1, 2, 1], "evil", "identity", True), ValueError, "activation must be one of"),
    "MLP-bias-string": ((mf.MLP, [1, 2, 1], "relu", "identity", "yes"), TypeError, "bias must be True or False"),
    "Sinusoid-reversed-amplitude": ((_rebuilt, Sinusoid, dict(amplitude=(5.0, 0.1))), ValueError, "amplitude"),
    "Sinusoid-string-phase": ((_rebuilt, Sinusoid, dict(phase="ab")), TypeError, "phase must be a pair"),
    "LinearBinary-negative-dim": ((_rebuilt, LinearBinary, dict(dim=-3)), ValueError, "dim"),
    "GaussianNWay-one-way": ((_rebuilt, GaussianNWay, dict(ways=1)), ValueError, "ways"),
    "Regression-nan-data": ((_rebuilt, Regression, dict(x=np.full((8, 1), np.nan), y=np.zeros(8),
                                                        task_ids=np.zeros(8, dtype=int), support=2, query=2)),
                            ValueError, "x contains NaN or infinity"),
    "Classification-float-labels": ((_rebuilt, Classification, dict(features=FEATURES, labels=LABELS * 1.0)),
                                    TypeError, "labels must hold integers"),
    "TaskPool-label-beyond-classes": ((_rebuilt, TaskPool, dict(batch=LABEL_POOL, classes=2)), ValueError,
                                      r"labels in \[0, 2\)"),
    "rebuilt-not-a-family": ((_rebuilt, dict, dict(a=1)), TypeError, "must name a TaskFamily class"),
    "rebuilt-arguments-not-dict": ((_rebuilt, Sinusoid, [1, 2]), TypeError, "arguments must be a dict"),
    "TaskBatch-task-counts-differ": ((mf.TaskBatch, POOL.x_support, POOL.y_support, POOL.x_query[:2],
                                      POOL.y_query[:2]), ValueError, "same number of tasks"),
    "TaskBatch-object-array": ((mf.TaskBatch, np.array([[["a"]]], dtype=object), POOL.y_support, POOL.x_query,
                                POOL.y_query), TypeError, "x_support must be a float32 or float64 array"),
}


@pytest.mark.parametrize("payload,error,message", TAMPERED.values(), ids=TAMPERED.keys())
def test_tampered_payload_is_refused_as_user_input_is(payload, error, message):
    with pytest.raises(error, match=message):
        loads(*payload)


def test_edited_state_of_a_real_pickle_is_refused():
    """The widths of a real pickle of MLP([1, 7, 1]) edited in its bytes to 0 and to -7."""
    data = pickle.dumps(mf.MLP([1, 7, 1]), protocol=2)
    assert data.count(b"K\x07") == 1  # BININT1 7: the hidden width
    with pytest.raises(ValueError, match=r"sizes\[1\] must be at least 1, got 0"):
        pickle.loads(data.replace(b"K\x07", b"K\x00"))
    with pytest.raises(ValueError, match=r"sizes\[1\] must be at least 1, got -7"):
        pickle.loads(data.replace(b"K\x07", b"J\xf9\xff\xff\xff"))  # BININT -7


@pytest.mark.parametrize("obj", OBJECTS.values(), ids=OBJECTS.keys())
def test_repr_names_the_type_and_summarises_without_dumping_arrays(obj):
    text = repr(obj)
    assert text.startswith(type(obj).__name__ + "(") and text.endswith(")")
    assert "array(" not in text and "\n" not in text and len(text) < 250


def test_repr_of_batch_and_report():
    assert repr(LABEL_POOL) == ("TaskBatch(5 tasks: x_support float32 (5, 4, 2), y_support int64 (5, 4), "
                                "x_query float32 (5, 3, 2), y_query int64 (5, 3))")
    assert repr(ONE_TASK_REPORT) == ("EvaluationReport(num_tasks=1, steps=(0, 1), metric='query loss', "
                                     "loss=[1, nan], accuracy=None, diverged=[0, 1])")
    long = mf.EvaluationReport.from_samples(tuple(range(12)), np.full((3, 12), 0.123456), None)
    assert "loss=[0.1235, 0.1235, 0.1235, 0.1235, 0.1235, 0.1235, 0.1235, 0.1235, ...]" in repr(long)
