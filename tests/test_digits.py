"""Few-shot learning on a real data set (scikit-learn's bundled digits): 5-way episodes on
classes held out from meta-training. Meta-SGD and Reptile both classify better after
adaptation than before it, and for 5-shot better than a nearest-class-mean classifier on the
same episodes (README, "Few-shot learning on your own data", shows the numbers)."""

from __future__ import annotations

import numpy as np
import pytest

import metafast as mf

datasets = pytest.importorskip("sklearn.datasets", reason="the digits test needs scikit-learn (the test extra)")

STEPS = (0, 5, 20)


def learners():
    return {
        "metasgd": mf.MetaSGD(mf.MLP([64, 5]), loss="softmax_ce", inner_steps=5, alpha_init=0.5, seed=0),
        "reptile": mf.Reptile(mf.MLP([64, 5]), loss="softmax_ce", inner_optimizer="sgd", inner_lr=0.5, seed=0),
    }


def nearest_class_mean_accuracy(batch: mf.TaskBatch) -> np.ndarray:
    """Per task: the query accuracy of assigning each query row to the closest support mean."""
    accuracy = np.empty(batch.num_tasks)
    ways = batch.y_support.max() + 1
    for t in range(batch.num_tasks):
        means = np.stack([batch.x_support[t][batch.y_support[t] == k].mean(axis=0) for k in range(ways)])
        distances = ((batch.x_query[t][:, None, :] - means[None]) ** 2).sum(axis=-1)
        accuracy[t] = np.mean(distances.argmin(axis=1) == batch.y_query[t])
    return accuracy


@pytest.fixture(scope="module")
def digits():
    data = datasets.load_digits()
    return data.data / 16.0, data.target


@pytest.mark.parametrize("shots", [1, 5])
@pytest.mark.parametrize("name", ["metasgd", "reptile"])
def test_meta_training_on_digits_transfers_to_held_out_classes(digits, name, shots):
    x, y = digits
    train_classes, test_classes = mf.tasks.split_classes(y, parts=(5, 5), seed=0)
    assert not set(train_classes) & set(test_classes)
    train = mf.tasks.Classification(x, y, ways=5, shots=shots, query=15, classes=train_classes)
    test = mf.tasks.Classification(x, y, ways=5, shots=shots, query=15, classes=test_classes)
    episodes = test.sample(300, seed=123)

    learner = learners()[name]
    learner.fit(train, iterations=1000, meta_batch=16, progress=False)
    report = learner.evaluate(episodes, steps=STEPS)
    before, after = report.accuracy[0], report.accuracy[-1]
    assert after > before + 0.3, report  # chance is 0.2; adaptation must learn the new classes

    if shots == 5:
        # Paired over the same episodes: the adapted learner beats nearest class means.
        difference = report.task_accuracies[:, -1] - nearest_class_mean_accuracy(episodes)
        low = difference.mean() - 1.96 * difference.std(ddof=1) / np.sqrt(difference.size)
        assert low > 0, (report, difference.mean())
