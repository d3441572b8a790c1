"""Export: an MLP's parameters as a PyTorch-style state dict or as an ONNX model.

Adapted parameters leave metafast as a flat vector ``theta`` (the layout in
:class:`~metafast.MLP`'s Notes). This module gives them the two faces the rest of the
ecosystem reads:

- :func:`state_dict`: the arrays of the equivalent ``torch.nn.Sequential``, named and shaped
  as it names them, so that ``module.load_state_dict({k: torch.from_numpy(v) ...})`` loads
  them;
- :func:`to_onnx`: an ONNX graph built with ``onnx.helper`` (``Gemm`` and the activations),
  for onnxruntime and every other ONNX consumer. ``onnx`` is an optional dependency
  (``pip install "metafast[onnx]"``), imported only here and only when called.

**The equivalent Sequential.** Every layer but the last is a ``Linear`` followed by its
hidden activation module (``ReLU``, ``Tanh``, ``Sigmoid``, or ``Identity`` for
``"identity"``, so that the indices do not depend on the activation); the last ``Linear`` is
followed by the output activation module unless the output is ``"identity"``. Layer ``i``
is therefore module ``2 * i``, and ``MLP([3, 5, 4, 2])`` has the entries ``0.weight``,
``0.bias``, ``2.weight``, ``2.bias``, ``4.weight``, ``4.bias``. A weight is the transpose
of metafast's ``W``: shape ``(fan_out, fan_in)``, as ``torch.nn.Linear`` stores it.
"""

from __future__ import annotations

import collections
import os
from typing import Any, NamedTuple, Optional, Union

import numpy as np

from . import _atomic_file, _validation

PathLike = Union[str, "os.PathLike[str]"]

OPSET = 13
"""The ONNX operator set of exported graphs (every operator used exists there unchanged), old
enough for any onnxruntime since 1.7."""


class _ActivationNames(NamedTuple):
    """What the other frameworks call one of metafast's activations."""

    onnx_op: str
    """The ONNX operator that applies it."""
    torch_module: str
    """The ``torch.nn`` module class that applies it."""


_ACTIVATION_NAMES = {
    "relu": _ActivationNames(onnx_op="Relu", torch_module="ReLU"),
    "tanh": _ActivationNames(onnx_op="Tanh", torch_module="Tanh"),
    "sigmoid": _ActivationNames(onnx_op="Sigmoid", torch_module="Sigmoid"),
    "identity": _ActivationNames(onnx_op="Identity", torch_module="Identity"),
}
"""Keyed by metafast's activation name: the one table both exports read."""


def checked_theta(model: Any, theta: Any) -> np.ndarray:
    """``theta`` checked as :meth:`MLP.forward` checks it: a float32 or float64 vector of
    shape ``(num_params,)`` whose values are all finite.

    Raises
    ------
    TypeError
        If ``model`` is not an MLP, or ``theta`` not an array of float32 or float64.
    ValueError
        If its shape is not ``(num_params,)`` or it holds NaN or infinity.
    """
    if not callable(getattr(model, "unflatten", None)):  # duck-typed: mlp.py imports this module
        raise TypeError(f"model must be a metafast.MLP, got {type(model).__name__}")
    if theta is None:
        raise TypeError("theta must be a float32 or float64 array, got None")
    theta = _validation.params(theta)
    if theta.shape != (model.num_params,):
        raise ValueError(f"theta must have shape ({model.num_params},), got {theta.shape}")
    bad = np.flatnonzero(~np.isfinite(theta))
    if bad.size:
        raise ValueError(f"theta contains NaN or infinity (at flat index {bad[0]})")
    return theta


def torch_modules(model: Any) -> list[str]:
    """The modules of the ``torch.nn.Sequential`` equivalent to ``model``, as their class names
    (``["Linear", "ReLU", "Linear"]`` for ``MLP([1, 40, 1])``): see the module's docstring."""
    modules: list[str] = []
    for layer in range(model.num_layers):
        modules.append("Linear")
        last = layer == model.num_layers - 1
        if not last:
            modules.append(_ACTIVATION_NAMES[model.activation].torch_module)
        elif model.output != "identity":
            modules.append(_ACTIVATION_NAMES[model.output].torch_module)
    return modules


def state_dict(model: Any, theta: Any) -> collections.OrderedDict[str, np.ndarray]:
    """``theta`` as the state dict of the equivalent ``torch.nn.Sequential``.

    Parameters
    ----------
    model : MLP
        The architecture.
    theta : array_like, shape (num_params,)
        Its parameters, float32 or float64, all finite.

    Returns
    -------
    collections.OrderedDict of str to ndarray
        ``"{2*i}.weight"`` of shape ``(fan_out, fan_in)`` (``W`` transposed, C-contiguous)
        and ``"{2*i}.bias"`` of shape ``(fan_out,)`` (absent without biases) for each layer
        ``i``, in order, in theta's dtype. The arrays are copies: changing them leaves
        ``theta`` alone.
    """
    return _entries(model, checked_theta(model, theta))


def _entries(model: Any, theta: np.ndarray) -> collections.OrderedDict[str, np.ndarray]:
    entries: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
    for layer, (weights, bias) in enumerate(model.unflatten(theta)):
        entries[f"{2 * layer}.weight"] = np.array(weights.T, order="C")  # a copy even when W.T is contiguous
        if bias is not None:
            entries[f"{2 * layer}.bias"] = bias.copy()
    return entries


