"""A faithful NumPy port of the Reptile listing of the book "Hands-On Meta Learning with
Python" (Sudharsan Ravichandiran, Packt 2018, chapter 7 "Meta-SGD and Reptile Algorithms",
section "Sine wave regression using Reptile"; notebook ``07. Meta-SGD and Reptile
Algorithms/.ipynb_checkpoints/7.7 Sine wave Regression Using Reptile-checkpoint.ipynb`` of
https://github.com/sudharsan13296/Hands-On-Meta-Learning-With-Python, a TensorFlow 1.x /
Python 2 notebook).

It is kept as a comparison baseline: the code many users start from. The listing:

- **Tasks.** ``sample_points(k)`` draws ``amplitude ~ U[0.1, 5.0)`` then
  ``phase ~ U[0, pi)``, evaluates ``y = amplitude * sin(x + phase)`` on
  ``x = np.linspace(-5, 5, 100)`` and returns ``k`` of these points chosen uniformly *with
  replacement* (``np.random.choice(np.arange(100), size=k)``), so a task can hold the same
  point twice.
- **Network.** ``1 -> 64 -> 1`` with ``tanh`` on the hidden layer *and on the output*
  (``Yhat = tf.nn.tanh(z2)``); weights and biases all drawn from
  ``tf.random_uniform``, i.e. uniform in ``[0, 1)``; float32; loss
  ``tf.reduce_mean(tf.square(Yhat - Y))``.
- **Inner optimizer.** ``tf.train.AdamOptimizer(1e-2)`` (betas 0.9, 0.999, epsilon 1e-8),
  created once: its moments and step count persist across all tasks and epochs, as the
  meta-update writes new values into the variables with ``Variable.load`` and never
  touches the optimizer's slots.
- **Training.** 100 epochs (``num_epochs``); in each, 2 tasks (``num_tasks``) of 50 points
  (``num_samples``); per task, 10 passes (``num_iterations``) over its points in
  consecutive minibatches of 10 (``mini_batch``), in order, one Adam step per minibatch
  (50 steps per task).
- **Outer update.** After each task, ``theta <- theta + epsilon (theta~ - theta)`` with
  ``epsilon = 0.1`` and ``theta`` read just before that task: *serial* Reptile applied
  once per task, so the second task of an epoch starts from the theta the first one
  updated (not the batched mean over the two tasks).
- **Printed loss.** Every 10 epochs, ``Epoch e: Loss ...``: the loss at the current theta
  (after the epoch's meta-updates, before any adaptation) on the 50 points of the epoch's
  last task, the very points its inner loop just trained on; not a held-out query loss.

Quirks of the listing, reproduced here:

- The tanh output caps predictions at ±1 while amplitudes reach 5, so the network cannot
  fit most tasks and the loss stays high (the notebook prints losses between 1 and 10).
  metafast's default network for these tasks has a linear (``"identity"``) output instead;
  ``mf.MLP([1, 64, 1], activation="tanh", output="tanh")`` reproduces the book's.
- The initialisation ``U[0, 1)`` for every weight and bias makes all hidden units start
  alike (all positive weights and biases), far from the usual zero-mean schemes.
- The markdown says each task has 10 points; the code uses ``num_samples = 50``. The code
  is followed.

Ambiguities and the choices made:

- *Random numbers.* The book uses TensorFlow's and NumPy's global generators; here every
  draw comes from one :class:`numpy.random.Generator` (``rng`` or ``seed``): first the
  initial parameters in the order the variables are defined (``w1 (1, 64)``, ``b1 (64)``,
  ``w2 (64, 1)``, ``b2 (1)``, ``rng.random`` in float64 then cast; TensorFlow's
  initialiser order and stream cannot be reproduced anyway), then the tasks in the book's
  order (amplitude, phase, indices; ``rng.uniform`` and ``rng.choice`` replacing their
  ``np.random`` namesakes).
- *Adam.* TensorFlow 1.x's kernel, not the textbook form: with ``p1 = beta1^t`` and
  ``p2 = beta2^t`` kept as running products (float32 variables multiplied by the betas
  after each step), ``m += (g - m)(1 - beta1)``, ``v += (g^2 - v)(1 - beta2)``,
  ``theta -= lr sqrt(1 - p2) / (1 - p1) * m / (sqrt(v) + epsilon)``. Its epsilon is added
  to ``sqrt(v)`` rather than to the bias-corrected ``sqrt(v_hat)`` of docs/math.md, section 3
  (which metafast uses): the textbook form with ``epsilon / sqrt(1 - beta2^t)`` in place of
  ``epsilon`` (about ``32 epsilon`` at the first step). Small as it is, it matters where the
  saturated tanh output makes gradients tiny: in float64 the two forms drift apart by about
  ``1e-3`` (relative, in theta) over 60 tasks, and agree to rounding when epsilon is made
  negligible.
- *Precision.* The book's graph is float32, so computations are float32 by default
  (``dtype="float64"`` to change it). Results cannot match TensorFlow bit for bit (its
  random streams, reduction orders and BLAS differ).
- *Minibatches.* The book feeds ``x_minibatch.reshape(mini_batch, 1)``, which raises when
  ``num_samples`` is not a multiple of ``mini_batch``; here the last minibatch of a pass is
  then simply shorter (as in metafast).
- *Epsilon.* The book assigns ``epsilon = 0.1`` inside the task loop; here it is the
  attribute ``epsilon``.

Other differences, for reproducibility or convenience: the caller chooses the number of
epochs; :meth:`Reptile.train` returns the printed loss of *every* epoch (the book prints
every 10th; ``verbose=True`` prints those); no TensorFlow session; Python 3.

The same algorithm in metafast (up to the Adam epsilon placement, the initialisation and the
task stream)::

    rep = mf.Reptile(mf.MLP([1, 64, 1], activation="tanh", output="tanh"), inner_lr=1e-2,
                     inner_epochs=10, inner_batch=10, epsilon=0.1, reset_optimizer=False)
    rep.fit(mf.tasks.Sinusoid.book(), iterations=2 * epochs, meta_batch=1)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .mlp import mlp_forward, mlp_loss, mlp_loss_and_grad


@dataclass(frozen=True)
class BookNetwork:
    """The book's architecture, in the form :mod:`metafast.reference.mlp` takes:
    ``1 -> 64 -> 1``, tanh hidden and output layers, with biases. Parameters are one flat
    vector ``[w1 (1x64, row-major), b1 (64), w2 (64x1), b2 (1)]`` (metafast's layout)."""

    sizes: tuple[int, ...] = (1, 64, 1)
    activation: str = "tanh"
    output: str = "tanh"
    bias: bool = True


#: The network of the listing.
BOOK_NETWORK = BookNetwork()


def sample_points(k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The book's task sampler: ``k`` points of one random sine wave.

    Draws ``amplitude ~ U[0.1, 5.0)`` and ``phase ~ U[0, pi)``, computes
    ``y = amplitude * sin(x + phase)`` on ``x = np.linspace(-5, 5, 100)`` and picks ``k``
    indices uniformly with replacement.

    Parameters
    ----------
    k : int
        Number of points.
    rng : numpy.random.Generator
        Source of randomness (the book uses NumPy's global state).

    Returns
    -------
    x, y : ndarray, shape (k,)
        Inputs and targets (float64, flat as in the book; reshape to ``(k, 1)`` for the
        network).
    """
    num_points = 100

    # amplitude
    amplitude = rng.uniform(low=0.1, high=5.0)

    # phase
    phase = rng.uniform(low=0, high=np.pi)

    x = np.linspace(-5, 5, num_points)

    # y = a*sin(x+b)
    y = amplitude * np.sin(x + phase)

    # sample k data points
    sample = rng.choice(np.arange(num_points), size=k)

    return x[sample], y[sample]


class Reptile:
    """The book's serial Reptile on sine waves (Ravichandiran 2018, chapter 7).

    Hyperparameters are the book's and can be changed by setting the attributes, as one
    would edit the notebook's variables: ``num_epochs = 100``, ``num_samples = 50``,
    ``num_tasks = 2``, ``num_iterations = 10`` (passes per task), ``mini_batch = 10``,
    ``epsilon = 0.1``, Adam ``lr = 1e-2``, ``beta1 = 0.9``, ``beta2 = 0.999``,
    ``adam_epsilon = 1e-8``.

    Parameters
    ----------
    epochs : int
        Number of epochs (the book: 100).
    rng : numpy.random.Generator, optional
        Source of randomness for the initialisation and the tasks.
    seed : int, optional
        Seed of a new ``numpy.random.default_rng`` when ``rng`` is not given.
    dtype : {"float32", "float64"}
        Precision of every computation (the book's TensorFlow graph is float32).

    Attributes
    ----------
    model : BookNetwork
        The architecture (for :mod:`metafast.reference.mlp` and :class:`metafast.MLP`).
    theta : ndarray, shape (193,)
        Current parameters ``[w1, b1, w2, b2]``, flat.
    m, v : ndarray, shape (193,)
        Adam's moments, carried across all tasks and epochs.
    beta1_power, beta2_power : float
        Adam's running products ``beta1^t`` and ``beta2^t`` (TensorFlow starts them at the
        betas and multiplies after each step).
    x_sample, y_sample : ndarray or None
        The points of the last task trained on.

    References
    ----------
    S. Ravichandiran, *Hands-On Meta Learning with Python*, Packt, 2018, chapter 7,
    "Sine wave regression using Reptile".
    https://github.com/sudharsan13296/Hands-On-Meta-Learning-With-Python
    """

    def __init__(
        self,
        epochs: int = 100,
        rng: np.random.Generator | None = None,
        seed: int | None = None,
        dtype: Any = "float32",
    ) -> None:
        if rng is None:
            rng = np.random.default_rng(seed)
        self.rng = rng
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        self.model = BOOK_NETWORK

        # number of epochs i.e training iterations
        self.num_epochs = epochs
        # number of samples i.e number of shots
        self.num_samples = 50
        # number of tasks
        self.num_tasks = 2
        # number of times we want to perform optimization (passes over a task's points)
        self.num_iterations = 10
        # mini batch size
        self.mini_batch = 10
        # meta step size
        self.epsilon = 0.1
        # tf.train.AdamOptimizer(1e-2) and its defaults
        self.lr = 1e-2
        self.beta1 = 0.9
        self.beta2 = 0.999
        self.adam_epsilon = 1e-8

        # w1, b1, w2, b2 = tf.Variable(tf.random_uniform(shape)): uniform in [0, 1)
        num_hidden, num_classes, num_feature = 64, 1, 1
        w1 = self.rng.random((num_feature, num_hidden))
        b1 = self.rng.random(num_hidden)
        w2 = self.rng.random((num_hidden, num_classes))
        b2 = self.rng.random(num_classes)
        self.theta = np.concatenate([w1.ravel(), b1, w2.ravel(), b2]).astype(self.dtype)

        # the Adam optimizer's state, created once for the whole run
        self.m = np.zeros_like(self.theta)
        self.v = np.zeros_like(self.theta)
        self.beta1_power = self.dtype.type(self.beta1)
        self.beta2_power = self.dtype.type(self.beta2)

        self.x_sample: np.ndarray | None = None
        self.y_sample: np.ndarray | None = None

    # ------------------------------------------------------------ the network
    def _column(self, values: np.ndarray) -> np.ndarray:
        # the placeholders: float32 (or dtype) columns
        return np.asarray(values, dtype=self.dtype).reshape(-1, 1)

    def predict(self, x: np.ndarray, theta: np.ndarray | None = None) -> np.ndarray:
        """``Yhat`` for inputs ``x`` (any shape holding one value per row), shape ``(n, 1)``."""
        theta = self.theta if theta is None else np.asarray(theta, dtype=self.dtype)
        return mlp_forward(self.model, theta, self._column(x))

    def loss(self, x: np.ndarray, y: np.ndarray, theta: np.ndarray | None = None) -> float:
        """The book's ``loss_function``: ``mean((Yhat - Y)^2)``."""
        theta = self.theta if theta is None else np.asarray(theta, dtype=self.dtype)
        return float(mlp_loss(self.model, theta, self._column(x), self._column(y), "mse"))

    # ------------------------------------------------------------- optimizer
    def _adam_step(self, grad: np.ndarray) -> None:
        """One step of TensorFlow 1.x's ``ApplyAdam`` kernel, then ``_finish``."""
        t = self.dtype.type
        lr, beta1, beta2, eps = t(self.lr), t(self.beta1), t(self.beta2), t(self.adam_epsilon)
        alpha = lr * np.sqrt(t(1) - self.beta2_power) / (t(1) - self.beta1_power)
        self.m += (grad - self.m) * (t(1) - beta1)
        self.v += (np.square(grad) - self.v) * (t(1) - beta2)
        self.theta -= (self.m * alpha) / (np.sqrt(self.v) + eps)
        self.beta1_power = self.beta1_power * beta1
        self.beta2_power = self.beta2_power * beta2

    # -------------------------------------------------------------- training
    def train_on_task(self, x_sample: np.ndarray, y_sample: np.ndarray) -> None:
        """The body of the book's task loop: ``num_iterations`` passes of Adam steps on
        consecutive minibatches of ``mini_batch`` points from theta, then the serial
        meta-update ``theta <- theta + epsilon (theta~ - theta)``."""
        # get the initial parameters of the model
        old_theta = self.theta.copy()

        # for some k number of iterations perform optimization on the task
        for _ in range(self.num_iterations):
            # get the minibatch x and y
            for i in range(0, len(x_sample), self.mini_batch):
                x_minibatch = self._column(x_sample[i : i + self.mini_batch])
                y_minibatch = self._column(y_sample[i : i + self.mini_batch])
                _, grad = mlp_loss_and_grad(self.model, self.theta, x_minibatch, y_minibatch, "mse")
                self._adam_step(grad)

        # get the updated model parameters after several iterations of optimization
        new_theta = self.theta

        # meta update: theta = theta + epsilon * (theta_star - theta), loaded into the
        # variables (the optimizer's state is left as it is)
        self.theta = (old_theta + self.epsilon * (new_theta - old_theta)).astype(self.dtype)

    def train(self, epochs: int | None = None, verbose: bool = False) -> list[float]:
        """Run the book's training loop.

        Each epoch: for each of ``num_tasks`` tasks, sample ``num_samples`` points and
        :meth:`train_on_task`; then compute the loss the book prints.

        Parameters
        ----------
        epochs : int, optional
            Number of epochs; defaults to ``self.num_epochs``.
        verbose : bool
            Print ``Epoch e: Loss ...`` every 10 epochs, as the book does.

        Returns
        -------
        list of float
            For each epoch, the loss the book prints (every 10th epoch): the loss at theta
            after the epoch's meta-updates on the points of the epoch's last task.
        """
        if epochs is None:
            epochs = self.num_epochs
        losses = []
        for e in range(epochs):
            # for each task in batch of tasks
            for _ in range(self.num_tasks):
                # sample x and y
                self.x_sample, self.y_sample = sample_points(self.num_samples, self.rng)
                self.train_on_task(self.x_sample, self.y_sample)

            loss = self.loss(self.x_sample, self.y_sample)
            losses.append(loss)
            if verbose and e % 10 == 0:
                print(f"Epoch {e}: Loss {loss}\n")
                print("Updated Model Parameter Theta\n")
                print("Sampling Next Batch of Tasks \n")
                print("---------------------------------\n")
        return losses


__all__ = ["BookNetwork", "BOOK_NETWORK", "sample_points", "Reptile"]
