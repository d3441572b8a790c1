"""
Few-shot digits against a nearest-class-mean baseline
=====================================================

5-way few-shot classification of handwritten digits (scikit-learn's bundled 8x8 digits) on
classes held out from meta-training: Meta-SGD and Reptile before and after adaptation, beside
a nearest-class-mean classifier on the same episodes. Prints the table the user guide shows
("Few-shot learning on your own data"); about 10 s on 2 cores. Needs scikit-learn.
"""

import numpy as np
from sklearn.datasets import load_digits

import metafast as mf

Z_95 = 1.959963984540054


def nearest_class_mean(batch: mf.TaskBatch) -> np.ndarray:
    """Per episode: query accuracy of assigning each query row to the closest support mean."""
    ways = batch.y_support.max() + 1
    accuracy = np.empty(batch.num_tasks)
    for t in range(batch.num_tasks):
        means = np.stack([batch.x_support[t][batch.y_support[t] == k].mean(axis=0) for k in range(ways)])
        distances = ((batch.x_query[t][:, None, :] - means[None]) ** 2).sum(axis=-1)
        accuracy[t] = np.mean(distances.argmin(axis=1) == batch.y_query[t])
    return accuracy


digits = load_digits()
x, y = digits.data / 16.0, digits.target
train_classes, test_classes = mf.tasks.split_classes(y, parts=(5, 5), seed=0)
print(f"meta-train classes {train_classes.tolist()}, held-out classes {test_classes.tolist()}")
print("query accuracy on 600 held-out 5-way episodes, 15 queries per class (mean ± 95% CI)")
print(f"{'':<10}{'':<21}{'0 steps':>17}{'5 steps':>17}{'20 steps':>17}")
for shots in (1, 5):
    train = mf.tasks.Classification(x, y, ways=5, shots=shots, query=15, classes=train_classes)
    test = mf.tasks.Classification(x, y, ways=5, shots=shots, query=15, classes=test_classes)
    episodes = test.sample(600, seed=123)  # the same episodes for every method
    learners = {
        "Meta-SGD (linear)": mf.MetaSGD(mf.MLP([64, 5]), loss="softmax_ce", inner_steps=5, alpha_init=0.5, seed=0),
        "Reptile (linear)": mf.Reptile(mf.MLP([64, 5]), loss="softmax_ce", inner_optimizer="sgd", inner_lr=0.5,
                                       seed=0),
    }
    for name, learner in learners.items():
        learner.fit(train, iterations=1000, meta_batch=16, progress=False)
        report = learner.evaluate(episodes, steps=(0, 5, 20))
        cells = "".join(f"{a:>9.3f} ± {c:.3f}" for a, c in zip(report.accuracy, report.accuracy_ci95))
        print(f"{shots}-shot    {name:<21}{cells}")
    baseline = nearest_class_mean(episodes)
    half_width = Z_95 * baseline.std(ddof=1) / np.sqrt(baseline.size)
    print(f"{shots}-shot    {'nearest class mean':<21}{'':>34}{baseline.mean():>9.3f} ± {half_width:.3f}")
