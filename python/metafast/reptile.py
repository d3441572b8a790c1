"""Reptile (Nichol et al. 2018): run SGD or Adam on a task from theta to theta~, then move
theta toward it; batched, ``theta += epsilon * mean_i(theta~_i - theta)``."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core, _validation
from ._share import Share
from .supervised import SupervisedLearner
from .networks import Network, core_class
from .tasks import TaskFamily


# The inner learning rate each optimizer gets by default.
INNER_LR = {"adam": 1e-2, "sgd": 0.1}


class Reptile(SupervisedLearner):
    """Reptile, serial (one task per meta-iteration) or batched (several, in parallel).

    Parameters
    ----------
    model : MLP or ConvNet
        The network; its parameters are theta.
    loss : {"mse", "bce", "softmax_ce"}
        Loss of the inner loop (and of the query sets, which only score).
    inner_optimizer : {"adam", "sgd"}, optional
        Optimizer of the inner loop. Default: Adam for ``mse`` (the book's sine setting), SGD
        for ``bce`` and ``softmax_ce``: with Adam's per-parameter normalisation, ten passes
        over a few-shot support set overfit it, and meta-training drove the query loss of
        few-shot classification up instead of down.
    inner_lr : float, optional
        Its learning rate. Default: 1e-2 for Adam, 0.1 for SGD.
    inner_epochs : int
        Passes over a task's support set in the inner loop.
    inner_batch : int
        Rows per minibatch: each pass walks the support set in consecutive minibatches of this
        many rows, in order (the last one shorter when the rows do not divide evenly).
    epsilon : float
        Outer step size in (0, 1].
    epsilon_final : float or None
        If given, ``fit`` anneals epsilon linearly from ``epsilon`` to ``epsilon_final`` over
        its iterations (the Reptile paper anneals to 0). The schedule belongs to one ``fit``
        call: a second call (after Ctrl-C, say) starts it again.
    adam_betas : (float, float)
        Adam's betas for the inner loop.
    reset_optimizer : bool
        Fresh inner optimizer state for every task (default). With False, the inner Adam
        state carries over from task to task, as in the book's TensorFlow listing; the tasks of
        a batch then form one chain and run one after another.
    shuffle : bool
        Reshuffle the support rows at the start of every pass (from a counter-based stream
        keyed by seed, meta-iteration and task, so results stay reproducible).
    dtype : {"float32", "float64"}
        Precision of all computations.
    seed : int
        Seeds theta (``model.init(seed)``), the task stream of ``fit`` and the shuffles.
    num_threads : int or None
        Threads over the tasks of a meta-batch (None: all cores). Results do not depend on it.
    adam_eps : float
        Adam's denominator constant in the inner loop.

    Notes
    -----
    One adaptation *step* (in :meth:`adapt` and :meth:`evaluate`) is one inner optimizer
    update on one minibatch; ``steps=None`` runs the whole inner loop of meta-training
    (``inner_epochs`` passes). Adaptation starts from a fresh optimizer state.

    Reference: A. Nichol, J. Achiam, J. Schulman (2018), "On First-Order Meta-Learning
    Algorithms", arXiv:1803.02999.

    Examples
    --------
    >>> import metafast as mf
    >>> rep = mf.Reptile(mf.MLP([1, 64, 1], activation="tanh"), inner_lr=1e-2, epsilon=0.1)
    >>> history = rep.fit(mf.tasks.Sinusoid.book(), iterations=100, meta_batch=1, progress=False)
    """

    _progress_label = "Reptile"
    _divergence_hint = "a smaller inner_lr or epsilon"

    @classmethod
    def _learner_bytes(cls, num_params: int, alpha_vectors: int, dtype: np.dtype) -> int:
        impl_class = _core.ReptileFloat32 if dtype == np.float32 else _core.ReptileFloat64
        return impl_class.learner_bytes(num_params)

    def __init__(self, model: Network, loss: str = "mse", inner_optimizer: str | None = None, inner_lr: float | None = None,
                 inner_epochs: int = 10, inner_batch: int = 10, epsilon: float = 0.1,
                 epsilon_final: float | None = None, adam_betas: tuple[float, float] = (0.9, 0.999),
                 reset_optimizer: bool = True, shuffle: bool = False, dtype: Any = "float32", seed: int = 0,
                 num_threads: int | None = None, adam_eps: float = 1e-8) -> None:
        super().__init__(model, loss, dtype, seed)
        if inner_optimizer is None:
            inner_optimizer = "adam" if self._loss == "mse" else "sgd"
        self._inner_optimizer = _validation.string(inner_optimizer, "inner_optimizer")
        if inner_lr is None:
            inner_lr = INNER_LR.get(self._inner_optimizer, 1e-2)  # an unknown optimizer: the core names it
        # Types here; the core's constructor checks the ranges (one message for each).
        self._inner_lr = _validation.real(inner_lr, "inner_lr")
        self._inner_epochs = _validation.int64(inner_epochs, "inner_epochs")
        self._inner_batch = _validation.int64(inner_batch, "inner_batch")
        self._epsilon = _validation.real(epsilon, "epsilon")
        self._epsilon_final = None if epsilon_final is None else _validation.real(epsilon_final, "epsilon_final")
        self._adam_betas = _validation.two_reals(adam_betas, "adam_betas")
        self._adam_eps = _validation.real(adam_eps, "adam_eps")
        self._reset_optimizer = _validation.boolean(reset_optimizer, "reset_optimizer")
        self._shuffle = _validation.boolean(shuffle, "shuffle")
        self._check_learner_memory(model.num_params, 0)
        self._impl = core_class("Reptile", model, self._dtype)(model._impl, self._loss, self._inner_optimizer, self._inner_lr, *self._adam_betas,
                                self._adam_eps, self._inner_epochs, self._inner_batch, self._reset_optimizer,
                                self._shuffle, self._seed, self._threads(num_threads), self._epsilon,
                                self._epsilon if self._epsilon_final is None else self._epsilon_final)
        self._impl.set_params(model.init(self._seed, self._dtype))

    @property
    def inner_optimizer(self) -> str:
        """Optimizer of the inner loop, "adam" or "sgd" (the default resolved for the loss)."""
        return self._inner_optimizer

    @property
    def inner_lr(self) -> float:
        """Learning rate of the inner loop."""
        return self._inner_lr

    @property
    def epsilon(self) -> float:
        """Outer step size (at the start of each ``fit``, when ``epsilon_final`` anneals it)."""
        return self._epsilon

    @property
    def epsilon_final(self) -> float | None:
        """Outer step size that ``fit`` anneals to over its iterations, or None (constant)."""
        return self._epsilon_final

    @property
    def inner_epochs(self) -> int:
        """Passes over each task's support set in the inner loop."""
        return self._inner_epochs

    @property
    def inner_batch(self) -> int:
        """Rows per inner update."""
        return self._inner_batch

    @property
    def reset_optimizer(self) -> bool:
        """Whether each task's inner loop starts from a fresh optimizer state."""
        return self._reset_optimizer

    @property
    def shuffle(self) -> bool:
        """Whether the support rows are reshuffled at every pass."""
        return self._shuffle

    def _share_of(self, meta_batch: int, comm: Any) -> Share:
        if comm is not None and not self._reset_optimizer:
            raise ValueError("comm needs reset_optimizer=True: with the inner optimizer state carried from task "
                             "to task, the tasks of a meta-batch form one chain that cannot be split")
        return super()._share_of(meta_batch, comm)

    def _schedule(self) -> tuple[int, int]:
        """Where training stands in the epsilon schedule (which the core computes): the
        meta-iterations into the running ``fit`` call and all it runs (0 of 0 outside fit:
        epsilon constant)."""
        fit = self._current_fit
        return (0, 0) if fit is None else (self._iteration - fit.start, len(fit))

    # Hooks of SupervisedLearner and Learner.
    def _step(self, arrays: tuple[np.ndarray, ...], share: Share) -> tuple[bool, float]:
        return share.result(self._impl.meta_step(*share.of(arrays), self._iteration, *self._schedule(),
                                                 **share.core()))

    def _native_fit(self, family: TaskFamily, count: int, share: Share) -> tuple[np.ndarray, bool]:
        return share.result(self._impl.fit(family._impl, self._iteration, count, share.count, *self._schedule(),
                                           **share.core()))

    def _adapted(self, x: np.ndarray, y: np.ndarray, steps: int | None) -> np.ndarray:
        return self._impl.adapt(x, y, self._impl.inner_updates(x.shape[0]) if steps is None else steps)

    def _hyperparameters(self) -> dict[str, Any]:
        return dict(loss=self._loss, inner_optimizer=self._inner_optimizer, inner_lr=self._inner_lr,
                    inner_epochs=self._inner_epochs, inner_batch=self._inner_batch, epsilon=self._epsilon,
                    epsilon_final=self._epsilon_final, adam_betas=self._adam_betas, adam_eps=self._adam_eps,
                    reset_optimizer=self._reset_optimizer, shuffle=self._shuffle)
