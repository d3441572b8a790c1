"""A faithful NumPy port of the Meta-SGD listing of the book "Hands-On Meta Learning with
Python" (Sudharsan Ravichandiran, Packt 2018, chapter 7 "Meta-SGD and Reptile Algorithms",
section "Building Meta-SGD from Scratch"; notebook ``07. Meta-SGD and Reptile
Algorithms/7.4 Building Meta-SGD from Scratch.ipynb`` of
https://github.com/sudharsan13296/Hands-On-Meta-Learning-With-Python).

It is kept as a comparison baseline: the code many users start from. The task is binary
logistic regression on random data (``x`` uniform in ``[0, 1)^50``, labels fair coin
flips), a single-layer network ``sigmoid(x @ theta)`` with no bias, one inner step
``theta_i' = theta - alpha * grad`` per task, and a plain gradient-descent outer step.

**This listing is the book's simplification, not Meta-SGD's exact meta-gradient.** In the
outer loop it

- uses ``X_test^T (sigmoid(X_test theta_i') - y_test) / k``, the query gradient at the
  adapted parameters, as the meta-gradient of theta: the first-order approximation, which
  drops the Jacobian ``I - diag(alpha) H`` of the inner step; and
- updates alpha with that same vector, theta's meta-gradient. That is not the gradient with
  respect to alpha, which is ``-grad L_S(theta) * grad L_Q(theta_i')`` (elementwise).

metafast implements the exact formulas (docs/math.md, section 1; see
:mod:`metafast.reference.meta_sgd` for the NumPy version).

Differences from the book, all for reproducibility or convenience: random numbers come
from a :class:`numpy.random.Generator` (``rng`` or ``seed``) instead of NumPy's global
state, drawn in the book's order (``rng.random`` replacing ``np.random.rand``); the caller
chooses the number of epochs; :meth:`MetaSGD.train` returns the loss of every epoch instead
of printing it every 1000 epochs; Python 3 instead of Python 2.
"""

from __future__ import annotations

import numpy as np


def sample_points(k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The book's task sampler: ``k`` random points of a binary classification task.

    Parameters
    ----------
    k : int
        Number of points.
    rng : numpy.random.Generator
        Source of randomness (the book uses NumPy's global state).

    Returns
    -------
    x : ndarray, shape (k, 50)
        Inputs, uniform in ``[0, 1)``.
    y : ndarray, shape (k, 1)
        Labels 0 or 1 with probability 1/2 each (integers, as in the book).
    """
    x = rng.random((k, 50))
    y = rng.choice([0, 1], size=k, p=[0.5, 0.5]).reshape([-1, 1])
    return x, y


class MetaSGD:
    """The book's Meta-SGD on logistic regression (Ravichandiran 2018, chapter 7).

    Hyperparameters are the book's: 2 tasks per batch, 10 training points per task,
    10 000 epochs, meta learning rate ``beta = 0.0001``; theta and alpha are both drawn from
    a standard normal distribution, shape ``(50, 1)``, theta first. (The book's notebook
    also sets ``self.alpha = 0.0001`` before overwriting it with the random draw; that dead
    assignment is left out.) Change ``num_tasks``, ``num_samples`` or ``beta`` by setting
    the attributes, as one would with the book's class.

    This is the book's simplification, not exact Meta-SGD: the outer loop updates alpha with
    theta's (first-order) meta-gradient, which is not the gradient with respect to alpha.
    metafast implements the exact formula (docs/math.md, section 1).

    Parameters
    ----------
    epochs : int
        Number of training iterations (the book: 10 000).
    rng : numpy.random.Generator, optional
        Source of randomness for the initialisation and the tasks.
    seed : int, optional
        Seed of a new ``numpy.random.default_rng`` when ``rng`` is not given.

    Attributes
    ----------
    num_tasks, num_samples, epochs : int
    beta : float
    theta, alpha : ndarray, shape (50, 1)
    theta_ : list of ndarray
        The adapted parameters of the last batch of tasks.

    References
    ----------
    S. Ravichandiran, *Hands-On Meta Learning with Python*, Packt, 2018, chapter 7,
    "Building Meta-SGD from Scratch".
    https://github.com/sudharsan13296/Hands-On-Meta-Learning-With-Python
    """

    def __init__(
        self, epochs: int = 10000, rng: np.random.Generator | None = None, seed: int | None = None
    ) -> None:
        if rng is None:
            rng = np.random.default_rng(seed)
        self.rng = rng

        # number of tasks in each batch of tasks
        self.num_tasks = 2
        # number of shots: data points (k) in each task's training set
        self.num_samples = 10
        # number of epochs, i.e. training iterations
        self.epochs = epochs
        # learning rate of the outer loop (meta optimization)
        self.beta = 0.0001
        # random initial model parameter theta
        self.theta = self.rng.normal(size=50).reshape(50, 1)
        # random initial alpha with the same shape as theta
        self.alpha = self.rng.normal(size=50).reshape(50, 1)
        self.theta_: list[np.ndarray] = []

    def sigmoid(self, a: np.ndarray) -> np.ndarray:
        return 1.0 / (1 + np.exp(-a))

    def train(self, epochs: int | None = None, verbose: bool = False) -> list[float]:
        """Run the book's training loop.

        Each epoch: for every task, sample a training set, compute the cross-entropy loss
        and gradient at theta and the adapted ``theta - alpha * gradient``; then, for every
        task, sample a test set of 10 points and accumulate the test gradient at the adapted
        parameters; finally update theta and alpha with the same averaged meta-gradient.

        Parameters
        ----------
        epochs : int, optional
            Number of epochs; defaults to ``self.epochs``.
        verbose : bool
            Print ``Epoch e: Loss ...`` every 1000 epochs, as the book does.

        Returns
        -------
        list of float
            For each epoch, the loss the book prints: the training cross-entropy of the
            last task of the batch at theta (before adaptation).
        """
        if epochs is None:
            epochs = self.epochs
        losses = []
        for e in range(epochs):
            self.theta_ = []

            for i in range(self.num_tasks):
                # sample k data points: the task's training set
                XTrain, YTrain = sample_points(self.num_samples, self.rng)
                a = np.matmul(XTrain, self.theta)
                YHat = self.sigmoid(a)

                # cross-entropy loss
                loss = (
                    (np.matmul(-YTrain.T, np.log(YHat)) - np.matmul((1 - YTrain.T), np.log(1 - YHat)))
                    / self.num_samples
                )[0][0]

                # gradient of the loss
                gradient = np.matmul(XTrain.T, (YHat - YTrain)) / self.num_samples

                # inner step: adapted parameter theta' of the task
                self.theta_.append(self.theta - (np.multiply(self.alpha, gradient)))

            meta_gradient = np.zeros(self.theta.shape)
            for i in range(self.num_tasks):
                # the book samples 10 test points, whatever num_samples is,
                # and divides by num_samples below
                XTest, YTest = sample_points(10, self.rng)
                a = np.matmul(XTest, self.theta_[i])
                YPred = self.sigmoid(a)

                # "meta gradient": the test gradient at theta' (first order)
                meta_gradient += np.matmul(XTest.T, (YPred - YTest)) / self.num_samples

            # update theta with the meta gradient
            self.theta = self.theta - self.beta * meta_gradient / self.num_tasks

            # the book's simplification: alpha is updated with theta's meta gradient
            self.alpha = self.alpha - self.beta * meta_gradient / self.num_tasks

            losses.append(float(loss))
            if verbose and e % 1000 == 0:
                print(f"Epoch {e}: Loss {loss}\n")
        return losses
