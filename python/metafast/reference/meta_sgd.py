"""Meta-SGD in plain NumPy (float64): inner adaptation, the exact meta-gradient with
respect to both the initial parameters theta and the per-parameter learning rates alpha,
and a small training class with an Adam or SGD meta-optimizer.

This is the code a user would write by hand on top of :mod:`metafast.reference.mlp`,
following docs/math.md (section 1) line by line. The test suite uses it as the oracle
for the C++ core and the benchmarks use it as the pure-Python baseline. All network
mathematics (losses, gradients, Hessian-vector products) comes from
:func:`~metafast.reference.mlp.mlp_loss_and_grad` and
:func:`~metafast.reference.mlp.mlp_hvp`.

Reference: Li, Zhou, Chen and Li (2017), "Meta-SGD: Learning to Learn Quickly for Few-Shot
Learning", arXiv:1707.09835.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .mlp import mlp_hvp, mlp_loss_and_grad


def _floats(array: Any) -> np.ndarray:
    return np.asarray(array, dtype=np.float64)


def _targets(y: Any, loss: str) -> np.ndarray:
    # softmax_ce takes integer class labels; every other loss takes float targets.
    if loss == "softmax_ce":
        return np.asarray(y)
    return np.asarray(y, dtype=np.float64)


def _check_steps(steps: int, name: str) -> int:
    if int(steps) != steps or steps < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {steps!r}")
    return int(steps)


def adapt(
    model: Any,
    theta: np.ndarray,
    alpha: np.ndarray,
    x_support: np.ndarray,
    y_support: np.ndarray,
    loss: str = "mse",
    steps: int = 1,
) -> np.ndarray:
    """Adapt ``theta`` to one task by ``steps`` Meta-SGD inner steps.

    Each step is ``theta <- theta - alpha * grad L_S(theta)``, with ``L_S`` the mean loss on
    the support set.

    Parameters
    ----------
    model : object
        Architecture with ``sizes``, ``activation``, ``output`` and ``bias`` attributes
        (a :class:`metafast.MLP`).
    theta : ndarray, shape (P,)
        Initial parameters.
    alpha : ndarray, shape (P,)
        Per-parameter inner learning rates.
    x_support : ndarray, shape (K, sizes[0])
        Support inputs of the task.
    y_support : ndarray
        Support targets: ``(K, sizes[-1])`` floats, or ``(K,)`` integer labels for
        ``"softmax_ce"``.
    loss : {"mse", "bce", "softmax_ce"}
        Loss of the task.
    steps : int
        Number of inner steps; 0 returns a copy of ``theta``.

    Returns
    -------
    ndarray, shape (P,)
        The adapted parameters (a new float64 array).
    """
    steps = _check_steps(steps, "steps")
    theta = _floats(theta).copy()
    alpha = _floats(alpha)
    x_support = _floats(x_support)
    y_support = _targets(y_support, loss)
    for _ in range(steps):
        _, grad = mlp_loss_and_grad(model, theta, x_support, y_support, loss)
        theta = theta - alpha * grad
    return theta


def task_meta_gradient(
    model: Any,
    theta: np.ndarray,
    alpha: np.ndarray,
    x_support: np.ndarray,
    y_support: np.ndarray,
    x_query: np.ndarray,
    y_query: np.ndarray,
    loss: str = "mse",
    inner_steps: int = 1,
    first_order: bool = False,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Query loss after adaptation and its exact gradient with respect to theta and alpha,
    for one task.

    Forward (``J = inner_steps``)::

        theta_0 = theta;  g_j = grad L_S(theta_j);  theta_{j+1} = theta_j - alpha * g_j

    Reverse pass (docs/math.md, section 1)::

        v = grad L_Q(theta_J);  g_alpha = 0
        for j = J-1 ... 0:
            g_alpha += -g_j * v
            v = v - H_j (alpha * v)        # H_j: Hessian of L_S at theta_j; skipped if first_order
        g_theta = v

    Parameters
    ----------
    model : object
        Architecture with ``sizes``, ``activation``, ``output`` and ``bias`` attributes.
    theta, alpha : ndarray, shape (P,)
        Initial parameters and per-parameter inner learning rates.
    x_support, y_support : ndarray
        Support set of the task, ``(K, sizes[0])`` and ``(K, sizes[-1])`` (or ``(K,)``
        integer labels for ``"softmax_ce"``).
    x_query, y_query : ndarray
        Query set of the task, ``(Q, sizes[0])`` and ``(Q, sizes[-1])`` (or ``(Q,)``).
    loss : {"mse", "bce", "softmax_ce"}
        Loss used for both the support and the query set.
    inner_steps : int
        Number of inner steps ``J``.
    first_order : bool
        Drop the Hessian term (``v`` is then not changed by the reverse pass); the alpha
        gradient keeps its formula.

    Returns
    -------
    query_loss : float
        ``L_Q(theta_J)``.
    g_theta : ndarray, shape (P,)
        ``dL_Q(theta_J) / dtheta``.
    g_alpha : ndarray, shape (P,)
        ``dL_Q(theta_J) / dalpha``.
    """
    inner_steps = _check_steps(inner_steps, "inner_steps")
    theta = _floats(theta)
    alpha = _floats(alpha)
    x_support = _floats(x_support)
    y_support = _targets(y_support, loss)
    x_query = _floats(x_query)
    y_query = _targets(y_query, loss)

    # Forward: keep every inner iterate theta_j and support gradient g_j.
    iterates, gradients = [], []
    theta_j = theta.copy()
    for _ in range(inner_steps):
        _, g_j = mlp_loss_and_grad(model, theta_j, x_support, y_support, loss)
        iterates.append(theta_j)
        gradients.append(g_j)
        theta_j = theta_j - alpha * g_j

    query_loss, v = mlp_loss_and_grad(model, theta_j, x_query, y_query, loss)

    # Reverse: the alpha update of step j uses v before v is updated at that step.
    g_alpha = np.zeros_like(theta)
    for j in reversed(range(inner_steps)):
        g_alpha = g_alpha + (-gradients[j] * v)
        if not first_order:
            v = v - mlp_hvp(model, iterates[j], x_support, y_support, alpha * v, loss)
    g_theta = v
    return float(query_loss), g_theta, g_alpha


