"""Pure NumPy reference implementations of metafast's mathematics.

They are written for clarity, not speed: the test suite checks the C++ core against them,
and the benchmarks measure the core against them.
"""

from __future__ import annotations

from .mlp import mlp_forward, mlp_hvp, mlp_loss, mlp_loss_and_grad

__all__ = ["mlp_forward", "mlp_loss", "mlp_loss_and_grad", "mlp_hvp"]
