"""MAML (Finn et al. 2017): one fixed inner step size for every parameter, so that only theta is
meta-learned. It runs the core's Meta-SGD engine with the step size held at ``inner_lr`` and its
gradient never computed."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _validation
from ._docs import shared_docs
from .meta_gradient import MetaGradientLearner
from .networks import Network
from .task_batch import TaskBatch


@shared_docs
class MAML(MetaGradientLearner):
    """MAML and first-order MAML, with an exact meta-gradient through any number of inner steps.

    Parameters
    ----------
    model : MLP or ConvNet
        The network; its parameters are theta.
    loss : {"mse", "bce", "softmax_ce"}
        Loss of the support (inner) and query (outer) sets.
    inner_lr : float
        The step size of every inner step ``theta <- theta - inner_lr * grad L_support(theta)``
        (at least 0; MAML's sine experiments use 0.01).
    inner_steps : int
        Adaptation steps in meta-training (and in ``adapt`` by default).
    first_order : bool
        First-order MAML: drop the Hessian terms of the meta-gradient.
    {meta-optimizer parameters}
    dtype : {"float32", "float64"}
        Precision of all computations. Floating data is converted to it.
    seed : int
        Seeds theta and the task stream of ``fit``.
    num_threads : int or None
        Threads over the tasks of a meta-batch (None: all cores). Results do not depend on it.
    {adam parameters}
    clip_grad_norm : float, optional
        Clip the mean meta-gradient to this norm before each update (see :class:`MetaSGD`).
    init : str, ("normal", std) or array, optional
        Initial theta (see :class:`MetaSGD`); MAML's own code uses ("normal", 0.01).

    Notes
    -----
    The meta-gradient is Meta-SGD's with alpha the constant ``inner_lr``: ``v <- v - H_j
    (inner_lr * v)`` for ``j = J-1 .. 0`` from ``v = grad L_query(theta_J)``; the meta-optimizer
    updates theta alone. A learner of this class has no ``alpha``.

    Reference: C. Finn, P. Abbeel, S. Levine (2017), "Model-Agnostic Meta-Learning for Fast
    Adaptation of Deep Networks", ICML.

    Examples
    --------
    >>> import metafast as mf
    >>> maml = mf.MAML(mf.MLP([1, 40, 40, 1]), inner_lr=0.01, inner_steps=1)
    >>> history = maml.fit(mf.tasks.Sinusoid(), iterations=100, meta_batch=25, progress=False)
    """

    _progress_label = "MAML"
    _divergence_hint = "a smaller meta_lr or inner_lr, or clip_grad_norm"

    def __init__(self, model: Network, loss: str = "mse", inner_lr: float = 0.01, inner_steps: int = 1,
                 first_order: bool = False, meta_optimizer: str = "adam", meta_lr: float = 1e-3,
                 dtype: Any = "float32", seed: int = 0, num_threads: int | None = None,
                 adam_betas: tuple[float, float] = (0.9, 0.999), adam_eps: float = 1e-8,
                 clip_grad_norm: float | None = None, init: Any = None) -> None:
        self._inner_lr = _validation.real(inner_lr, "inner_lr")  # its range: the core's check
        super().__init__(model, loss, inner_steps, first_order, meta_optimizer, meta_lr, dtype, seed, num_threads,
                         adam_betas, adam_eps, clip_grad_norm, init)

    @property
    def inner_lr(self) -> float:
        """The fixed step size of the inner steps."""
        return self._inner_lr

    def meta_gradient(self, batch: TaskBatch) -> tuple[np.floating, np.ndarray]:
        """The mean query loss after adaptation on the tasks of ``batch`` and its exact
        gradient with respect to theta; changes nothing.

        Parameters
        ----------
        batch : TaskBatch
            The tasks, whose gradients are averaged.

        Returns
        -------
        loss : numpy.floating
            Mean query loss after adaptation.
        g_theta : numpy.ndarray
            Its gradient with respect to theta (before any clipping).
        """
        loss, g_theta, _ = self._exact_meta_gradient(batch)
        return loss, g_theta

    # Hooks of MetaGradientLearner and Learner.
    def _inner_rule(self) -> dict[str, Any]:
        return dict(fixed_inner_lr=self._inner_lr)

    def _initial_params(self) -> tuple[np.ndarray, ...]:
        return ()

    def _alpha_vectors(self) -> int:
        return 0  # alpha is the fixed inner_lr

    def _hyperparameters(self) -> dict[str, Any]:
        return dict(self._common_hyperparameters(), inner_lr=self._inner_lr)