def meta_gradient(
    model: Any,
    theta: np.ndarray,
    alpha: np.ndarray,
    x_support: np.ndarray,
    y_support: np.ndarray,
    x_query: np.ndarray,
    y_query: np.ndarray,
    loss: str = "mse",
    inner_steps: int = 1,
    first_order: bool = False,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean over a meta-batch of tasks of :func:`task_meta_gradient`.

    Parameters
    ----------
    model : object
        Architecture with ``sizes``, ``activation``, ``output`` and ``bias`` attributes.
    theta, alpha : ndarray, shape (P,)
        Initial parameters and per-parameter inner learning rates.
    x_support : ndarray, shape (T, K, sizes[0])
        Support inputs, one block per task.
    y_support : ndarray
        ``(T, K, sizes[-1])`` floats, or ``(T, K)`` integer labels for ``"softmax_ce"``.
    x_query : ndarray, shape (T, Q, sizes[0])
        Query inputs.
    y_query : ndarray
        ``(T, Q, sizes[-1])`` floats, or ``(T, Q)`` integer labels for ``"softmax_ce"``.
    loss : {"mse", "bce", "softmax_ce"}
        Loss of every task.
    inner_steps : int
        Number of inner steps.
    first_order : bool
        Use the first-order variant (no Hessian term).

    Returns
    -------
    query_loss : float
        Mean over tasks of the query loss after adaptation.
    g_theta, g_alpha : ndarray, shape (P,)
        Mean over tasks of the gradients with respect to theta and alpha.

    Notes
    -----
    The task results are summed in task order, then divided by ``T``.
    """
    theta = _floats(theta)
    num_tasks = len(x_support)
    if num_tasks == 0:
        raise ValueError("the meta-batch holds no task")
    if not (len(y_support) == len(x_query) == len(y_query) == num_tasks):
        raise ValueError(
            "x_support, y_support, x_query and y_query must hold the same number of tasks"
        )
    total_loss = 0.0
    total_theta = np.zeros_like(theta)
    total_alpha = np.zeros_like(theta)
    for t in range(num_tasks):
        task_loss, g_theta, g_alpha = task_meta_gradient(
            model, theta, alpha,
            x_support[t], y_support[t], x_query[t], y_query[t],
            loss=loss, inner_steps=inner_steps, first_order=first_order,
        )
        total_loss += task_loss
        total_theta += g_theta
        total_alpha += g_alpha
    return total_loss / num_tasks, total_theta / num_tasks, total_alpha / num_tasks


def sgd_update(params: np.ndarray, grad: np.ndarray, lr: float | np.ndarray) -> np.ndarray:
    """One plain gradient-descent step: ``params - lr * grad``."""
    return params - lr * grad


def adam_update(
    params: np.ndarray,
    grad: np.ndarray,
    state: tuple[np.ndarray, np.ndarray, int],
    lr: float | np.ndarray,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, int]]:
    """One Adam step (Kingma and Ba 2015), with bias correction.

    Parameters
    ----------
    params, grad : ndarray
        Current parameters and their gradient.
    state : tuple (m, v, t)
        First and second moment estimates and the number of updates done so far; start
        from ``(np.zeros_like(params), np.zeros_like(params), 0)``.
    lr : float or ndarray
        Learning rate (one, or one per element).
    beta1, beta2, eps : float
        Adam's decay rates and denominator constant.

    Returns
    -------
    new_params : ndarray
        ``params - lr * m_hat / (sqrt(v_hat) + eps)``.
    new_state : tuple (m, v, t)
        The updated moments and ``t + 1``.
    """
    m, v, t = state
    t = t + 1
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad**2
    # m_hat / (sqrt(v_hat) + eps) with the core's operations: one square root and one division
    # per element, the bias corrections folded into two scalars.
    step_size, inv_sqrt_c2 = lr / (1.0 - beta1**t), 1.0 / np.sqrt(1.0 - beta2**t)
    return params - step_size * m / (np.sqrt(v) * inv_sqrt_c2 + eps), (m, v, t)


class MetaSGD:
    """Pure NumPy Meta-SGD over one flat vector ``[theta, alpha]``.

    The meta-optimizer (Adam or SGD) is applied to the concatenation of theta and alpha,
    with one shared step counter; the meta-gradient is the exact one of
    :func:`meta_gradient` (or its first-order variant).

    Parameters
    ----------
    model : object
        Architecture with ``sizes``, ``activation``, ``output`` and ``bias`` attributes
        (a :class:`metafast.MLP`).
    theta : ndarray, shape (P,)
        Initial parameters.
    alpha : ndarray, shape (P,), or float
        Initial per-parameter inner learning rates (a scalar is broadcast to ``(P,)``).
    loss : {"mse", "bce", "softmax_ce"}
        Loss of every task.
    inner_steps : int
        Number of inner steps.
    first_order : bool
        Use the first-order meta-gradient (no Hessian term).
    meta_optimizer : {"adam", "sgd"}
        Optimizer of ``[theta, alpha]``.
    meta_lr : float
        Meta learning rate beta (of theta; of alpha too unless ``alpha_lr`` is given).
    adam_betas : tuple of float
        Adam's ``(beta1, beta2)``.
    adam_eps : float
        Adam's denominator constant.
    alpha_lr : float, optional
        alpha's meta learning rate (default ``meta_lr``). :class:`metafast.MetaSGD` derives
        its default from ``alpha_init``; pass its ``alpha_lr`` to follow it step by step.

    Attributes
    ----------
    theta, alpha : ndarray, shape (P,)
        Current meta-parameters (float64 copies of the arguments).
    adam_state : tuple (m, v, t)
        Adam's moments over the concatenation (length ``2P``) and its step count.
    """

    def __init__(
        self,
        model: Any,
        theta: np.ndarray,
        alpha: np.ndarray | float,
        loss: str = "mse",
        inner_steps: int = 1,
        first_order: bool = False,
        meta_optimizer: str = "adam",
        meta_lr: float = 1e-3,
        adam_betas: tuple[float, float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
        alpha_lr: float | None = None,
    ) -> None:
        if meta_optimizer not in ("adam", "sgd"):
            raise ValueError(f"meta_optimizer must be 'adam' or 'sgd', got {meta_optimizer!r}")
        self.model = model
        self.theta = np.array(theta, dtype=np.float64)
        if self.theta.ndim != 1:
            raise ValueError(f"theta must be a flat vector, got shape {self.theta.shape}")
        self.alpha = np.array(np.broadcast_to(np.asarray(alpha, dtype=np.float64), self.theta.shape))
        self.loss = loss
        self.inner_steps = _check_steps(inner_steps, "inner_steps")
        self.first_order = bool(first_order)
        self.meta_optimizer = meta_optimizer
        self.meta_lr = float(meta_lr)
        self.adam_betas = (float(adam_betas[0]), float(adam_betas[1]))
        self.adam_eps = float(adam_eps)
        self.alpha_lr = self.meta_lr if alpha_lr is None else float(alpha_lr)
        size = 2 * self.theta.size
        self.adam_state = (np.zeros(size), np.zeros(size), 0)

    def meta_gradient(self, batch: Any) -> tuple[float, np.ndarray, np.ndarray]:
        """Mean query loss and meta-gradients ``(g_theta, g_alpha)`` on a meta-batch.

        Parameters
        ----------
        batch : object
            Anything with ``x_support``, ``y_support``, ``x_query`` and ``y_query``
            attributes shaped as in :func:`meta_gradient`.
        """
        return meta_gradient(
            self.model, self.theta, self.alpha,
            batch.x_support, batch.y_support, batch.x_query, batch.y_query,
            loss=self.loss, inner_steps=self.inner_steps, first_order=self.first_order,
        )

    def meta_step(self, batch: Any) -> float:
        """One meta-update of ``[theta, alpha]`` on a meta-batch.

        Returns
        -------
        float
            The mean query loss after adaptation, computed before the update.
        """
        query_loss, g_theta, g_alpha = self.meta_gradient(batch)
        params = np.concatenate([self.theta, self.alpha])
        grad = np.concatenate([g_theta, g_alpha])
        lr = np.repeat([self.meta_lr, self.alpha_lr], self.theta.size)  # per element: theta's, then alpha's
        if self.meta_optimizer == "adam":
            beta1, beta2 = self.adam_betas
            params, self.adam_state = adam_update(params, grad, self.adam_state, lr, beta1, beta2, self.adam_eps)
        else:
            params = sgd_update(params, grad, lr)
        size = self.theta.size
        self.theta = params[:size].copy()
        self.alpha = params[size:].copy()
        return query_loss

    def adapt(self, x_support: np.ndarray, y_support: np.ndarray, steps: int | None = None) -> np.ndarray:
        """Parameters adapted to one task's support set (``steps=None``: ``inner_steps``)."""
        if steps is None:
            steps = self.inner_steps
        return adapt(self.model, self.theta, self.alpha, x_support, y_support, loss=self.loss, steps=steps)
