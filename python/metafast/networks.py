"""The networks a supervised learner can meta-learn (:class:`~metafast.MLP` and
:class:`~metafast.ConvNet`): how a saved file records one, how it is rebuilt from that record,
and which of the core's learner classes runs it."""

from __future__ import annotations

from typing import Any, Union

import numpy as np

from . import _core
from .convnet import ConvNet
from .mlp import MLP

Network = Union[MLP, ConvNet]
NETWORKS = (MLP, ConvNet)


def check_network(model: Any, networks: tuple[type, ...] = NETWORKS) -> Any:
    """``model`` if it is one of `networks`, else a TypeError that names them."""
    if not isinstance(model, networks):
        names = " or ".join(f"metafast.{network.__name__}" for network in networks)
        raise TypeError(f"model must be a {names}, got {type(model).__name__}")
    return model


def network_config(model: Network) -> dict[str, Any]:
    """What a saved file records of ``model``: its constructor's arguments as JSON values, with
    ``"type": "ConvNet"`` for a convolutional network (an MLP's record has no type, as files
    from before ConvNet had none)."""
    if isinstance(model, ConvNet):
        return dict(type="ConvNet", **model._config())
    return dict(sizes=list(model.sizes), activation=model.activation, output=model.output, bias=model.bias)


def network_from_config(config: dict[str, Any]) -> Network:
    """The network a record of :func:`network_config` describes (its constructor checks it)."""
    config = dict(config)
    kind = config.pop("type", "MLP")
    if kind == "ConvNet":
        return ConvNet(**config)
    if kind != "MLP":
        raise ValueError(f"unknown network type {kind!r} (expected 'MLP' or 'ConvNet')")
    return MLP(**config)


def core_class(algorithm: str, model: Network, dtype: np.dtype) -> Any:
    """The core's learner class that runs ``algorithm`` ("MetaSGD", "Reptile") on ``model`` in
    ``dtype``: MetaSGDFloat32, ..., ReptileConvNetFloat64."""
    network = "ConvNet" if isinstance(model, ConvNet) else ""
    return getattr(_core, f"{algorithm}{network}Float{np.dtype(dtype).itemsize * 8}")
