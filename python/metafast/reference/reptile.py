"""Reptile in plain NumPy (float64), with exactly the semantics of the C++ core
(``cpp/include/metafast/reptile.hpp`` and ``reptile_learner.hpp``).

This is the code a user would write by hand on top of :mod:`metafast.reference.mlp`,
following docs/math.md (section 3). The test suite uses it as the oracle for
:class:`metafast.Reptile` and the benchmarks as the pure-Python baseline.

The inner loop of one task is ``updates`` optimizer steps on consecutive minibatches of the
support set: update ``u`` uses minibatch ``b = u % ceil(K / batch_size)`` of the current
pass, rows ``b * batch_size`` up to ``min((b + 1) * batch_size, K)`` (the last minibatch of a
pass is shorter when ``batch_size`` does not divide ``K``). With ``shuffle`` the rows are
permuted at the start of every pass by a Fisher-Yates shuffle drawn from a
:class:`~metafast.reference.rng.CounterRng` keyed by ``(shuffle_seed(seed), iteration,
task)``, so the reference and the core shuffle identically.

Batched Reptile moves ``theta += epsilon * mean_i(theta~_i - theta)`` over the ``T`` tasks of
a meta-batch, every task starting from the same theta. The inner optimizer's state is fresh
for every task (``reset_optimizer=True``) or carried: one state runs through the tasks of a
batch in order, and on from one meta-step to the next.

Reference: A. Nichol, J. Achiam, J. Schulman (2018), "On First-Order Meta-Learning
Algorithms", arXiv:1803.02999.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .meta_sgd import _floats, _targets, adam_update
from .mlp import mlp_loss, mlp_loss_and_grad
from .rng import MASK64, CounterRng, shuffle_seed

#: The iteration key of the shuffles during adaptation and evaluation (2**64 - 1), which
#: training, counting from 0, never reaches.
EVALUATION_ITERATION = MASK64

State = tuple[np.ndarray, np.ndarray, int]




def _check_count(value: int, name: str, minimum: int = 0) -> int:
    if int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def fresh_state(size: int) -> State:
    """A new inner optimizer state ``(m, v, t)``: zero moments, no step taken."""
    return np.zeros(size), np.zeros(size), 0


def batches_per_pass(rows: int, batch_size: int) -> int:
    """Minibatches in one pass over ``rows`` support rows: ``ceil(rows / batch_size)``."""
    return (rows + batch_size - 1) // batch_size


def inner_loop(
    model: Any,
    theta: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    loss: str,
    optimizer: str,
    lr: float,
    updates: int,
    batch_size: int,
    shuffle: bool,
    rng: CounterRng | None,
    state: State,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    first_update: int = 0,
    order: np.ndarray | None = None,
) -> tuple[np.ndarray, State]:
    """Inner optimizer updates number ``first_update`` to ``first_update + updates - 1`` from
    ``theta`` on one task's support set.

    Update ``u``: ``b = u % ceil(K / batch_size)``; at ``b == 0`` with ``shuffle``, a new
    permutation ``order`` of the K rows (``order = arange(K)``, then for ``i = K-1 .. 1``
    swap ``order[i]`` with ``order[rng.below(i + 1)]``); the minibatch is rows
    ``first .. first + count - 1`` (through ``order`` when shuffling) with
    ``first = b * batch_size`` and ``count = min(batch_size, K - first)``; then one step on
    its mean-loss gradient ``g``:

    - Adam: ``t += 1; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g g;
      params -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``;
    - SGD: ``t += 1; params -= lr g`` (the step counter counts SGD steps too).

    A run resumed with ``first_update`` continues the same minibatch schedule, provided it
    gets the same ``rng``, the returned ``state`` and, when shuffling, the same ``order``
    array (as the core's evaluation does: its workspace keeps the permutation of the
    current pass from one call to the next).

    Parameters
    ----------
    model : object
        Architecture with ``sizes``, ``activation``, ``output`` and ``bias`` attributes
        (a :class:`metafast.MLP`).
    theta : ndarray, shape (P,)
        Starting parameters (not modified).
    x : ndarray, shape (K, sizes[0])
        Support inputs.
    y : ndarray
        Support targets, ``(K, sizes[-1])`` floats or ``(K,)`` integer labels for
        ``"softmax_ce"``.
    loss : {"mse", "bce", "softmax_ce"}
        Loss of the task.
    optimizer : {"adam", "sgd"}
        Inner optimizer.
    lr : float
        Its learning rate.
    updates : int
        Number of optimizer updates.
    batch_size : int
        Rows per minibatch.
    shuffle : bool
        Reshuffle the rows at the start of every pass.
    rng : CounterRng or None
        Source of the shuffles (advanced in place); unused, and may be None, without
        ``shuffle``.
    state : tuple (m, v, t)
        Optimizer state to start from (not modified); see ``fresh_state``.
    betas, eps : float
        Adam's decay rates and denominator constant.
    first_update : int
        Index of the first update (positions the minibatch schedule).
    order : ndarray of int, shape (K,), optional
        With ``shuffle``, the permutation of the current pass, rewritten in place at the
        start of every pass. Needed (from the previous call) when ``first_update`` is not at
        the start of a pass; otherwise a new array is used when it is None.

    Returns
    -------
    params : ndarray, shape (P,)
        The parameters after the updates (a new float64 array).
    state : tuple (m, v, t)
        The optimizer state after the updates (new arrays).
    """
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    updates = _check_count(updates, "updates")
    batch_size = _check_count(batch_size, "batch_size", 1)
    first_update = _check_count(first_update, "first_update")
    x = _floats(x)
    y = _targets(y, loss)
    rows = x.shape[0]
    if rows < 1:
        raise ValueError("the support set holds no row")
    if shuffle and rng is None:
        raise ValueError("shuffle needs an rng")
    per_pass = batches_per_pass(rows, batch_size)
    if order is None:
        if shuffle and updates and first_update % per_pass:
            raise ValueError("resuming a shuffled inner loop mid-pass needs the pass's order")
        order = np.arange(rows)
    elif shuffle and np.shape(order) != (rows,):
        raise ValueError(f"order must have shape ({rows},), got {np.shape(order)}")
    params = _floats(theta).copy()
    m, v, t = _floats(state[0]).copy(), _floats(state[1]).copy(), int(state[2])
    beta1, beta2 = float(betas[0]), float(betas[1])
    lr, eps = float(lr), float(eps)
    for u in range(first_update, first_update + updates):
        b = u % per_pass
        first = b * batch_size
        count = min(batch_size, rows - first)
        if shuffle:
            if b == 0:
                order[:] = np.arange(rows)
                for i in range(rows - 1, 0, -1):
                    j = rng.below(i + 1)
                    order[i], order[j] = order[j], order[i]
            picked = order[first : first + count]
        else:
            picked = np.arange(first, first + count)
        _, g = mlp_loss_and_grad(model, params, x[picked], y[picked], loss)
        if optimizer == "adam":
            params, (m, v, t) = adam_update(params, g, (m, v, t), lr, beta1, beta2, eps)
        else:
            t += 1
            params = params - lr * g
    return params, (m, v, t)


class Reptile:
    """Pure NumPy batched Reptile with the core's semantics.

    Parameters
    ----------
    model : object
        Architecture with ``sizes``, ``activation``, ``output`` and ``bias`` attributes
        (a :class:`metafast.MLP`).
    theta : ndarray, shape (P,)
        Initial parameters (copied as float64).
    loss : {"mse", "bce", "softmax_ce"}
        Loss of the inner loop and of the query sets (which only score).
    inner_optimizer : {"adam", "sgd"}
        Inner optimizer.
    inner_lr : float
        Its learning rate.
    inner_epochs : int
        Passes over a task's support set per inner loop.
    inner_batch : int
        Rows per minibatch.
    epsilon : float
        Default outer step size.
    adam_betas, adam_eps : float
        Adam's decay rates and denominator constant (inner loop).
    reset_optimizer : bool
        Fresh inner optimizer state per task (True) or one state carried through the tasks
        of a batch in order and from batch to batch (False).
    shuffle : bool
        Reshuffle the support rows at the start of every pass.
    seed : int
        Keys the shuffle streams (``CounterRng(shuffle_seed(seed), iteration, task)``).

    Attributes
    ----------
    theta : ndarray, shape (P,)
        The meta-learned initial parameters.
    state : tuple (m, v, t)
        The carried inner optimizer state (used only with ``reset_optimizer=False``).
    iteration : int
        Meta-steps taken so far; the default shuffle key of :meth:`meta_step`.
    """

    def __init__(
        self,
        model: Any,
        theta: np.ndarray,
        loss: str = "mse",
        inner_optimizer: str = "adam",
        inner_lr: float = 1e-2,
        inner_epochs: int = 10,
        inner_batch: int = 10,
        epsilon: float = 0.1,
        adam_betas: tuple[float, float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
        reset_optimizer: bool = True,
        shuffle: bool = False,
        seed: int = 0,
    ) -> None:
        if inner_optimizer not in ("adam", "sgd"):
            raise ValueError(f"inner_optimizer must be 'adam' or 'sgd', got {inner_optimizer!r}")
        self.model = model
        self.theta = np.array(theta, dtype=np.float64)
        if self.theta.ndim != 1:
            raise ValueError(f"theta must be a flat vector, got shape {self.theta.shape}")
        self.loss = loss
        self.inner_optimizer = inner_optimizer
        self.inner_lr = float(inner_lr)
        self.inner_epochs = _check_count(inner_epochs, "inner_epochs", 1)
        self.inner_batch = _check_count(inner_batch, "inner_batch", 1)
        self.epsilon = float(epsilon)
        self.adam_betas = (float(adam_betas[0]), float(adam_betas[1]))
        self.adam_eps = float(adam_eps)
        self.reset_optimizer = bool(reset_optimizer)
        self.shuffle = bool(shuffle)
        self.seed = _check_count(seed, "seed")
        self.state: State = fresh_state(self.theta.size)
        self.iteration = 0

    def inner_updates(self, rows: int) -> int:
        """Updates of one full inner loop on ``rows`` support rows:
        ``inner_epochs * ceil(rows / inner_batch)``."""
        return self.inner_epochs * batches_per_pass(rows, self.inner_batch)

    def _inner(self, theta: np.ndarray, x: np.ndarray, y: np.ndarray, updates: int, rng: CounterRng,
               state: State, first_update: int = 0, order: np.ndarray | None = None) -> tuple[np.ndarray, State]:
        return inner_loop(
            self.model, theta, x, y, self.loss, self.inner_optimizer, self.inner_lr, updates,
            self.inner_batch, self.shuffle, rng, state, self.adam_betas, self.adam_eps, first_update, order,
        )

    def meta_step(self, batch: Any, iteration: int | None = None, epsilon: float | None = None) -> float:
        """One batched Reptile meta-iteration.

        For each task ``i`` in order: ``rng = CounterRng(shuffle_seed(seed), iteration, i)``;
        the inner loop (:meth:`inner_updates` updates) from theta, with a fresh optimizer
        state or the carried one; the query loss at the adapted ``theta~_i``; and
        ``delta_i = theta~_i - theta``. Then ``theta += epsilon * (sum_i delta_i) / T`` (sum
        in task order) and, without reset, the carried state becomes the chain's final one.

        Parameters
        ----------
        batch : object
            ``x_support (T, K, in)``, ``y_support (T, K, out)`` or ``(T, K)`` integer
            labels, ``x_query``, ``y_query`` likewise.
        iteration : int, optional
            Key of the shuffles (default ``self.iteration``; :class:`metafast.Reptile` uses
            its own ``iteration``, counted from 0).
        epsilon : float, optional
            Outer step size (default ``self.epsilon``).

        Returns
        -------
        float
            Mean over tasks of the query loss at the adapted parameters.

        Raises
        ------
        FloatingPointError
            When the loss or the new theta is not finite; nothing is changed (the core then
            raises :class:`metafast.TrainingDivergedError`).
        """
        if iteration is None:
            iteration = self.iteration
        epsilon = self.epsilon if epsilon is None else float(epsilon)
        num_tasks = len(batch.x_support)
        if num_tasks == 0:
            raise ValueError("the meta-batch holds no task")
        if not (len(batch.y_support) == len(batch.x_query) == len(batch.y_query) == num_tasks):
            raise ValueError("x_support, y_support, x_query and y_query must hold the same number of tasks")
        key = shuffle_seed(self.seed)
        chain = self.state
        total_loss = 0.0
        total_delta = np.zeros_like(self.theta)
        for i in range(num_tasks):
            x_support = _floats(batch.x_support[i])
            rng = CounterRng(key, iteration, i)
            state = fresh_state(self.theta.size) if self.reset_optimizer else chain
            params, state = self._inner(
                self.theta, x_support, batch.y_support[i], self.inner_updates(x_support.shape[0]), rng, state
            )
            if not self.reset_optimizer:
                chain = state
            total_loss += float(
                mlp_loss(self.model, params, _floats(batch.x_query[i]), _targets(batch.y_query[i], self.loss), self.loss)
            )
            total_delta += params - self.theta
        query_loss = total_loss / num_tasks
        theta = self.theta + epsilon * (total_delta / num_tasks)
        if not (math.isfinite(query_loss) and np.all(np.isfinite(theta))):
            raise FloatingPointError(f"Reptile diverged at iteration {iteration}: a result is not finite")
        self.theta = theta
        if not self.reset_optimizer:
            self.state = chain
        self.iteration += 1
        return query_loss

    def adapt(self, x_support: np.ndarray, y_support: np.ndarray, steps: int | None = None) -> np.ndarray:
        """Parameters adapted to one task: ``steps`` inner updates (None: a full inner loop)
        from theta with a fresh optimizer state, shuffles keyed by
        ``(shuffle_seed(seed), 2**64 - 1, 0)``, as :meth:`metafast.Reptile.adapt`."""
        x_support = _floats(x_support)
        steps = self.inner_updates(x_support.shape[0]) if steps is None else _check_count(steps, "steps")
        rng = CounterRng(shuffle_seed(self.seed), EVALUATION_ITERATION, 0)
        params, _ = self._inner(self.theta, x_support, y_support, steps, rng, fresh_state(self.theta.size))
        return params

    def evaluate(self, batch: Any, steps: tuple[int, ...] = (0, 1, 5, 10)) -> np.ndarray:
        """Query loss of every task after each number of inner updates in ``steps``, as the
        core's evaluation computes it: each task from theta with a fresh optimizer state and
        its own shuffle stream ``(shuffle_seed(seed), 2**64 - 1, i)``, the step counts run
        one after another in ascending order. A NaN loss (diverged adaptation) is reported
        as ``+inf``.

        Returns
        -------
        ndarray, shape (T, len(steps))
            Losses, columns in ascending order of the distinct step counts.
        """
        counts = sorted({_check_count(s, "steps[i]") for s in steps})
        num_tasks = len(batch.x_support)
        losses = np.empty((num_tasks, len(counts)))
        key = shuffle_seed(self.seed)
        for i in range(num_tasks):
            rng = CounterRng(key, EVALUATION_ITERATION, i)
            params, state = self.theta.copy(), fresh_state(self.theta.size)
            order = np.arange(len(batch.x_support[i]))  # the current pass's permutation, kept across columns
            done = 0
            x_query, y_query = _floats(batch.x_query[i]), _targets(batch.y_query[i], self.loss)
            for c, count in enumerate(counts):
                params, state = self._inner(params, batch.x_support[i], batch.y_support[i], count - done, rng, state,
                                            first_update=done, order=order)
                done = count
                with np.errstate(all="ignore"):
                    value = float(mlp_loss(self.model, params, x_query, y_query, self.loss))
                losses[i, c] = math.inf if math.isnan(value) else value
        return losses


__all__ = ["EVALUATION_ITERATION", "fresh_state", "batches_per_pass", "inner_loop", "Reptile"]
