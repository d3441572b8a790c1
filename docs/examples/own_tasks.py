"""
Your own tasks
==============

Three ways: a sampler that makes each meta-batch, a fixed set of tasks, and N-way K-shot
episodes drawn from a labelled data set.
"""
import numpy as np

import metafast as mf


# 1. A sampler: called as sampler(num_tasks, rng) for every meta-batch; returns a TaskBatch
#    of arrays shaped (tasks, rows, inputs) and (tasks, rows, outputs).
def lines(num_tasks, rng):
    slope = rng.uniform(-2, 2, size=(num_tasks, 1, 1))
    x_support = rng.uniform(-1, 1, size=(num_tasks, 10, 1))
    x_query = rng.uniform(-1, 1, size=(num_tasks, 10, 1))
    return mf.TaskBatch(x_support, slope * x_support, x_query, slope * x_query)


learner = mf.MetaSGD(mf.MLP([1, 32, 1]), seed=0)
learner.fit(lines, iterations=2000, meta_batch=16, progress=False)
held_out = lines(200, np.random.default_rng(123))  # tasks training never saw
print(learner.evaluate(held_out, steps=(0, 1)))

# 2. A fixed set of tasks (a TaskBatch): each meta-batch draws tasks from it.
pool = lines(500, np.random.default_rng(0))
learner = mf.MetaSGD(mf.MLP([1, 32, 1]), seed=0)
learner.fit(pool, iterations=2000, meta_batch=16, progress=False)
print(learner.evaluate(held_out, steps=(0, 1)))

# 3. A labelled data set: 5-way 1-shot episodes, with classes split so that evaluation is
#    on classes never seen in meta-training.
rng = np.random.default_rng(0)
centres = rng.normal(size=(40, 8))  # 40 classes of 20 points in 8 dimensions
labels = np.repeat(np.arange(40), 20)
features = centres[labels] + 0.3 * rng.normal(size=(labels.size, 8))
train_classes, test_classes = mf.tasks.split_classes(labels, (30, 10), seed=0)
train = mf.tasks.Classification(features, labels, ways=5, shots=1, query=5, classes=train_classes)
test = mf.tasks.Classification(features, labels, ways=5, shots=1, query=5, classes=test_classes)
classifier = mf.MetaSGD(mf.MLP([8, 32, 5]), loss="softmax_ce", seed=0)
classifier.fit(train, iterations=1000, meta_batch=16, progress=False)
print(classifier.evaluate(test, num_tasks=200, steps=(0, 1)))
