"""A NumPy multilayer perceptron: forward pass, loss, backpropagation and Pearlmutter's
R-operator, following the formulas of docs/math.md (section 2) line by line.

Every function takes the architecture as any object with ``sizes``, ``activation``,
``output`` and ``bias`` attributes (a :class:`metafast.MLP` will do) and computes the
parameter layout itself, independently of the C++ core.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _unpack(model: Any, theta: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    layers, offset = [], 0
    for fan_in, fan_out in zip(model.sizes[:-1], model.sizes[1:]):
        weights = theta[offset : offset + fan_in * fan_out].reshape(fan_in, fan_out)
        offset += fan_in * fan_out
        if model.bias:
            bias = theta[offset : offset + fan_out]
            offset += fan_out
        else:
            bias = np.zeros(fan_out, dtype=theta.dtype)
        layers.append((weights, bias))
    assert offset == theta.size, "theta does not match the architecture"
    return layers


def _pack(model: Any, blocks: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    parts = []
    for weights, bias in blocks:
        parts.append(weights.ravel())
        if model.bias:
            parts.append(bias)
    return np.concatenate(parts)


def _activation(name: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """f(z), f'(z), f''(z)."""
    if name == "identity":
        return z, np.ones_like(z), np.zeros_like(z)
    if name == "tanh":
        t = np.tanh(z)
        return t, 1 - t**2, -2 * t * (1 - t**2)
    if name == "sigmoid":
        s = 0.5 * (1 + np.tanh(0.5 * z))  # overflow-free logistic function
        return s, s * (1 - s), s * (1 - s) * (1 - 2 * s)
    if name == "relu":
        return np.maximum(z, 0), (z > 0).astype(z.dtype), np.zeros_like(z)
    raise ValueError(f"unknown activation {name!r}")


def _forward(model: Any, theta: np.ndarray, x: np.ndarray):
    layers = _unpack(model, theta)
    inputs, zs, derivatives = [x], [], []
    for index, (weights, bias) in enumerate(layers):
        z = inputs[-1] @ weights + bias
        name = model.output if index == len(layers) - 1 else model.activation
        a, d1, d2 = _activation(name, z)
        zs.append(z)
        inputs.append(a)
        derivatives.append((d1, d2))
    return layers, inputs, zs, derivatives


def _loss_terms(loss: str, z: np.ndarray, a: np.ndarray, d1: np.ndarray, d2: np.ndarray, y: np.ndarray):
    """Mean loss, dL/dz and a function mapping R(z) to R(dL/dz)."""
    rows = z.shape[0]
    if loss == "mse":
        error = a - y
        scale = 2.0 / error.size
        return (
            np.mean(error**2),
            scale * error * d1,
            lambda rz: scale * (d1**2 + error * d2) * rz,
        )
    if loss == "bce":
        s = 0.5 * (1 + np.tanh(0.5 * z))
        value = np.sum(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))) / rows
        return value, (s - y) / rows, lambda rz: s * (1 - s) * rz / rows
    if loss == "softmax_ce":
        shifted = z - z.max(axis=1, keepdims=True)
        s = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        picked = np.arange(rows), np.asarray(y)
        value = np.mean(np.log(np.exp(shifted).sum(axis=1)) - shifted[picked])
        onehot = np.zeros_like(z)
        onehot[picked] = 1
        return (
            value,
            (s - onehot) / rows,
            lambda rz: (s * rz - s * np.sum(s * rz, axis=1, keepdims=True)) / rows,
        )
    raise ValueError(f"unknown loss {loss!r}")


