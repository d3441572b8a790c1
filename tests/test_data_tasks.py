"""Task families from the user's data (Classification, Regression, TaskPool and fit on a
TaskBatch): episodes that follow their definition, reproducibility from (seed, iteration, task)
at any thread count, disjoint class splits, clear errors for data that cannot fill a task, and
what a saved learner records of them."""

from __future__ import annotations

import numpy as np
import pytest

import metafast as mf
from metafast.tasks import Classification, Regression, TaskPool, split_classes

ARRAYS = ("x_support", "y_support", "x_query", "y_query")


def labelled_rows(classes=8, per_class=12, width=3, seed=0):
    """Rows whose first feature is the row's index, so a drawn row can be traced back."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes) * 10 + 3, per_class)  # ids need not be 0..N-1
    rng.shuffle(labels)
    features = rng.normal(size=(labels.size, width))
    features[:, 0] = np.arange(labels.size)
    return features, labels


def assert_same_batch(a, b):
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_classification_episodes_follow_their_definition():
    features, labels = labelled_rows()
    chosen = np.array([3, 23, 43, 53, 73])
    family = Classification(features, labels, ways=4, shots=2, query=3, classes=chosen)
    batch = family.sample(50, seed=5)
    assert batch.x_support.shape == (50, 8, 3) and batch.x_query.shape == (50, 12, 3)
    for t in range(batch.num_tasks):
        np.testing.assert_array_equal(batch.y_support[t], np.arange(8) % 4)
        np.testing.assert_array_equal(batch.y_query[t], np.arange(12) % 4)
        rows = np.concatenate([batch.x_support[t, :, 0], batch.x_query[t, :, 0]]).astype(int)
        np.testing.assert_array_equal(np.concatenate([batch.x_support[t], batch.x_query[t]]), features[rows])
        assert len(set(rows)) == rows.size  # without replacement within the episode
        episode_labels = np.concatenate([batch.y_support[t], batch.y_query[t]])
        source = labels[rows]
        for way in range(4):  # one source class per episode label, distinct, from the chosen ones
            assert len(set(source[episode_labels == way])) == 1
        assert len(set(source)) == 4 and set(source) <= set(chosen)


def test_classification_draws_every_class_and_row_evenly():
    features, labels = labelled_rows(classes=5, per_class=10)
    batch = Classification(features, labels, ways=3, shots=1, query=2).sample(3000, seed=1)
    rows = np.concatenate([batch.x_support[..., 0].ravel(), batch.x_query[..., 0].ravel()]).astype(int)
    row_counts = np.bincount(rows, minlength=features.shape[0])
    expected = rows.size / features.shape[0]  # each of the 50 rows: 3000 * 9 / 50 = 540 times
    assert np.all(np.abs(row_counts - expected) < 5 * np.sqrt(expected))
    # The class given label 0 is each class equally often.
    first = labels[batch.x_support[:, 0, 0].astype(int)]
    counts = np.unique(first, return_counts=True)[1]
    assert counts.size == 5 and np.all(np.abs(counts - 600) < 5 * np.sqrt(600))


def test_data_families_are_keyed_by_seed_iteration_and_index():
    features, labels = labelled_rows()
    families = [Classification(features, labels, ways=3, shots=2, query=4),
                Regression(features, features[:, 1], labels, support=3, query=4)]
    for family in families:
        batch = family.sample(7, seed=11, iteration=4, num_threads=2)
        assert_same_batch(batch, family.sample(7, seed=11, iteration=4, num_threads=1))
        assert_same_batch(batch[:3], family.sample(3, seed=11, iteration=4))
        assert not np.array_equal(family.sample(7, seed=11, iteration=5).x_support, batch.x_support)
        assert not np.array_equal(family.sample(7, seed=12, iteration=4).x_support, batch.x_support)


def test_float32_features_stay_float32_until_sampled():
    features, labels = labelled_rows()
    single = Classification(features.astype(np.float32), labels, ways=3, shots=1, query=2)
    batch = single.sample(4, seed=2, dtype="float64")
    np.testing.assert_array_equal(batch.x_support, batch.x_support.astype(np.float32).astype(np.float64))
    assert_same_batch(batch.astype("float32"), single.sample(4, seed=2, dtype="float32"))


HUGE = np.full((40, 1), 1e39)  # finite in float64, infinite in float32
ROWS = np.arange(40.0).reshape(-1, 1)
HUGE_POOL = mf.TaskBatch(np.zeros((2, 3, 1)), np.zeros((2, 3, 1)), np.zeros((2, 2, 1)), np.full((2, 2, 1), -1e39))
BEYOND_FLOAT32 = {
    "regression-y": (lambda: Regression(ROWS, HUGE, np.arange(40) % 4, support=3, query=3), "y"),
    "regression-x": (lambda: Regression(HUGE, ROWS, np.arange(40) % 4, support=3, query=3), "x"),
    "classification-features": (lambda: Classification(np.hstack([ROWS, HUGE]), np.arange(40) % 4, ways=2, shots=3,
                                                       query=3), "features"),
    "pool-y_query": (lambda: TaskPool(HUGE_POOL), "y_query"),
}


@pytest.mark.parametrize("make,name", BEYOND_FLOAT32.values(), ids=BEYOND_FLOAT32.keys())
def test_float32_tasks_from_data_beyond_float32s_range_are_refused(make, name):
    family = make()
    assert np.isfinite(family.sample(2).x_support).all()  # float64 tasks hold the data as it is
    with pytest.raises(ValueError, match=f"^{name} has values beyond the range of float32 .largest magnitude 1e"
                                         f"\\+39, above float32's maximum 3.403e\\+38.: {type(family).__name__} "
                                         "cannot draw float32 tasks"):
        family.sample(2, dtype="float32")
    batch = family.sample(2)
    with pytest.raises(ValueError, match=r"_(support|query) has values beyond the range of float32 \(largest "
                                         "magnitude 1e\\+39, above float32's maximum"):
        batch.astype("float32")  # TaskBatch.astype: the same check, the same words


def test_float32_tasks_from_data_just_within_float32s_range_are_drawn():
    largest = float(np.finfo(np.float32).max)
    family = Regression(ROWS, np.full((40, 1), -largest), np.arange(40) % 4, support=3, query=3)
    assert (family.sample(2, dtype="float32").y_support == -np.float32(largest)).all()
    single = Regression(ROWS.astype(np.float32), ROWS.astype(np.float32), np.arange(40) % 4, support=3, query=3)
    assert single._magnitudes == {}  # float32 data always fits


def test_families_keep_their_own_copy_of_the_data():
    features, labels = labelled_rows()
    family = Classification(features, labels, ways=3, shots=1, query=2)
    before = family.sample(4, seed=3)
    features[:] = 0.0
    labels[:] = 3
    assert_same_batch(before, family.sample(4, seed=3))


def test_regression_tasks_come_from_one_task_id_each():
    rng = np.random.default_rng(0)
    ids = rng.permutation(np.repeat(np.arange(6), 9))
    x = rng.uniform(-1, 1, size=(ids.size, 2))
    y = np.column_stack([ids + 0.1 * x[:, 0], np.arange(ids.size)])  # y[:, 1] traces the row
    family = Regression(x, y, ids, support=4, query=5, tasks=[0, 2, 5])
    batch = family.sample(200, seed=9)
    seen = set()
    for t in range(batch.num_tasks):
        rows = np.concatenate([batch.y_support[t, :, 1], batch.y_query[t, :, 1]]).astype(int)
        assert len(set(rows)) == 9 and len(set(ids[rows])) == 1
        np.testing.assert_array_equal(np.concatenate([batch.x_support[t], batch.x_query[t]]), x[rows])
        seen.add(int(ids[rows[0]]))
    assert seen == {0, 2, 5}
    vector = Regression(x, y[:, 0], ids, support=4, query=5)  # 1-D targets are one output
    assert vector.sample(1).y_support.shape == (1, 4, 1)


def test_split_classes_gives_disjoint_sets():
    labels = np.repeat(np.arange(20), 3)
    train, validation, test = split_classes(labels, parts=(12, 4, 4), seed=1)
    assert (len(train), len(validation), len(test)) == (12, 4, 4)
    assert set(train) | set(validation) | set(test) == set(range(20))
    assert not (set(train) & set(test)) and not (set(train) & set(validation))
    again = split_classes(labels, parts=(12, 4, 4), seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(again, (train, validation, test)))
    assert not np.array_equal(split_classes(labels, parts=(12, 4, 4), seed=2)[0], train)
    fractions = split_classes(labels, parts=(0.6, 0.2, 0.2))
    assert [len(p) for p in fractions] == [12, 4, 4]
    family = Classification(np.zeros((60, 2)), labels, ways=3, shots=1, query=2, classes=test)
    assert family.classes == tuple(int(c) for c in test)


FEATURES, LABELS = labelled_rows(classes=4, per_class=5)


def labelled_pool(last_label):
    """Two tasks with labels 0 and one query label ``last_label``."""
    y_query = np.zeros((2, 3), dtype=np.int64)
    y_query[1, 2] = last_label
    return mf.TaskBatch(np.zeros((2, 3, 1)), np.zeros((2, 3), dtype=np.int64), np.zeros((2, 3, 1)), y_query)


BAD = {
    "too-few-rows": (lambda: Classification(FEATURES, LABELS, ways=2, shots=2, query=4), ValueError,
                     "class 3 has 5 rows, but a task takes shots + query = 6 of each class"),
    "too-few-classes": (lambda: Classification(FEATURES, LABELS, ways=5, shots=1, query=1), ValueError,
                        "ways = 5 classes, but only 4 are chosen"),
    "absent-class": (lambda: Classification(FEATURES, LABELS, ways=2, classes=[3, 4], shots=1, query=1), ValueError,
                     "classes: class 4 does not occur in the data"),
    "repeated-class": (lambda: Classification(FEATURES, LABELS, ways=2, classes=[3, 3, 13], shots=1, query=1),
                       ValueError, "classes must not repeat a class, got 3 twice"),
    "labels-shape": (lambda: Classification(FEATURES, LABELS[:-1], ways=2, shots=1, query=1), ValueError,
                     "labels must have shape (20,)"),
    "labels-float": (lambda: Classification(FEATURES, LABELS * 1.0, ways=2, shots=1, query=1), TypeError,
                     "labels must hold integers"),
    "features-1d": (lambda: Classification(FEATURES[:, 0], LABELS, ways=2, shots=1, query=1), ValueError,
                    "features must have shape (rows, width)"),
    "features-nan": (lambda: Classification(np.where(FEATURES > 1, np.nan, FEATURES), LABELS, ways=2, shots=1,
                                            query=1), ValueError, "features contains NaN or infinity"),
    "features-text": (lambda: Classification(FEATURES.astype(str), LABELS, ways=2, shots=1, query=1), TypeError,
                      "features must be a float32 or float64 array"),
    "one-way": (lambda: Classification(FEATURES, LABELS, ways=1, shots=1, query=1), ValueError,
                "ways must lie in [2,"),
    "no-shots": (lambda: Classification(FEATURES, LABELS, ways=2, shots=0, query=1), ValueError,
                 "shots must lie in [1,"),
    "regression-short-task": (lambda: Regression(FEATURES, FEATURES, LABELS, support=3, query=3), ValueError,
                              "task 3 has 5 rows, but a task takes support + query = 6 of its rows"),
    "regression-y-rows": (lambda: Regression(FEATURES, FEATURES[:-1], LABELS, support=1, query=1), ValueError,
                          "y must have 20 rows"),
    "split-too-many": (lambda: split_classes(LABELS, parts=(3, 2)), ValueError,
                       "counts >= 1 summing to at most the 4 classes"),
    "split-fractions": (lambda: split_classes(LABELS, parts=(0.7, 0.5)), ValueError, "summing to at most 1"),
    "pool-not-a-batch": (lambda: TaskPool(FEATURES), TypeError, "batch must be a metafast.TaskBatch"),
    "pool-int64-max-label": (lambda: TaskPool(labelled_pool(np.iinfo(np.int64).max)), ValueError,
                             "y_query holds the label 9223372036854775807, so the pool would have 9223372036854775808 "
                             "classes, more than a model's 16777216 outputs: labels must lie in [0, classes) with "
                             "classes <= 16777216"),
    "pool-label-beyond-classes": (lambda: TaskPool(labelled_pool(5), classes=3), ValueError,
                                  "y_query must hold class labels in [0, 3), got 5"),
    "pool-classes-huge": (lambda: TaskPool(labelled_pool(1), classes=2**40), ValueError,
                          "classes must be at most 16777216, got 1099511627776"),
    "pool-classes-zero": (lambda: TaskPool(labelled_pool(1), classes=0), ValueError, "classes must be at least 1, got 0"),
}


@pytest.mark.parametrize("call,error,message", BAD.values(), ids=BAD.keys())
def test_data_that_cannot_fill_a_task_is_refused(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value)


def small_classification():
    features, labels = labelled_rows(classes=6, per_class=8, width=4)
    return Classification(features / 50.0, labels, ways=3, shots=2, query=3)


@pytest.mark.parametrize("make", [
    lambda: mf.MetaSGD(mf.MLP([4, 8, 3], activation="tanh"), loss="softmax_ce", dtype="float64", seed=4),
    lambda: mf.Reptile(mf.MLP([4, 8, 3], activation="tanh"), loss="softmax_ce", dtype="float64", seed=4),
], ids=["metasgd", "reptile"])
def test_fit_on_a_data_family_is_the_same_at_any_thread_count(make):
    family = small_classification()
    runs = []
    for threads in (1, 2):
        learner = make()
        learner.num_threads = threads
        learner.fit(family, iterations=6, meta_batch=5, progress=False)
        runs.append(learner)
    np.testing.assert_array_equal(runs[0].theta, runs[1].theta)
    np.testing.assert_array_equal(runs[0].history, runs[1].history)


def test_fit_trains_on_the_tasks_sample_returns():
    family = small_classification()
    native = mf.MetaSGD(mf.MLP([4, 8, 3], activation="tanh"), loss="softmax_ce", dtype="float64", seed=4)
    stepped = mf.MetaSGD(mf.MLP([4, 8, 3], activation="tanh"), loss="softmax_ce", dtype="float64", seed=4)
    native.fit(family, iterations=2, meta_batch=5, progress=False)
    for k in range(2):
        stepped.meta_step(family.sample(5, seed=4, iteration=k))
    np.testing.assert_array_equal(native.theta, stepped.theta)
    np.testing.assert_array_equal(native.history, stepped.history)


def test_fit_on_a_task_batch_draws_from_the_pool():
    pool = mf.tasks.Sinusoid(support=5, query=5).sample(10, seed=3)
    learner = mf.MetaSGD(mf.MLP([1, 8, 1]), dtype="float64", seed=2)
    same = mf.MetaSGD(mf.MLP([1, 8, 1]), dtype="float64", seed=2)
    learner.fit(pool, iterations=3, meta_batch=4, progress=False)
    family = TaskPool(pool)
    for k in range(3):
        batch = family.sample(4, seed=2, iteration=k)
        # every task of the meta-batch is one of the pool's
        assert all(any(np.array_equal(batch.x_support[i], pool.x_support[j]) for j in range(10)) for i in range(4))
        same.meta_step(batch)
    np.testing.assert_array_equal(learner.theta, same.theta)
    assert learner.tasks_config["family"] == "TaskPool" and learner.tasks_config["data_stored"] is False
    # a float32 learner converts the pool once, as it converts every batch
    mf.MetaSGD(mf.MLP([1, 8, 1]), seed=2).fit(pool, iterations=2, meta_batch=4, progress=False)


def test_fit_on_a_pool_checks_its_targets_against_the_loss():
    labelled = mf.tasks.GaussianNWay(ways=3, dim=2, support=1, query=2).sample(4, seed=0)
    with pytest.raises(ValueError, match="the batch has integer class labels: use loss 'softmax_ce'"):
        mf.MetaSGD(mf.MLP([2, 3])).fit(labelled, iterations=1, progress=False)
    too_few_outputs = mf.MetaSGD(mf.MLP([2, 2]), loss="softmax_ce")
    with pytest.raises(ValueError, match=r"y_support must hold class labels in \[0, 2\)"):
        too_few_outputs.fit(labelled, iterations=1, progress=False)
    sine = mf.tasks.Sinusoid().sample(4, seed=0)
    with pytest.raises(ValueError, match="loss 'bce' needs targets in \\[0, 1\\]"):
        mf.MetaSGD(mf.MLP([1, 1]), loss="bce").fit(sine, iterations=1, progress=False)
    assert too_few_outputs.iteration == 0 and too_few_outputs.history.size == 0


def test_a_saved_learner_records_the_data_family_but_not_the_data(tmp_path):
    family = small_classification()
    learner = mf.MetaSGD(mf.MLP([4, 8, 3], activation="tanh"), loss="softmax_ce", seed=1)
    learner.fit(family, iterations=2, meta_batch=3, progress=False)
    assert learner.tasks is family
    path = tmp_path / "model.npz"
    learner.save(path)
    loaded = mf.load(path)
    assert loaded.tasks is None
    record = loaded.tasks_config
    assert record == learner.tasks_config
    assert record["family"] == "Classification" and record["data_stored"] is False
    assert record["fingerprint"] == family.fingerprint and record["rows"] == 48 and record["ways"] == 3
    np.testing.assert_array_equal(loaded.theta, learner.theta)
    # the fingerprint tells the same data from other data
    features, labels = labelled_rows(classes=6, per_class=8, width=4)
    assert Classification(features / 50.0, labels, ways=3, shots=2, query=3).fingerprint == family.fingerprint
    assert Classification(features, labels, ways=3, shots=2, query=3).fingerprint != family.fingerprint
    assert "fingerprint='" in repr(family) and len(repr(family)) < 200
    # training on a synthetic family afterwards records that one again
    loaded.fit(mf.tasks.GaussianNWay(ways=3, dim=4), iterations=1, meta_batch=2, progress=False)
    assert loaded.tasks_config["family"] == "GaussianNWay" and "data_stored" not in loaded.tasks_config


def test_evaluate_takes_the_first_tasks_of_a_batch():
    learner = mf.MetaSGD(mf.MLP([1, 8, 1]), seed=0)
    batch = mf.tasks.Sinusoid().sample(30, seed=5)
    assert learner.evaluate(batch, steps=(0,)).num_tasks == 30
    first = learner.evaluate(batch, num_tasks=10, steps=(0, 1))
    assert first.num_tasks == 10
    np.testing.assert_array_equal(first.loss, learner.evaluate(batch[:10], steps=(0, 1)).loss)
    with pytest.raises(ValueError, match="num_tasks is 40, but the batch holds only 30 tasks"):
        learner.evaluate(batch, num_tasks=40)
