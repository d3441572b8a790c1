"""Meta-SGD (Li et al. 2017): learn the initial parameters theta and a per-parameter learning
rate alpha so that ``theta' = theta - alpha * grad L_support(theta)`` fits a new task."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core, _validation
from ._docs import shared_docs
from ._share import Share
from .base import Learner
from .errors import TrainingDivergedError
from .learner import MetaLearner
from .mlp import MLP
from .task_batch import TaskBatch
from .tasks import TaskFamily


class InnerLearningRates(Learner, abstract=True):
    """What every Meta-SGD learner adds to theta: alpha, a learning rate per parameter for the
    inner step ``theta - alpha * grad``, meta-learned with theta (the core holds both).

    Parameters
    ----------
    model, dtype, seed
        As for :class:`~metafast.base.Learner`.
    """

    _param_names = ("theta", "alpha")

    @property
    def alpha(self) -> np.ndarray:
        """Per-parameter inner learning rates (a copy; assign to change them): shape
        (num_params,), or (inner_steps, num_params) with one vector per inner step."""
        alpha, shape = self._params()["alpha"], self._alpha_shape()
        return alpha if shape is None else alpha.reshape(shape)

    @alpha.setter
    def alpha(self, value: Any) -> None:
        array, shape = np.asarray(value), self._alpha_shape()
        if shape is not None:
            if array.shape != shape:
                raise ValueError(f"alpha must have shape {shape}, got {array.shape}")
            array = array.reshape(-1)
        self._set_param("alpha", array)  # the core checks a flat alpha's length

    def _alpha_shape(self) -> tuple[int, ...] | None:
        """alpha's shape when it is not one flat rate per entry of theta (the core's layout)."""
        return None


@shared_docs
class MetaSGD(MetaLearner, InnerLearningRates):
    """Meta-SGD with an exact meta-gradient through any number of inner steps.

    Parameters
    ----------
    model : MLP
        The network; its parameters are theta.
    loss : {"mse", "bce", "softmax_ce"}
        Loss of the support (inner) and query (outer) sets.
    inner_steps : int
        Adaptation steps ``theta <- theta - alpha * grad L_support(theta)``.
    alpha_init : float or (low, high)
        Initial learning rates: one value for all parameters, or uniform per parameter; at
        least 0 (a negative rate would climb the support loss; meta-training may still drive
        single entries of alpha below 0, and keeps them).
    first_order : bool
        Drop the Hessian terms of the meta-gradient (the alpha gradient keeps its exact form).
    {meta-optimizer parameters}
    {alpha learning rate}
    {multi-step parameters}
    dtype : {"float32", "float64"}
        Precision of all computations. Floating data is converted to it.
    seed : int
        Seeds theta (``model.init(seed)``), alpha and the task stream of ``fit``.
    num_threads : int or None
        Threads over the tasks of a meta-batch (None: all cores). Results do not depend on it.
    {adam parameters}

    Notes
    -----
    The meta-gradient is the exact reverse pass through the inner loop, with Hessian-vector
    products from Pearlmutter's R-operator: for ``j = J-1 .. 0``,
    ``g_alpha_j -= g_j * v`` and ``v <- v - H_j (alpha_j * v)``, from ``v = grad L_query(theta_J)``
    (``alpha_j`` is alpha, or its row j with ``alpha_per_step``).
    The book "Hands-On Meta Learning with Python" updates alpha with theta's meta-gradient;
    that is not the gradient with respect to alpha, and metafast does not copy it (see
    ``metafast.reference.book_metasgd`` for a port of that listing).

    Reference: Z. Li, F. Zhou, F. Chen, H. Li (2017), "Meta-SGD: Learning to Learn Quickly for
    Few-Shot Learning", arXiv:1707.09835.

    Examples
    --------
    >>> import metafast as mf
    >>> learner = mf.MetaSGD(mf.MLP([1, 40, 40, 1]), loss="mse", meta_lr=1e-3)
    >>> history = learner.fit(mf.tasks.Sinusoid(), iterations=100, meta_batch=25, progress=False)
    >>> report = learner.evaluate(mf.tasks.Sinusoid(), num_tasks=100, steps=(0, 1))
    """

    _progress_label = "Meta-SGD"

    @property
    def _thread_values_per_parameter(self) -> int:  # type: ignore[override]
        return 2 * self._inner_steps + 4  # theta_0 .. theta_J, g_0 .. g_J-1 and three more vectors

    def __init__(self, model: MLP, loss: str = "mse", inner_steps: int = 1, alpha_init: float | tuple[float, float] = 0.01,
                 first_order: bool = False, meta_optimizer: str = "adam", meta_lr: float = 1e-3,
                 dtype: Any = "float32", seed: int = 0, num_threads: int | None = None,
                 adam_betas: tuple[float, float] = (0.9, 0.999), adam_eps: float = 1e-8,
                 alpha_per_step: bool = False, clip_grad_norm: float | None = None, init: Any = None,
                 alpha_lr: float | None = None) -> None:
        self._alpha_per_step = _validation.boolean(alpha_per_step, "alpha_per_step")
        self._build(model, loss, inner_steps, first_order, meta_optimizer, meta_lr, dtype, seed, num_threads,
                    adam_betas, adam_eps, clip_grad_norm, init, fixed_inner_lr=None, alpha_init=alpha_init,
                    alpha_lr=alpha_lr)

    def _build(self, model: MLP, loss: str, inner_steps: int, first_order: bool, meta_optimizer: str,
               meta_lr: float, dtype: Any, seed: int, num_threads: int | None, adam_betas: tuple[float, float],
               adam_eps: float, clip_grad_norm: float | None, init: Any, fixed_inner_lr: float | None,
               alpha_init: Any = None, alpha_lr: float | None = None) -> None:
        """The constructor's work, shared with MAML (whose alpha is ``fixed_inner_lr``)."""
        super().__init__(model, loss, dtype, seed)
        # Types here; the core's constructor checks the ranges (one message for each).
        self._inner_steps = _validation.int64(inner_steps, "inner_steps")
        self._first_order = _validation.boolean(first_order, "first_order")
        self._meta_optimizer = _validation.string(meta_optimizer, "meta_optimizer")
        self._meta_lr = _validation.real(meta_lr, "meta_lr")
        self._adam_betas = _validation.two_reals(adam_betas, "adam_betas")
        self._adam_eps = _validation.real(adam_eps, "adam_eps")
        self._clip_grad_norm = None if clip_grad_norm is None else _validation.real(clip_grad_norm, "clip_grad_norm")
        theta, self._init = initial_theta(model, init, self._seed, self._dtype)
        if fixed_inner_lr is None:
            if isinstance(alpha_init, (tuple, list)):
                self._alpha_init: float | tuple[float, float] = _validation.pair(alpha_init, "alpha_init")
                _validation.real(self._alpha_init[0], "alpha_init[0]", minimum=0.0)
            else:
                self._alpha_init = _validation.real(alpha_init, "alpha_init", minimum=0.0)
            self._alpha_lr: float | None = default_alpha_lr(alpha_lr, self._meta_lr, self._alpha_init,
                                                             scaled=self._inner_steps > 1)
        else:
            self._alpha_lr = None
        impl_class = _core.MetaSGDFloat32 if self._dtype == np.float32 else _core.MetaSGDFloat64
        self._impl = impl_class(model._impl, self._loss, self._inner_steps, self._first_order, self._meta_optimizer,
                                self._meta_lr, *self._adam_betas, self._adam_eps, _validation.num_threads(num_threads),
                                alpha_per_step=self._alpha_per_step, clip_grad_norm=self._clip_grad_norm,
                                fixed_inner_lr=fixed_inner_lr, alpha_lr=self._alpha_lr)
        if fixed_inner_lr is None:
            self._impl.set_params(theta, self._initial_alpha())
        else:
            self._impl.set_params(theta)

    @property
    def alpha_lr(self) -> float:
        """alpha's meta learning rate (see the constructor for its default)."""
        assert self._alpha_lr is not None
        return self._alpha_lr

    @property
    def inner_steps(self) -> int:
        """Adaptation steps of the inner loop (in meta-training, and in ``adapt`` by default)."""
        return self._inner_steps

    @property
    def first_order(self) -> bool:
        """Whether the meta-gradient drops its Hessian terms."""
        return self._first_order

    @property
    def alpha_per_step(self) -> bool:
        """Whether alpha holds one vector per inner step."""
        return self._alpha_per_step

    @property
    def clip_grad_norm(self) -> float | None:
        """The largest norm of the mean meta-gradient an update uses (None: no clipping)."""
        return self._clip_grad_norm

    def _alpha_shape(self) -> tuple[int, ...]:
        n = self._model.num_params
        return (self._inner_steps, n) if self._alpha_per_step else (n,)

    def meta_gradient(self, batch: TaskBatch) -> tuple[np.floating, np.ndarray, np.ndarray]:
        """The mean query loss after adaptation on the tasks of ``batch`` and its exact
        gradients; changes nothing.

        Parameters
        ----------
        batch : TaskBatch
            The tasks, whose gradients are averaged.

        Returns
        -------
        loss : numpy.floating
            Mean query loss after adaptation.
        g_theta, g_alpha : numpy.ndarray
            Its gradients with respect to theta and alpha (alpha's shape), exact and before
            any clipping (``clip_grad_norm`` clips what the update uses).
        """
        loss, g_theta, g_alpha = self._exact_meta_gradient(batch)
        return loss, g_theta, g_alpha.reshape(self._alpha_shape())

    def _exact_meta_gradient(self, batch: TaskBatch) -> tuple[np.floating, np.ndarray, np.ndarray]:
        """The core's mean loss and gradients (g_alpha flat, empty for MAML), all finite."""
        loss, g_theta, g_alpha, _ = self._impl.meta_gradient(*self._arrays(batch))
        if not (np.isfinite(loss) and np.all(np.isfinite(g_theta)) and np.all(np.isfinite(g_alpha))):
            raise TrainingDivergedError(self._iteration, " on this batch", self._divergence_hint)
        return self._dtype.type(loss), g_theta, g_alpha

    def _initial_alpha(self) -> np.ndarray:
        size = int(np.prod(self._alpha_shape()))
        if isinstance(self._alpha_init, tuple):
            rng = np.random.default_rng([self._seed, 1])  # a stream apart from theta's
            return rng.uniform(*self._alpha_init, size).astype(self._dtype)
        return np.full(size, self._alpha_init, dtype=self._dtype)

    # Hooks of MetaLearner and Learner.
    def _step(self, arrays: tuple[np.ndarray, ...], share: Share) -> tuple[bool, float]:
        return share.result(self._impl.meta_step(*share.of(arrays), **share.core()))

    def _native_fit(self, family: TaskFamily, count: int, share: Share) -> tuple[np.ndarray, bool]:
        return share.result(self._impl.fit(family._impl, self._seed, self._iteration, count, share.count,
                                           **share.core()))

    def _adapted(self, x: np.ndarray, y: np.ndarray, steps: int | None) -> np.ndarray:
        return self._impl.adapt(x, y, self._inner_steps if steps is None else steps)

    def _hyperparameters(self) -> dict[str, Any]:
        return dict(loss=self._loss, inner_steps=self._inner_steps, alpha_init=self._alpha_init,
                    first_order=self._first_order, meta_optimizer=self._meta_optimizer, meta_lr=self._meta_lr,
                    adam_betas=self._adam_betas, adam_eps=self._adam_eps, alpha_per_step=self._alpha_per_step,
                    alpha_lr=self._alpha_lr, **self._common_hyperparameters())

    @classmethod
    def _from_saved(cls, config: dict[str, Any], arrays: dict[str, np.ndarray], num_threads: int | None) -> Any:
        if cls is MetaSGD and "alpha_lr" not in config:  # a file from before alpha_lr: alpha learnt at meta_lr
            config = dict(config, alpha_lr=config.get("meta_lr"))
        return super()._from_saved(config, arrays, num_threads)

    def _common_hyperparameters(self) -> dict[str, Any]:
        """Those MAML shares: clipping and the initialisation scheme (None for an explicit theta,
        which the file holds anyway)."""
        return dict(clip_grad_norm=self._clip_grad_norm, init=self._init)


