"""Learned inner learning rates: alpha, one step size per parameter for the inner step
``theta - alpha * grad``, meta-learned with theta. What Meta-SGD (supervised and RL) has and
MAML, whose step size is fixed, does not."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _validation
from .learner import Learner


class InnerLearningRates(Learner, abstract=True):
    """Base of the learners with a learned alpha (:class:`~metafast.MetaSGD` and
    :class:`~metafast.rl.MetaSGDRL`); the core holds alpha beside theta.

    Parameters
    ----------
    model, dtype, seed
        As for :class:`~metafast.learner.Learner`.

    Notes
    -----
    A subclass sets ``_alpha_lr``, alpha's meta learning rate (:func:`default_alpha_lr`).
    """

    _param_names = ("theta", "alpha")
    _divergence_hint = "a smaller meta_lr or alpha_init"
    _alpha_lr: float

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

    @property
    def alpha_lr(self) -> float:
        """alpha's meta learning rate (see the constructor for its default)."""
        return self._alpha_lr

    def _alpha_shape(self) -> tuple[int, ...] | None:
        """alpha's shape when it is not one flat rate per entry of theta (the core's layout)."""
        return None

    def _checked_alpha_init(self, alpha_init: Any) -> float | tuple[float, float]:
        """``alpha_init``, a rate or a (low, high) range, at least 0 and within the dtype's range."""
        if isinstance(alpha_init, (tuple, list)):
            low, high = _validation.pair(alpha_init, "alpha_init")
            _validation.real(low, "alpha_init[0]", minimum=0.0)
            checked: float | tuple[float, float] = (low, high)
        else:
            checked = _validation.real(alpha_init, "alpha_init", minimum=0.0)
        largest = float(np.finfo(self._dtype).max)
        if (max(checked) if isinstance(checked, tuple) else checked) > largest:
            raise ValueError(f"alpha_init must be at most {largest:.4g} in {self._dtype.name}, got {alpha_init!r}")
        return checked


def default_alpha_lr(alpha_lr: Any, meta_lr: float, alpha_init: float | tuple[float, float], scaled: bool) -> float:
    """alpha's meta learning rate: ``alpha_lr``, or by default meta_lr, times alpha's initial
    scale when ``scaled`` (meta_lr itself when alpha starts at 0, which gives no scale)."""
    if alpha_lr is not None:
        return _validation.real(alpha_lr, "alpha_lr")  # its range: the core's check
    scale = (alpha_init[0] + alpha_init[1]) / 2 if isinstance(alpha_init, tuple) else alpha_init
    return meta_lr * scale if scaled and scale > 0 else meta_lr
