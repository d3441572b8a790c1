"""Meta-SGD for reinforcement learning: the 2D navigation task family (:mod:`.navigation`), a
Gaussian policy with its policy-gradient surrogate, gradient and exact Hessian-vector product
(:mod:`.policy`), the MetaSGDRL learner with native rollouts, all computed by the C++ core
(:mod:`.learner`), and your own Gymnasium environments (:mod:`.gym`, advantages by the core's
rules in :mod:`.advantages`)."""

from __future__ import annotations

from .advantages import generalized_advantages
from .gym import GymTasks
from .learner import MetaSGDRL, warn_if_returns_fell
from .navigation import Navigation2D
from .policy import GaussianPolicy

__all__ = ["Navigation2D", "GaussianPolicy", "GymTasks", "MetaSGDRL", "generalized_advantages",
           "warn_if_returns_fell"]