def default_alpha_lr(alpha_lr: Any, meta_lr: float, alpha_init: float | tuple[float, float], scaled: bool) -> float:
    """alpha's meta learning rate: ``alpha_lr``, or by default meta_lr, times alpha's initial
    scale when ``scaled`` (meta_lr itself when alpha starts at 0, which gives no scale)."""
    if alpha_lr is not None:
        return _validation.real(alpha_lr, "alpha_lr", minimum=0.0, exclusive=True)
    scale = (alpha_init[0] + alpha_init[1]) / 2 if isinstance(alpha_init, tuple) else alpha_init
    return meta_lr * scale if scaled and scale > 0 else meta_lr


INIT_SCHEMES = ("auto", "he", "glorot", "pytorch")


def initial_theta(model: MLP, init: Any, seed: int, dtype: np.dtype) -> tuple[np.ndarray, Any]:
    """theta to start from, and what a saved file records of ``init``: a scheme of
    :meth:`MLP.init` (a name, or ("normal", std)), or an explicit theta (recorded as None)."""
    if init is None or isinstance(init, str) or (isinstance(init, (tuple, list)) and len(init) == 2
                                                    and isinstance(init[0], str)):
        scheme = "auto" if init is None else (init if isinstance(init, str) else (init[0], init[1]))
        return model.init(seed, dtype, scheme=scheme), None if init is None else scheme
    theta = _validation.converted(np.asarray(init), dtype, "init")
    if theta.shape != (model.num_params,):
        raise ValueError(f"init as an array must be theta, of shape ({model.num_params},), got {theta.shape}")
    if not np.all(np.isfinite(theta)):
        raise ValueError("init contains NaN or infinity")
    return np.ascontiguousarray(theta), None
