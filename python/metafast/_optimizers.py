"""The meta-optimizer in NumPy, for the one learner path whose update runs in Python
(MetaSGDRL on GymTasks): Adam or SGD over one flat vector, in the core's order of operations.

It stays while the core binds no optimizer update of its own (production code never imports
metafast.reference, whose adam_update is the test oracle); tests/test_learners.py holds it
equal to that oracle bit for bit."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

#: ``(m, v, step)``: Adam's moment estimates and the number of updates so far, saved by every
#: learner as ``optimizer_m``, ``optimizer_v`` and ``optimizer_step``.
State = tuple[np.ndarray, np.ndarray, int]


class MetaOptimizer:
    """Adam or plain SGD over one flat parameter vector, holding its state between updates.

    Parameters
    ----------
    name : {"adam", "sgd"}
        The update rule.
    size : int
        Length of the parameter vector.
    dtype : numpy.dtype
        Precision of the parameters and of the state.
    lr : float
        Learning rate.
    betas : (float, float)
        Adam's decay rates of the first and second moment estimates.
    eps : float
        Adam's denominator constant.
    """

    def __init__(self, name: str, size: int, dtype: Any, lr: float, betas: tuple[float, float], eps: float) -> None:
        self.name, self.lr, self.betas, self.eps = name, lr, betas, eps
        self.dtype = np.dtype(dtype)
        self.state: State = (np.zeros(size, dtype=self.dtype), np.zeros(size, dtype=self.dtype), 0)

    def update(self, params: np.ndarray, grad: np.ndarray) -> Optional[np.ndarray]:
        """One update of ``params`` along ``-grad``.

        Parameters
        ----------
        params, grad : numpy.ndarray
            The parameters and their gradient.

        Returns
        -------
        numpy.ndarray or None
            The updated parameters; None, with the state left as it was, when they are not
            finite (the caller keeps the last finite parameters).
        """
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is an answer here, not a warning
            updated, (m, v, step) = self._proposed(params, grad)
        if not np.all(np.isfinite(updated)):
            return None
        self.state = (m.astype(self.dtype), v.astype(self.dtype), step)
        return updated.astype(self.dtype)

    def _proposed(self, params: np.ndarray, grad: np.ndarray) -> tuple[np.ndarray, State]:
        m, v, step = self.state
        step += 1  # SGD counts its updates too, as the core does
        if self.name == "sgd":
            return params - self.lr * grad, (m, v, step)
        beta1, beta2 = self.betas
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad**2
        # m_hat / (sqrt(v_hat) + eps) with the core's operations: one square root and one division
        # per element, the bias corrections folded into two scalars.
        step_size, inv_sqrt_c2 = self.lr / (1.0 - beta1**step), 1.0 / np.sqrt(1.0 - beta2**step)
        return params - step_size * m / (np.sqrt(v) * inv_sqrt_c2 + self.eps), (m, v, step)
