"""
A scikit-learn estimator
========================

A meta-trained learner as a scikit-learn classifier: fit on a new task's support set, predict its queries.
"""

import numpy as np
import metafast as mf
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from metafast.sklearn import FewShotClassifier

digits = load_digits()
x, y = digits.data / 16.0, digits.target
train_classes, test_classes = mf.tasks.split_classes(y, parts=(5, 5), seed=0)
train = mf.tasks.Classification(x, y, ways=5, shots=5, query=15, classes=train_classes)
learner = mf.MetaSGD(mf.MLP([64, 5]), loss="softmax_ce", inner_steps=5, alpha_init=0.5, seed=0)
learner.fit(train, iterations=1000, meta_batch=16, progress=False)

# A new task on held-out digits: five labelled images of each is all the training data.
rng = np.random.default_rng(1)
support = np.concatenate([rng.choice(np.flatnonzero(y == c), 5, replace=False) for c in test_classes])
query = np.setdiff1d(np.flatnonzero(np.isin(y, test_classes)), support)
search = GridSearchCV(FewShotClassifier(learner), {"steps": [0, 5, 20]}, cv=5)
search.fit(x[support], y[support])                       # fit adapts: learner.adapt(x, y, steps)
print("best:", search.best_params_, "classes:", search.best_estimator_.classes_)
print(f"accuracy on the other {len(query)} images: {search.score(x[query], y[query]):.3f}")
