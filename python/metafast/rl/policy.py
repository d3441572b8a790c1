"""The Gaussian policy of :class:`~metafast.rl.MetaSGDRL`: an MLP for the mean and a learned
log standard deviation, with the policy-gradient surrogate, its gradient and its exact
Hessian-vector product computed by the C++ core."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from .. import _core, _validation
from ..mlp import MLP


class GaussianPolicy:
    """``pi(a | s) = N(mu(s), diag(exp(2 log_std)))``, the policy of :class:`MetaSGDRL`.

    ``model`` gives the mean; a learned state-independent ``log_std``, one per action
    dimension, follows the model's parameters in the flat vector ``theta`` (so it has its own
    Meta-SGD alpha).

    Parameters
    ----------
    model : MLP
        The mean network; its output activation must be "identity".

    Notes
    -----
    The surrogate on fixed samples is ``L = -(1/N) sum_t A_t log pi(a_t | s_t)`` over the
    samples of N trajectories with advantages A_t (docs/math.md, section 4). Policies of equal
    models compare equal; pickle and copy rebuild through the constructor.

    Examples
    --------
    >>> import metafast as mf
    >>> policy = mf.rl.GaussianPolicy(mf.MLP([2, 16, 2]))
    >>> policy.init(seed=0, log_std=-0.5).shape == (policy.num_params,)
    True
    """

    def __init__(self, model: MLP) -> None:
        if not isinstance(model, MLP):
            raise TypeError(f"model must be a metafast.MLP, got {type(model).__name__}")
        if model.output != "identity":
            raise ValueError(f"the mean network needs output activation 'identity', got {model.output!r}")
        self._model = model

    @property
    def model(self) -> MLP:
        """The mean network."""
        return self._model

    def __repr__(self) -> str:
        return f"GaussianPolicy({self._model!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GaussianPolicy):
            return NotImplemented
        return self._model == other._model

    def __hash__(self) -> int:
        return hash((GaussianPolicy, self._model))

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt through the constructor (and the model through its own): a payload meets the
        # checks that user input meets, and a copy owns its core objects.
        return (type(self), (self._model,))

    def __copy__(self) -> GaussianPolicy:
        return type(self)(copy.copy(self._model))  # a model, and so a core object, of its own

    @property
    def action_dim(self) -> int:
        """Dimensions of an action (the model's outputs)."""
        return self._model.sizes[-1]

    @property
    def num_params(self) -> int:
        """Length of theta: the model's parameters and one log_std per action dimension."""
        return self._model.num_params + self.action_dim

    def init(self, seed: int = 0, dtype: Any = "float64", log_std: float = 0.0) -> np.ndarray:
        """Initial policy parameters.

        Parameters
        ----------
        seed : int
            Seed of the model's initial parameters (``model.init(seed)``).
        dtype : {"float32", "float64"}
            Their precision.
        log_std : float
            The initial log standard deviation of every action dimension.

        Returns
        -------
        numpy.ndarray, shape (num_params,)
            The model's initial parameters followed by ``log_std`` for every action dimension.
        """
        params = self._model.init(seed=seed, dtype=dtype)
        value = _validation.real(log_std, "log_std")
        return np.concatenate([params, np.full(self.action_dim, value, dtype=params.dtype)])

    def surrogate(self, theta: Any, states: Any, actions: Any, advantages: Any,
                  num_trajectories: int) -> tuple[np.floating, np.ndarray]:
        """The surrogate loss and its gradient.

        Parameters
        ----------
        theta : numpy.ndarray, shape (num_params,)
            Policy parameters, float32 or float64: the dtype of the computation and the result.
        states : array_like, shape (samples, observations)
            The states of all samples.
        actions : array_like, shape (samples, action_dim)
            The actions taken in them.
        advantages : array_like, shape (samples,)
            Their advantages (finite).

            States, actions and advantages may be of any float or integer dtype: they are converted
            to theta's (float64 values beyond float32's range into float32 theta are a ValueError,
            other dtypes such as bool a TypeError).
        num_trajectories : int
            N, the trajectories the samples come from.

        Returns
        -------
        loss : numpy.floating
            ``-(1/N) sum_t A_t log pi(a_t | s_t)``.
        grad : numpy.ndarray, shape (num_params,)
            Its gradient with respect to theta.
        """
        theta, arrays = self._arrays(theta, states, actions, advantages, num_trajectories)
        loss, grad = _core.policy_surrogate(self._model._impl, theta, *arrays)
        return theta.dtype.type(loss), grad

    def surrogate_hvp(self, theta: Any, states: Any, actions: Any, advantages: Any, num_trajectories: int,
                      v: Any) -> np.ndarray:
        """The exact Hessian-vector product of the surrogate (R-operator, Gaussian seed).

        Parameters
        ----------
        theta, states, actions, advantages, num_trajectories
            As for :meth:`surrogate`.
        v : array_like, shape (num_params,)
            The vector (floats or integers, converted to theta's dtype).

        Returns
        -------
        numpy.ndarray, shape (num_params,)
            ``H v``, with ``H`` the surrogate's Hessian with respect to theta.
        """
        theta, arrays = self._arrays(theta, states, actions, advantages, num_trajectories)
        return _core.policy_surrogate_hvp(self._model._impl, theta, *arrays, _validation.numbers_as(v, "v", theta.dtype))

    def _arrays(self, theta: Any, states: Any, actions: Any, advantages: Any,
                num_trajectories: int) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        theta = _validation.params(theta)
        count = _validation.integer(num_trajectories, "num_trajectories", minimum=1)
        advantages = _validation.numbers_as(advantages, "advantages", theta.dtype)
        if not np.all(np.isfinite(advantages)):
            raise ValueError("advantages contains NaN or infinity")
        weights = advantages / theta.dtype.type(count)
        return theta, (_validation.numbers_as(states, "states", theta.dtype),
                       _validation.numbers_as(actions, "actions", theta.dtype), weights)