def _import_onnx() -> Any:
    try:
        import onnx
        import onnx.checker
        import onnx.helper
        import onnx.numpy_helper
    except ImportError as error:
        raise ImportError(
            f"exporting to ONNX needs the onnx package ({error}); install it with "
            '`pip install "metafast[onnx]"` (or `pip install onnx`)'
        ) from error
    return onnx


def onnx_model(model: Any, theta: Any) -> Any:
    """The ONNX model of ``model`` with parameters ``theta``, checked by ``onnx.checker``.

    Parameters
    ----------
    model : MLP
        The architecture.
    theta : array_like, shape (num_params,)
        Its parameters, float32 or float64, all finite.

    Returns
    -------
    onnx.ModelProto
        See :func:`to_onnx`.
    """
    return _onnx_graph(model, checked_theta(model, theta))


def _onnx_graph(model: Any, theta: np.ndarray) -> Any:
    """The checked ONNX ModelProto of ``model`` with the already checked ``theta``."""
    onnx = _import_onnx()
    helper = onnx.helper
    element = helper.np_dtype_to_tensor_dtype(theta.dtype)
    sizes = model.sizes
    nodes, initializers = [], []
    current = "x"
    for layer, (name, array) in enumerate(_layers(_entries(model, theta))):
        last = layer == model.num_layers - 1
        activation = model.output if last else model.activation
        index = 2 * layer
        initializers += [onnx.numpy_helper.from_array(a, name=n) for n, a in zip(name, array)]
        # Gemm computes a @ weight.T + bias, which is z = a @ W + b with weight = W.T.
        linear = "y" if last and activation == "identity" else f"{index}.output"
        nodes.append(helper.make_node("Gemm", [current, *name], [linear], name=f"{index}.Linear", transB=1))
        current = linear
        if last and activation == "identity":
            break
        activated = "y" if last else f"{index + 1}.output"
        op = _ACTIVATION_NAMES[activation].onnx_op
        nodes.append(helper.make_node(op, [current], [activated], name=f"{index + 1}.{op}"))
        current = activated
    graph = helper.make_graph(
        nodes,
        "metafast_mlp",
        [helper.make_tensor_value_info("x", element, ["rows", sizes[0]])],
        [helper.make_tensor_value_info("y", element, ["rows", sizes[-1]])],
        initializer=initializers,
        doc_string=f"metafast.{model!r}: y = f(... f(x @ W1 + b1) ...); initializers named as "
                   "torch.nn.Sequential's state dict",
    )
    opset = helper.make_opsetid("", OPSET)
    proto = helper.make_model(
        graph,
        opset_imports=[opset],
        ir_version=helper.find_min_ir_version_for([opset]),
        producer_name="metafast",
        producer_version=_version(),
    )
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _layers(entries: collections.OrderedDict[str, np.ndarray]) -> list[tuple[list[str], list[np.ndarray]]]:
    """A state dict's entries grouped per layer: (names, arrays), weight first."""
    grouped: collections.OrderedDict[str, tuple[list[str], list[np.ndarray]]] = collections.OrderedDict()
    for name, array in entries.items():
        names, arrays = grouped.setdefault(name.split(".")[0], ([], []))
        names.append(name)
        arrays.append(array)
    return list(grouped.values())


def _version() -> str:
    from ._dispatch import core

    return str(core.__version__)


def to_onnx(model: Any, theta: Any, path: Optional[PathLike] = None) -> Any:
    """Exports ``model`` with parameters ``theta`` as an ONNX model, and writes it to ``path``
    if one is given.

    Parameters
    ----------
    model : MLP
        The architecture.
    theta : array_like, shape (num_params,)
        Its parameters, float32 or float64, all finite.
    path : str or os.PathLike, optional
        Where to write the model, atomically and only over a regular file (the contract of
        ``learner.save``, README.md, "Saving and loading"). None: write nothing.

    Returns
    -------
    onnx.ModelProto
        The model (also when it was written): opset 13, one input ``"x"`` of shape
        ``("rows", sizes[0])`` and one output ``"y"`` of shape ``("rows", sizes[-1])``, both
        in theta's dtype, ``"rows"`` being any number of rows. Each layer is a ``Gemm`` with
        ``transB=1`` whose initializers are named as in :func:`state_dict`, followed by its
        activation (``Relu``, ``Tanh``, ``Sigmoid``, or ``Identity`` between hidden layers;
        nothing after an ``"identity"`` output).

    Raises
    ------
    ImportError
        If the onnx package is missing.
    TypeError
        If ``theta`` is not a float32 or float64 array, or ``path`` not a path.
    ValueError
        If ``theta`` has the wrong shape or holds NaN or infinity, or ``path`` exists and is
        not a regular file (a directory, say).
    OSError
        If the file cannot be written.
    """
    theta = checked_theta(model, theta)
    if path is not None:
        _atomic_file.check_destination(path, "path")  # before the work, as fit(checkpoint=...)
    proto = _onnx_graph(model, theta)
    if path is not None:
        data = proto.SerializeToString()
        _atomic_file.write_atomically(path, lambda file: file.write(data))
    return proto
