"""What MAML and Meta-SGD share: an inner loop of plain gradient steps, an exact meta-gradient
through all of them (or its first-order approximation), clipping and the meta-optimizer, all in
the core's Meta-SGD engine. The two differ only in their inner step size: fixed (MAML) or
learned per parameter (Meta-SGD)."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core, _validation
from ._share import Share
from .errors import TrainingDivergedError
from .mlp import initial_theta
from .networks import Network, core_class
from .supervised import SupervisedLearner
from .task_batch import TaskBatch
from .tasks import TaskFamily


def default_init(inner_steps: int) -> str:
    """The scheme of ``init=None``: "auto" for one inner step, "glorot" for more.

    He's limit, auto's choice before a ReLU, is sqrt(6 / fan_in): 2.45 for a one-input layer,
    whose inputs (a sine's x in [-5, 5]) are not of unit scale. The support loss's largest
    Hessian eigenvalue at the start is then ~1,260 (median over sine tasks, 1-40-40-1 ReLU; up
    to ~3,400) against the 2 / alpha = 200 that gradient steps of alpha = 0.01 stay stable
    below: one step overshoots and the meta-gradient pulls back, but J steps compound the
    overshoot into an overflow (MAML's 5-step sine setting diverged at its first
    meta-iteration). Glorot's limits give ~38 (up to ~120), and equal auto's in networks
    without ReLU, which keep their bits.
    """
    return "auto" if inner_steps == 1 else "glorot"


class MetaGradientLearner(SupervisedLearner, abstract=True):
    """Base of :class:`~metafast.MetaSGD` and :class:`~metafast.MAML`.

    Parameters
    ----------
    model, loss, dtype, seed
        As for :class:`~metafast.supervised.SupervisedLearner`.
    inner_steps, first_order, meta_optimizer, meta_lr, num_threads, adam_betas, adam_eps, clip_grad_norm, init
        As for :class:`~metafast.MetaSGD`.

    Notes
    -----
    A subclass sets what its inner step needs before calling this constructor and provides
    ``_inner_rule`` (the core's keyword arguments for it) and ``_initial_params`` (the
    parameter vectors after theta).
    """

    def __init__(self, model: Network, loss: str, inner_steps: int, first_order: bool, meta_optimizer: str,
                 meta_lr: float, dtype: Any, seed: int, num_threads: int | None, adam_betas: tuple[float, float],
                 adam_eps: float, clip_grad_norm: float | None, init: Any) -> None:
        super().__init__(model, loss, dtype, seed)
        # Types here; the core's constructor checks the ranges (one message for each).
        self._inner_steps = _validation.int64(inner_steps, "inner_steps")
        self._first_order = _validation.boolean(first_order, "first_order")
        self._meta_optimizer = _validation.string(meta_optimizer, "meta_optimizer")
        self._meta_lr = _validation.real(meta_lr, "meta_lr")
        self._adam_betas = _validation.two_reals(adam_betas, "adam_betas")
        self._adam_eps = _validation.real(adam_eps, "adam_eps")
        self._clip_grad_norm = None if clip_grad_norm is None else _validation.real(clip_grad_norm, "clip_grad_norm")
        self._check_learner_memory(model.num_params, self._alpha_vectors())
        theta, self._init = initial_theta(model, init, self._seed, self._dtype, default_init(self._inner_steps))
        self._impl = core_class("MetaSGD", model, self._dtype)(model._impl, self._loss, self._inner_steps, self._first_order, self._meta_optimizer,
                                self._meta_lr, *self._adam_betas, self._adam_eps, self._seed,
                                self._threads(num_threads),
                                clip_grad_norm=self._clip_grad_norm, **self._inner_rule())
        self._impl.set_params(theta, *self._initial_params())

    @classmethod
    def _learner_bytes(cls, num_params: int, alpha_vectors: int, dtype: np.dtype) -> int:
        impl_class = _core.MetaSGDFloat32 if dtype == np.float32 else _core.MetaSGDFloat64
        return impl_class.learner_bytes(num_params, alpha_vectors)

    def _alpha_vectors(self) -> int:
        """Vectors of alpha (each as long as theta) the learner learns."""
        raise NotImplementedError

    @property
    def inner_steps(self) -> int:
        """Adaptation steps of the inner loop (in meta-training, and in ``adapt`` by default)."""
        return self._inner_steps

    @property
    def first_order(self) -> bool:
        """Whether the meta-gradient drops its Hessian terms."""
        return self._first_order

    @property
    def meta_optimizer(self) -> str:
        """The optimizer of the meta-update: "adam" or "sgd"."""
        return self._meta_optimizer

    @property
    def meta_lr(self) -> float:
        """The meta-optimizer's learning rate (of theta)."""
        return self._meta_lr

    @property
    def init(self) -> Any:
        """The scheme theta was initialised with (a name or ("normal", std)); None for the
        default scheme or an explicit theta."""
        return self._init

    @property
    def clip_grad_norm(self) -> float | None:
        """The largest norm of the mean meta-gradient an update uses (None: no clipping)."""
        return self._clip_grad_norm

    def _exact_meta_gradient(self, batch: TaskBatch) -> tuple[np.floating, np.ndarray, np.ndarray]:
        """The core's mean loss and gradients (g_alpha flat, empty without alpha), all finite."""
        arrays = self._arrays(batch)
        self._check_run_memory(arrays, len(arrays[0]), f"a meta-batch of {len(arrays[0])} tasks")
        loss, g_theta, g_alpha, _ = self._impl.meta_gradient(*arrays)
        if not (np.isfinite(loss) and np.all(np.isfinite(g_theta)) and np.all(np.isfinite(g_alpha))):
            raise TrainingDivergedError(self._iteration, " on this batch", self._divergence_hint)
        return self._dtype.type(loss), g_theta, g_alpha

    def _common_hyperparameters(self) -> dict[str, Any]:
        """The constructor arguments both learners have, as a saved file records them (``init``
        None for an explicit theta, which the file holds anyway)."""
        return dict(loss=self._loss, inner_steps=self._inner_steps, first_order=self._first_order,
                    meta_optimizer=self._meta_optimizer, meta_lr=self._meta_lr, adam_betas=self._adam_betas,
                    adam_eps=self._adam_eps, clip_grad_norm=self._clip_grad_norm, init=self._init)

    # Hooks of the subclasses.
    def _inner_rule(self) -> dict[str, Any]:
        """The core's keyword arguments for the inner step size."""
        raise NotImplementedError

    def _initial_params(self) -> tuple[np.ndarray, ...]:
        """The parameter vectors after theta that the learner starts from."""
        raise NotImplementedError

    # Hooks of SupervisedLearner and Learner.
    def _step(self, arrays: tuple[np.ndarray, ...], share: Share) -> tuple[bool, float]:
        return share.result(self._impl.meta_step(*share.of(arrays), **share.core()))

    def _native_fit(self, family: TaskFamily, count: int, share: Share) -> tuple[np.ndarray, bool]:
        return share.result(self._impl.fit(family._impl, self._iteration, count, share.count,
                                           **share.core()))

    def _adapted(self, x: np.ndarray, y: np.ndarray, steps: int | None) -> np.ndarray:
        return self._impl.adapt(x, y, self._inner_steps if steps is None else steps)
