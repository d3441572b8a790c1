"""Pure NumPy reference implementations of metafast's mathematics.

They are written for clarity, not speed: the test suite checks the C++ core against them,
and the benchmarks measure the core against them.

- :mod:`.mlp`: MLP forward pass, loss, gradient and Hessian-vector product.
- :mod:`.meta_sgd`: exact Meta-SGD (inner adaptation, meta-gradients, Adam/SGD, a class).
- :mod:`.book_metasgd`: a port of the Meta-SGD listing of "Hands-On Meta Learning with
  Python" (exported as ``BookMetaSGD`` and ``book_sample_points``), a baseline that is not
  exact Meta-SGD.
"""

from __future__ import annotations

from . import book_metasgd
from .book_metasgd import MetaSGD as BookMetaSGD
from .book_metasgd import sample_points as book_sample_points
from .meta_sgd import MetaSGD, adam_update, adapt, meta_gradient, sgd_update, task_meta_gradient
from .mlp import mlp_forward, mlp_hvp, mlp_loss, mlp_loss_and_grad

__all__ = [
    "mlp_forward",
    "mlp_loss",
    "mlp_loss_and_grad",
    "mlp_hvp",
    "adapt",
    "task_meta_gradient",
    "meta_gradient",
    "sgd_update",
    "adam_update",
    "MetaSGD",
    "book_metasgd",
    "BookMetaSGD",
    "book_sample_points",
]
