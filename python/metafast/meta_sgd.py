"""Meta-SGD (Li et al. 2017): learn the initial parameters theta and a per-parameter learning
rate alpha so that ``theta' = theta - alpha * grad L_support(theta)`` fits a new task."""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np

from . import _validation
from ._docs import shared_docs
from .errors import BeyondTrainedStepsWarning
from .inner_learning_rates import InnerLearningRates, default_alpha_lr
from .meta_gradient import MetaGradientLearner
from .networks import Network
from .task_batch import TaskBatch


@shared_docs
class MetaSGD(MetaGradientLearner, InnerLearningRates):
    """Meta-SGD with an exact meta-gradient through any number of inner steps.

    Parameters
    ----------
    model : MLP or ConvNet
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

    def __init__(self, model: Network, loss: str = "mse", inner_steps: int = 1, alpha_init: float | tuple[float, float] = 0.01,
                 first_order: bool = False, meta_optimizer: str = "adam", meta_lr: float = 1e-3,
                 dtype: Any = "float32", seed: int = 0, num_threads: int | None = None,
                 adam_betas: tuple[float, float] = (0.9, 0.999), adam_eps: float = 1e-8,
                 alpha_per_step: bool = False, clip_grad_norm: float | None = None, init: Any = None,
                 alpha_lr: float | None = None) -> None:
        # What the inner rule needs (read by _inner_rule and _initial_params during the base's
        # constructor, once dtype, meta_lr and inner_steps are checked).
        self._alpha_per_step = _validation.boolean(alpha_per_step, "alpha_per_step")
        self._alpha_arguments = (alpha_init, alpha_lr)
        super().__init__(model, loss, inner_steps, first_order, meta_optimizer, meta_lr, dtype, seed, num_threads,
                         adam_betas, adam_eps, clip_grad_norm, init)
        del self._alpha_arguments

    @property
    def alpha_per_step(self) -> bool:
        """Whether alpha holds one vector per inner step."""
        return self._alpha_per_step

    @property
    def alpha_init(self) -> float | tuple[float, float]:
        """alpha's initial value: one rate for every parameter, or the (low, high) range of its
        uniform draw."""
        return self._alpha_init

    def _alpha_vectors(self) -> int:
        return self._inner_steps if self._alpha_per_step else 1

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

    # Hooks of MetaGradientLearner and Learner.
    def _default_evaluation_steps(self) -> tuple[int, ...]:
        return tuple(sorted({0, 1, self._inner_steps}))

    def _diverged_beyond_training(self, counts: Sequence[int], diverged: Sequence[float]) -> None:
        beyond = [(steps, share) for steps, share in zip(counts, diverged) if steps > self._inner_steps and share > 0]
        if beyond:
            shares = " and ".join(f"{share:.1%} of the tasks after {steps} steps" for steps, share in beyond)
            warnings.warn(f"adaptation diverged on {shares}, beyond the {self._inner_steps} "
                          f"step{'s' * (self._inner_steps > 1)} this Meta-SGD learner's step sizes were meta-trained "
                          f"for: later steps repeat {'the last row of alpha' if self._alpha_per_step else 'alpha'}, "
                          f"which overshoots here; meta-train with the steps you adapt with (inner_steps)",
                          BeyondTrainedStepsWarning, stacklevel=3)

    def _inner_rule(self) -> dict[str, Any]:
        alpha_init, alpha_lr = self._alpha_arguments
        self._alpha_init = self._checked_alpha_init(alpha_init)
        self._alpha_lr = default_alpha_lr(alpha_lr, self._meta_lr, self._alpha_init, scaled=self._inner_steps > 1)
        return dict(alpha_per_step=self._alpha_per_step, alpha_lr=self._alpha_lr)

    def _initial_params(self) -> tuple[np.ndarray, ...]:
        size = int(np.prod(self._alpha_shape()))
        if isinstance(self._alpha_init, tuple):
            rng = np.random.default_rng([self._seed, 1])  # a stream apart from theta's
            return (rng.uniform(*self._alpha_init, size).astype(self._dtype),)
        return (np.full(size, self._alpha_init, dtype=self._dtype),)

    def _hyperparameters(self) -> dict[str, Any]:
        return dict(self._common_hyperparameters(), alpha_init=self._alpha_init, alpha_per_step=self._alpha_per_step,
                    alpha_lr=self._alpha_lr)

    @classmethod
    def _from_saved(cls, config: dict[str, Any], arrays: dict[str, np.ndarray], num_threads: int | None) -> Any:
        if "alpha_lr" not in config:  # a file from before alpha_lr: alpha learnt at meta_lr
            config = dict(config, alpha_lr=config.get("meta_lr"))
        return super()._from_saved(config, arrays, num_threads)
