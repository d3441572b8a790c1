"""Pure NumPy reference implementations of metafast's mathematics.

They are written for clarity, not speed: the test suite checks the C++ core against them,
and the benchmarks measure the core against them.

- :mod:`.mlp`: MLP forward pass, loss, gradient and Hessian-vector product.
- :mod:`.convnet`: a convolutional network (``ConvNet``: convolution, batch norm with batch
  statistics, max-pool, average or flatten head) with hand-derived gradients and
  Hessian-vector products, and ``conv_output_size`` (SAME/VALID padding).
- :mod:`.meta_sgd`: exact Meta-SGD (inner adaptation, meta-gradients, Adam/SGD, a class).
- :mod:`.book_metasgd`: a port of the Meta-SGD listing of "Hands-On Meta Learning with
  Python" (exported as ``BookMetaSGD`` and ``book_sample_points``), a baseline that is not
  exact Meta-SGD.
- :mod:`.rng`: a bit-exact port of the core's counter-based generator (``CounterRng``,
  ``mix64``, ``shuffle_seed``).
- :mod:`.reptile`: batched Reptile with the core's exact semantics (``inner_loop``, a
  class ``Reptile``).
- :mod:`.book_reptile`: a port of the Reptile sine-wave listing of the same book
  (exported as ``BookReptile`` and ``book_reptile_sample_points``): serial Reptile with
  one Adam state for the whole run and a tanh output layer.
- :mod:`.rl`: the Gaussian policy-gradient surrogate, its gradient and Hessian-vector product,
  and the 2D navigation step.
"""

from __future__ import annotations

from . import book_metasgd, book_reptile
from .book_metasgd import MetaSGD as BookMetaSGD
from .book_metasgd import sample_points as book_sample_points
from .book_reptile import Reptile as BookReptile
from .book_reptile import sample_points as book_reptile_sample_points
from .convnet import ConvNet, conv_output_size
from .meta_sgd import MetaSGD, adam_update, adapt, meta_gradient, sgd_update, task_meta_gradient
from . import rl
from .mlp import mlp_forward, mlp_hvp, mlp_loss, mlp_loss_and_grad, mlp_seeded_hvp, mlp_vjp
from .reptile import Reptile, inner_loop
from .rng import CounterRng, mix64, shuffle_seed

__all__ = [
    "rl",
    "ConvNet",
    "conv_output_size",
    "mlp_vjp",
    "mlp_seeded_hvp",
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
    "CounterRng",
    "mix64",
    "shuffle_seed",
    "inner_loop",
    "Reptile",
    "book_reptile",
    "BookReptile",
    "book_reptile_sample_points",
]
