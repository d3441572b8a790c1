"""
A convolutional network on few-shot digits
==========================================

MAML with a small Conv-4 network on 5-way episodes of scikit-learn's 8x8 digits, classes held out from meta-training.
"""

import metafast as mf
from sklearn.datasets import load_digits

digits = load_digits()
images, y = digits.images[:, None] / 16.0, digits.target          # (1797, 1, 8, 8) images
train_classes, test_classes = mf.tasks.split_classes(y, parts=(5, 5), seed=0)
train = mf.tasks.Classification(images, y, ways=5, shots=5, query=15, classes=train_classes)
test = mf.tasks.Classification(images, y, ways=5, shots=5, query=15, classes=test_classes)

net = mf.ConvNet((1, 8, 8), channels=(32, 32, 32), outputs=5)      # Conv-4's blocks, three of them
maml = mf.MAML(net, loss="softmax_ce", inner_lr=0.4, inner_steps=1, seed=0)
maml.fit(train, iterations=1000, meta_batch=16, progress=False)     # exact second-order MAML
print(maml.evaluate(test, num_tasks=600, steps=(0, 1, 5)))

episode = test.sample(1, seed=7)
theta = maml.adapt(episode.x_support[0], episode.y_support[0])      # one task's adapted parameters
logits = maml.predict(episode.x_query[0], theta, batch_norm="support", x_support=episode.x_support[0])
