"""
Meta-SGD on few-shot digits
===========================

A linear Meta-SGD model on 5-way 5-shot episodes of scikit-learn's 8x8 digits, evaluated on held-out classes.
"""

import metafast as mf
from sklearn.datasets import load_digits

digits = load_digits()                                   # 1797 8x8 images, 10 classes
x, y = digits.data / 16.0, digits.target
train_classes, test_classes = mf.tasks.split_classes(y, parts=(5, 5), seed=0)
train = mf.tasks.Classification(x, y, ways=5, shots=5, query=15, classes=train_classes)
test = mf.tasks.Classification(x, y, ways=5, shots=5, query=15, classes=test_classes)

learner = mf.MetaSGD(mf.MLP([64, 5]), loss="softmax_ce", inner_steps=5, alpha_init=0.5, seed=0)
learner.fit(train, iterations=1000, meta_batch=16, progress=False)   # under a second
print(learner.evaluate(test, num_tasks=600, steps=(0, 5, 20)))