def mlp_forward(model: Any, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Network outputs for inputs x (rows, sizes[0])."""
    return _forward(model, theta, x)[1][-1]


def mlp_loss(model: Any, theta: np.ndarray, x: np.ndarray, y: np.ndarray, loss: str = "mse") -> float:
    _, inputs, zs, derivatives = _forward(model, theta, x)
    return _loss_terms(loss, zs[-1], inputs[-1], *derivatives[-1], y)[0]


def _backprop(model: Any, layers, inputs, derivatives, delta: np.ndarray) -> np.ndarray:
    """Gradient from delta = dL/dz_L by backpropagation."""
    grads = []
    for index in reversed(range(len(layers))):
        grads.append((inputs[index].T @ delta, delta.sum(axis=0)))
        if index:
            delta = (delta @ layers[index][0].T) * derivatives[index - 1][0]
    return _pack(model, grads[::-1])


def _r_forward(layers, directions, inputs, derivatives, x: np.ndarray) -> list[np.ndarray]:
    """R(z_l) for every layer along the direction (U_l, c_l)."""
    r_inputs, r_zs = [np.zeros_like(x)], []
    for index, ((weights, _), (u, c)) in enumerate(zip(layers, directions)):
        rz = r_inputs[-1] @ weights + inputs[index] @ u + c
        r_zs.append(rz)
        r_inputs.append(derivatives[index][0] * rz)
    return r_zs


def _r_backprop(model: Any, layers, directions, inputs, derivatives, r_zs, delta, r_delta) -> np.ndarray:
    """R(gradient) from delta = dL/dz_L and its R(delta_L) (docs/math.md, section 2)."""
    r_inputs = [np.zeros_like(inputs[0])] + [d[0] * rz for d, rz in zip(derivatives, r_zs)]
    blocks = []
    for index in reversed(range(len(layers))):
        blocks.append((r_inputs[index].T @ delta + inputs[index].T @ r_delta, r_delta.sum(axis=0)))
        if index:
            weights, u = layers[index][0], directions[index][0]
            d1, d2 = derivatives[index - 1]
            back = delta @ weights.T
            r_delta = (r_delta @ weights.T + delta @ u.T) * d1 + back * d2 * r_zs[index - 1]
            delta = back * d1
    return _pack(model, blocks[::-1])


def mlp_loss_and_grad(model: Any, theta: np.ndarray, x: np.ndarray, y: np.ndarray, loss: str = "mse"):
    """Mean loss and gradient by backpropagation."""
    layers, inputs, zs, derivatives = _forward(model, theta, x)
    value, delta, _ = _loss_terms(loss, zs[-1], inputs[-1], *derivatives[-1], y)
    return value, _backprop(model, layers, inputs, derivatives, delta)


def mlp_hvp(model: Any, theta: np.ndarray, x: np.ndarray, y: np.ndarray, v: np.ndarray, loss: str = "mse") -> np.ndarray:
    """Exact Hessian-vector product H v by the R-operator."""
    layers, inputs, zs, derivatives = _forward(model, theta, x)
    directions = _unpack(model, v)
    r_zs = _r_forward(layers, directions, inputs, derivatives, x)
    _, delta, r_seed = _loss_terms(loss, zs[-1], inputs[-1], *derivatives[-1], y)
    return _r_backprop(model, layers, directions, inputs, derivatives, r_zs, delta, r_seed(r_zs[-1]))


def mlp_vjp(model: Any, theta: np.ndarray, x: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Gradient with respect to theta of sum(delta * z_L): backpropagation of a given
    output gradient (for objectives that are not one of the built-in losses)."""
    layers, inputs, _, derivatives = _forward(model, theta, x)
    return _backprop(model, layers, inputs, derivatives, delta)


def mlp_seeded_hvp(model: Any, theta: np.ndarray, x: np.ndarray, v: np.ndarray, seed: Any) -> np.ndarray:
    """The MLP part of H v for an objective of the outputs: ``seed(z_L, R(z_L))`` returns
    ``(dL/dz_L, R(dL/dz_L))``."""
    layers, inputs, zs, derivatives = _forward(model, theta, x)
    directions = _unpack(model, v)
    r_zs = _r_forward(layers, directions, inputs, derivatives, x)
    delta, r_delta = seed(zs[-1], r_zs[-1])
    return _r_backprop(model, layers, directions, inputs, derivatives, r_zs, delta, r_delta)
