"""metafast: fast meta-learning (Meta-SGD, MAML, Reptile, Meta-SGD for RL) for MLPs and convolutional networks on CPUs.

The numerical work runs in a C++17 core (``metafast._core``, compiled once per CPU level and
picked for the running CPU at import: see ``build_info()``); this package is its Python face.
See docs/models.md for the parameter layout and docs/reliability.md for the guarantees.
"""

from __future__ import annotations

import importlib
from typing import Any

try:
    from ._dispatch import build_info
    from ._dispatch import core as _core
except ModuleNotFoundError as error:  # pragma: no cover - only without a build
    raise ImportError(
        "metafast's compiled core is missing; install the package with `pip install .` "
        "(or `pip install -e .` for development) rather than importing it from the source tree"
    ) from error

from . import datasets, rl, tasks
from .convnet import ConvNet
from .errors import BeyondTrainedStepsWarning, TrainingDivergedError
from .evaluation import EvaluationReport
from .io import load
from .maml import MAML
from .meta_sgd import MetaSGD
from .mlp import MLP
from .reptile import Reptile
from .task_batch import TaskBatch


def __getattr__(name: str) -> Any:
    """``metafast.reference``, the NumPy test oracle, is imported on first use: ``import metafast``
    does not pay for it."""
    if name == "reference":
        return importlib.import_module(".reference", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("metafast")
except PackageNotFoundError:  # pragma: no cover
    __version__ = _core.__version__

__all__ = [
    "MLP",
    "ConvNet",
    "MetaSGD",
    "MAML",
    "Reptile",
    "TaskBatch",
    "EvaluationReport",
    "TrainingDivergedError",
    "BeyondTrainedStepsWarning",
    "load",
    "build_info",
    "tasks",
    "datasets",
    "rl",
    "reference",
    "__version__",
]
