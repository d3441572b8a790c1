"""A NumPy convolutional network: forward pass, loss, backpropagation and Pearlmutter's
R-operator, every layer derived by hand (docs/math.md, section 5).

Blocks of convolution → batch norm (batch statistics) → activation → optional 2×2 max-pool,
then a head (mean over the image, or flattening) and a dense output layer laid out as the
MLP's. The convolution is written as im2col: the patches of the (padded) input as the rows
of a matrix, so that it becomes one matrix product and its derivatives are those of section
2's dense layer, taken back to the image by the adjoint of im2col (col2im).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .mlp import _activation, _loss_terms

ACTIVATIONS = ("relu", "tanh", "sigmoid", "identity")
LOSSES = ("mse", "bce", "softmax_ce")
PADDINGS = ("same", "valid")
HEADS = ("average", "flatten")
POOLS = (None, "max")


def conv_output_size(size: int, kernel_size: int, stride: int, padding: str) -> tuple[int, int, int]:
    """(output size, padding before, padding after) of a convolution along one axis
    (docs/math.md §5.1): TensorFlow/XLA's SAME rule, out = ceil(size / stride) and total padding
    max((out − 1)·stride + k − size, 0), the smaller half before; VALID pads nothing,
    out = floor((size − k) / stride) + 1 (0 when the kernel does not fit)."""
    if padding == "same":
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel_size - size, 0)
        return out, total // 2, total - total // 2
    if padding == "valid":
        return ((size - kernel_size) // stride + 1 if size >= kernel_size else 0), 0, 0
    raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")


# ---------------------------------------------------------------------------------------
# Layers: plain functions of arrays (docs/math.md §5.2 to §5.6).


@dataclass(frozen=True)
class _Geometry:
    """Where one convolution reads: kernel, stride, padding (before, after) per axis and the
    output size."""

    k: int
    stride: int
    pad_h: tuple[int, int]
    pad_w: tuple[int, int]
    out_h: int
    out_w: int

    def taps(self, p: int, q: int) -> tuple[slice, slice]:
        """The padded input's pixels that kernel offset (p, q) meets, one per output pixel."""
        s = self.stride
        return slice(p, p + s * (self.out_h - 1) + 1, s), slice(q, q + s * (self.out_w - 1) + 1, s)


def _im2col(x: np.ndarray, g: _Geometry) -> np.ndarray:
    """Patches as rows (docs/math.md §5.2): P[(n, i, j), (c, p, q)] = x_pad[n, c, i·s + p, j·s + q],
    shape (N·Ho·Wo, C·k·k). A loop over the k² kernel offsets, none over pixels."""
    n, c = x.shape[:2]
    padded = np.pad(x, ((0, 0), (0, 0), g.pad_h, g.pad_w))
    cols = np.empty((n, g.out_h, g.out_w, c, g.k, g.k), dtype=x.dtype)
    for p in range(g.k):
        for q in range(g.k):
            rows, columns = g.taps(p, q)
            cols[..., p, q] = padded[:, :, rows, columns].transpose(0, 2, 3, 1)
    return cols.reshape(n * g.out_h * g.out_w, c * g.k * g.k)


def _col2im(cols: np.ndarray, shape: tuple[int, ...], g: _Geometry) -> np.ndarray:
    """The adjoint of :func:`_im2col` (docs/math.md §5.2): every patch entry is added back to the
    pixel it was read from, and the padding is cut off."""
    n, c, h, w = shape
    cols = cols.reshape(n, g.out_h, g.out_w, c, g.k, g.k)
    padded = np.zeros((n, c, h + sum(g.pad_h), w + sum(g.pad_w)), dtype=cols.dtype)
    for p in range(g.k):
        for q in range(g.k):
            rows, columns = g.taps(p, q)
            padded[:, :, rows, columns] += cols[..., p, q].transpose(0, 3, 1, 2)
    return padded[:, :, g.pad_h[0] : g.pad_h[0] + h, g.pad_w[0] : g.pad_w[0] + w]


def _to_image(matrix: np.ndarray, n: int, g: _Geometry) -> np.ndarray:
    """(N·Ho·Wo, O) → (N, O, Ho, Wo)."""
    return matrix.reshape(n, g.out_h, g.out_w, -1).transpose(0, 3, 1, 2)


def _to_matrix(image: np.ndarray) -> np.ndarray:
    """(N, O, Ho, Wo) → (N·Ho·Wo, O)."""
    return image.transpose(0, 2, 3, 1).reshape(-1, image.shape[1])


def _channel_mean(t: np.ndarray) -> np.ndarray:
    return t.mean(axis=(0, 2, 3), keepdims=True)


def _channel_sum(t: np.ndarray) -> np.ndarray:
    return t.sum(axis=(0, 2, 3))


def _per_channel(vector: np.ndarray) -> np.ndarray:
    return vector[None, :, None, None]


def _windows(a: np.ndarray) -> np.ndarray:
    """The 2×2 windows of max-pooling (stride 2, floor) as (N, C, Hp, Wp, 4), each window's
    four entries in row-major order."""
    n, c, h, w = a.shape
    hp, wp = h // 2, w // 2
    return a[:, :, : 2 * hp, : 2 * wp].reshape(n, c, hp, 2, wp, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, hp, wp, 4)


def _pool_gather(a: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Each window's entry at ``index`` (docs/math.md §5.5)."""
    return np.take_along_axis(_windows(a), index[..., None], axis=-1)[..., 0]


def _pool_scatter(g: np.ndarray, index: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The adjoint of :func:`_pool_gather`: g to each window's selected entry, 0 elsewhere
    (and on the rows and columns that the floor drops)."""
    n, c, h, w = shape
    hp, wp = h // 2, w // 2
    windows = np.zeros((n, c, hp, wp, 4), dtype=g.dtype)
    np.put_along_axis(windows, index[..., None], g[..., None], axis=-1)
    full = np.zeros(shape, dtype=g.dtype)
    full[:, :, : 2 * hp, : 2 * wp] = windows.reshape(n, c, hp, wp, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(
        n, c, 2 * hp, 2 * wp)
    return full


# ---------------------------------------------------------------------------------------
# The network.


@dataclass
class _Block:
    """Forward quantities of one block, kept for the backward passes."""

    x: np.ndarray  # input (N, C, H, W)
    cols: np.ndarray  # im2col(x)
    z: np.ndarray  # convolution output
    xhat: np.ndarray | None  # normalised z (batch norm only)
    sigma: np.ndarray | None  # sqrt(var + eps), (1, O, 1, 1)
    y: np.ndarray  # batch norm output (z without batch norm)
    d1: np.ndarray  # activation's first and second derivatives at y
    d2: np.ndarray
    a: np.ndarray  # activation output
    index: np.ndarray | None  # max-pool's selected window entries
    out: np.ndarray  # block output


@dataclass
class _RBlock:
    """R-forward quantities of one block (docs/math.md §5.2 to §5.5)."""

    cols: np.ndarray  # im2col(R(x))
    z: np.ndarray
    sigma: np.ndarray | None
    xhat: np.ndarray | None
    y: np.ndarray
    a: np.ndarray


class ConvNet:
    """A convolutional network in plain NumPy, with exact gradients and Hessian-vector
    products (docs/math.md, section 5).

    Blocks of convolution → batch norm → activation → optional max-pool, one per entry of
    ``channels``; a head (``"average"``: mean over height and width per channel;
    ``"flatten"``: the (C, H, W) features in C order); a dense output layer with ``outputs``
    units and no activation (its outputs are the logits that bce and softmax_ce take, and
    mse's predictions, as the MLP with an identity output).

    Batch norm uses the statistics of the rows given to each call (per channel over rows,
    height and width, biased variance; no running averages), so a row's output depends on
    the other rows of the call, and the loss, gradient and Hessian-vector product are those
    of that function of the batch.

    θ layout, in this order: per block, the convolution's weights (out_channels,
    in_channels, k, k) in C order, its bias (out_channels) when ``bias``, batch norm's
    shift (out_channels) and, when ``batch_norm_scale``, its scale (out_channels) (neither
    without batch norm); then the output layer's W (features, outputs) in C order and its
    bias (outputs) when ``bias``.

    Max-pool (2×2, stride 2, floor) sends the gradient to the first maximum of each window
    in row-major order when several entries tie.

    Examples
    --------
    >>> net = ConvNet((1, 7, 7), channels=(3, 3), outputs=2)
    >>> theta = net.init(seed=0)
    >>> net.forward(theta, np.zeros((4, 49))).shape
    (4, 2)
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        channels: Sequence[int] = (64, 64, 64, 64),
        outputs: int = 5,
        kernel_size: int = 3,
        stride: int = 2,
        padding: str = "same",
        pool: str | None = None,
        batch_norm: bool = True,
        batch_norm_scale: bool = False,
        batch_norm_eps: float = 1e-5,
        activation: str = "relu",
        head: str = "average",
        bias: bool = True,
    ) -> None:
        self.input_shape = _shape(input_shape)
        self.channels = _positive_ints(channels, "channels")
        self.outputs = _positive_int(outputs, "outputs")
        self.kernel_size = _positive_int(kernel_size, "kernel_size")
        self.stride = _positive_int(stride, "stride")
        self.padding = _choice(padding, PADDINGS, "padding")
        self.pool = _choice(pool, POOLS, "pool")
        self.batch_norm = _flag(batch_norm, "batch_norm")
        self.batch_norm_scale = _flag(batch_norm_scale, "batch_norm_scale")
        if self.batch_norm_scale and not self.batch_norm:
            raise ValueError("batch_norm_scale=True needs batch_norm=True")
        if isinstance(batch_norm_eps, bool) or not isinstance(batch_norm_eps, (int, float, np.floating, np.integer)):
            raise TypeError(f"batch_norm_eps must be a number, got {batch_norm_eps!r}")
        if not (np.isfinite(batch_norm_eps) and batch_norm_eps > 0):
            raise ValueError(f"batch_norm_eps must be finite and > 0, got {batch_norm_eps!r}")
        self.batch_norm_eps = float(batch_norm_eps)
        self.activation = _choice(activation, ACTIVATIONS, "activation")
        self.head = _choice(head, HEADS, "head")
        self.bias = _flag(bias, "bias")

        # Geometry of every block (docs/math.md §5.1), checked before anything is allocated.
        self._geometry: list[_Geometry] = []
        shapes = []
        c, h, w = self.input_shape
        for number, out_c in enumerate(self.channels, start=1):
            out_h, *pad_h = conv_output_size(h, self.kernel_size, self.stride, self.padding)
            out_w, *pad_w = conv_output_size(w, self.kernel_size, self.stride, self.padding)
            if out_h == 0 or out_w == 0:
                raise ValueError(
                    f"input_shape {self.input_shape} is too small: block {number}'s convolution "
                    f"(kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding!r}) "
                    f"maps {h}x{w} to {out_h}x{out_w}")
            self._geometry.append(_Geometry(self.kernel_size, self.stride, tuple(pad_h), tuple(pad_w), out_h, out_w))
            h, w = out_h, out_w
            if self.pool == "max":
                if h < 2 or w < 2:
                    raise ValueError(
                        f"input_shape {self.input_shape} is too small: block {number}'s 2x2 max-pool "
                        f"maps {h}x{w} to {h // 2}x{w // 2}")
                h, w = h // 2, w // 2
            c = out_c
            shapes.append((c, h, w))
        self.block_shapes: tuple[tuple[int, int, int], ...] = tuple(shapes)
        self.features = c if self.head == "average" else c * h * w

        # The flat layout: (layer, name, shape) in θ order.
        self._layout: list[tuple[int, str, tuple[int, ...]]] = []
        in_c = self.input_shape[0]
        for layer, out_c in enumerate(self.channels):
            self._layout.append((layer, "weight", (out_c, in_c, self.kernel_size, self.kernel_size)))
            if self.bias:
                self._layout.append((layer, "bias", (out_c,)))
            if self.batch_norm:
                self._layout.append((layer, "shift", (out_c,)))
            if self.batch_norm_scale:
                self._layout.append((layer, "scale", (out_c,)))
            in_c = out_c
        dense = len(self.channels)
        self._layout.append((dense, "weight", (self.features, self.outputs)))
        if self.bias:
            self._layout.append((dense, "bias", (self.outputs,)))
        self.num_params = int(sum(np.prod(shape) for _, _, shape in self._layout))

    def __repr__(self) -> str:
        return (f"ConvNet(input_shape={self.input_shape}, channels={self.channels}, outputs={self.outputs}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding!r}, "
                f"pool={self.pool!r}, batch_norm={self.batch_norm}, batch_norm_scale={self.batch_norm_scale}, "
                f"batch_norm_eps={self.batch_norm_eps}, activation={self.activation!r}, head={self.head!r}, "
                f"bias={self.bias})")

    # --- layout ------------------------------------------------------------------------

    def unflatten(self, theta: np.ndarray) -> list[dict[str, np.ndarray]]:
        """θ as one dict per layer (the blocks, then the output layer): ``"weight"``, and
        ``"bias"``, ``"shift"``, ``"scale"`` where the configuration has them. The arrays are
        views of ``theta`` where NumPy can make them."""
        theta = self._vector(theta, "theta")
        layers: list[dict[str, np.ndarray]] = [{} for _ in range(len(self.channels) + 1)]
        offset = 0
        for layer, name, shape in self._layout:
            size = int(np.prod(shape))
            layers[layer][name] = theta[offset : offset + size].reshape(shape)
            offset += size
        return layers

    def flatten(self, layers: Sequence[dict[str, np.ndarray]]) -> np.ndarray:
        """The inverse of :meth:`unflatten`: the flat θ from one dict per layer."""
        if not isinstance(layers, (list, tuple)) or len(layers) != len(self.channels) + 1:
            raise ValueError(f"layers must be a list of {len(self.channels) + 1} dicts (one per block, "
                             "then the output layer)")
        for layer, entries in enumerate(layers):
            expected = [name for index, name, _ in self._layout if index == layer]
            if not isinstance(entries, dict) or sorted(entries) != sorted(expected):
                got = sorted(entries) if isinstance(entries, dict) else type(entries).__name__
                raise ValueError(f"layers[{layer}] must have the entries {expected}, got {got}")
        parts = []
        for layer, name, shape in self._layout:
            array = np.asarray(layers[layer][name])
            if array.shape != shape:
                raise ValueError(f"layers[{layer}][{name!r}] must have shape {shape}, got {array.shape}")
            parts.append(array.ravel())
        return np.concatenate(parts)

    def init(self, seed: int = 0, dtype: Any = "float64") -> np.ndarray:
        """Random initial parameters, reproducible from ``seed``: weights uniform in [−a, a],
        He (a = sqrt(6 / fan_in)) for convolutions followed by ReLU, Glorot
        (a = sqrt(6 / (fan_in + fan_out))) otherwise and for the output layer (the MLP's
        "auto"); a convolution's fan_in is in_channels·k² and its fan_out out_channels·k².
        Biases and batch norm's shift 0, its scale 1. Drawn in float64 (PCG64), then cast."""
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise TypeError(f"seed must be an integer >= 0, got {seed!r}")
        try:
            resolved = np.dtype(dtype)
        except TypeError:
            resolved = None
        if resolved not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        rng = np.random.default_rng(seed)
        layers = [{name: (np.ones(shape) if name == "scale" else np.zeros(shape))
                   for index, name, shape in self._layout if index == layer} for layer in range(len(self.channels) + 1)]
        for layer, entries in enumerate(layers):
            weight = entries["weight"]
            if weight.ndim == 4:
                fan_in, fan_out = int(np.prod(weight.shape[1:])), weight.shape[0] * weight.shape[2] * weight.shape[3]
                he = self.activation == "relu"
            else:
                (fan_in, fan_out), he = weight.shape, False
            limit = np.sqrt(6.0 / (fan_in if he else fan_in + fan_out))
            entries["weight"] = rng.uniform(-limit, limit, weight.shape)
        return self.flatten(layers).astype(resolved)

    # --- public maths --------------------------------------------------------------------

    def forward(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The output layer's values (logits), shape (rows, outputs), for inputs x of shape
        (rows, C, H, W) or (rows, C·H·W)."""
        theta = self._vector(theta, "theta")
        return self._forward(theta, self._images(x, theta.dtype))[3]

    def loss(self, theta: np.ndarray, x: np.ndarray, y: np.ndarray, loss: str = "mse") -> float:
        """Mean loss (docs/math.md §2's table with an identity output: mse over rows and outputs,
        bce and softmax_ce on the logits, softmax_ce with integer labels)."""
        theta = self._vector(theta, "theta")
        x = self._images(x, theta.dtype)
        y = self._targets(y, x.shape[0], loss, theta.dtype)
        z = self._forward(theta, x)[3]
        return _loss_terms(loss, z, z, np.ones_like(z), np.zeros_like(z), y)[0]

    def loss_and_grad(self, theta: np.ndarray, x: np.ndarray, y: np.ndarray, loss: str = "mse"):
        """Mean loss and its gradient with respect to θ, by backpropagation."""
        theta = self._vector(theta, "theta")
        x = self._images(x, theta.dtype)
        y = self._targets(y, x.shape[0], loss, theta.dtype)
        params, blocks, h, z = self._forward(theta, x)
        value, delta, _ = _loss_terms(loss, z, z, np.ones_like(z), np.zeros_like(z), y)
        return value, self._backward(params, blocks, h, delta)

    def hvp(self, theta: np.ndarray, x: np.ndarray, y: np.ndarray, v: np.ndarray, loss: str = "mse") -> np.ndarray:
        """Exact Hessian-vector product H v by the R-operator (docs/math.md §5.8)."""
        theta = self._vector(theta, "theta")
        v = self._vector(v, "v").astype(theta.dtype, copy=False)
        x = self._images(x, theta.dtype)
        y = self._targets(y, x.shape[0], loss, theta.dtype)
        params, blocks, h, z = self._forward(theta, x)
        directions = self._params(v, direction=True)
        r_blocks, r_h, r_z = self._r_forward(params, directions, blocks, h)
        _, delta, r_seed = _loss_terms(loss, z, z, np.ones_like(z), np.zeros_like(z), y)
        return self._r_backward(params, directions, blocks, r_blocks, h, r_h, delta, r_seed(r_z))

    # --- passes ----------------------------------------------------------------------------

    def _params(self, theta: np.ndarray, direction: bool = False) -> list[dict[str, np.ndarray]]:
        """Every entry of every layer, the absent ones filled in: bias and shift 0, scale 1
        (0 in a direction, where an absent parameter does not move)."""
        layers = self.unflatten(theta)
        for layer, out_c in enumerate(self.channels):
            for name, fill in (("bias", 0.0), ("shift", 0.0), ("scale", 0.0 if direction else 1.0)):
                layers[layer].setdefault(name, np.full(out_c, fill, dtype=theta.dtype))
        layers[-1].setdefault("bias", np.zeros(self.outputs, dtype=theta.dtype))
        return layers

    def _pack(self, grads: list[dict[str, np.ndarray]]) -> np.ndarray:
        """The entries of θ's layout from full per-layer gradients."""
        return np.concatenate([grads[layer][name].ravel() for layer, name, _ in self._layout])

    def _forward(self, theta: np.ndarray, x: np.ndarray):
        params = self._params(theta)
        blocks = []
        for p, g in zip(params, self._geometry):
            # §5.2 convolution as a product with the patches.
            cols = _im2col(x, g)
            weight = p["weight"].reshape(p["weight"].shape[0], -1)
            z = _to_image(cols @ weight.T + p["bias"], x.shape[0], g)
            # §5.3 batch norm with this batch's statistics.
            xhat = sigma = None
            y = z
            if self.batch_norm:
                sigma = np.sqrt(z.var(axis=(0, 2, 3), keepdims=True) + self.batch_norm_eps)
                xhat = (z - _channel_mean(z)) / sigma
                y = _per_channel(p["scale"]) * xhat + _per_channel(p["shift"])
            # §5.4 activation.
            a, d1, d2 = _activation(self.activation, y)
            # §5.5 max-pool: np.argmax takes the first maximum, row-major within the window.
            index = None
            out = a
            if self.pool == "max":
                index = _windows(a).argmax(axis=-1)
                out = _pool_gather(a, index)
            blocks.append(_Block(x, cols, z, xhat, sigma, y, d1, d2, a, index, out))
            x = out
        # §5.6 head, §5.7 output layer.
        h = x.mean(axis=(2, 3)) if self.head == "average" else x.reshape(x.shape[0], -1)
        z = h @ params[-1]["weight"] + params[-1]["bias"]
        return params, blocks, h, z

    def _head_backward(self, g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """§5.6: the adjoint of the head, features (N, F) → image (N, C, H, W)."""
        if self.head == "average":
            return np.broadcast_to(g[:, :, None, None] / (shape[2] * shape[3]), shape)
        return g.reshape(shape)

    def _backward(self, params, blocks: list[_Block], h: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """Gradient from delta = dL/dz of the output layer (docs/math.md §5.2 to §5.7)."""
        dense = params[-1]
        grads = [{"weight": h.T @ delta, "bias": delta.sum(axis=0)}]
        g = self._head_backward(delta @ dense["weight"].T, blocks[-1].out.shape)
        for p, b, geometry in zip(reversed(params[:-1]), reversed(blocks), reversed(self._geometry)):
            grad: dict[str, np.ndarray] = {}
            if self.pool == "max":
                g = _pool_scatter(g, b.index, b.a.shape)  # §5.5
            g = g * b.d1  # §5.4: now dL/dy
            if self.batch_norm:  # §5.3
                grad["shift"] = _channel_sum(g)
                grad["scale"] = _channel_sum(g * b.xhat)
                gs = _per_channel(p["scale"]) * g
                g = (gs - _channel_mean(gs) - b.xhat * _channel_mean(gs * b.xhat)) / b.sigma
            else:
                grad["shift"] = grad["scale"] = np.zeros_like(p["shift"])
            # §5.2: g is dL/dz; the convolution's gradients and dL/dx.
            gm = _to_matrix(g)
            weight = p["weight"]
            grad["weight"] = (gm.T @ b.cols).reshape(weight.shape)
            grad["bias"] = gm.sum(axis=0)
            g = _col2im(gm @ weight.reshape(weight.shape[0], -1), b.x.shape, geometry)
            grads.append(grad)
        return self._pack(grads[::-1])

    def _r_forward(self, params, directions, blocks: list[_Block], h: np.ndarray):
        """R(·) of every forward quantity along the direction (docs/math.md §5.2 to §5.7)."""
        r_blocks = []
        rx = np.zeros_like(blocks[0].x)
        for p, u, b, g in zip(params, directions, blocks, self._geometry):
            # §5.2: R(z) = im2col(R(x)) Kᵀ + im2col(x) Uᵀ + c.
            r_cols = _im2col(rx, g)
            weight, u_weight = (t.reshape(t.shape[0], -1) for t in (p["weight"], u["weight"]))
            rz = _to_image(r_cols @ weight.T + b.cols @ u_weight.T + u["bias"], rx.shape[0], g)
            r_sigma = r_xhat = None
            ry = rz
            if self.batch_norm:  # §5.3
                r_sigma = _channel_mean(b.xhat * rz)
                r_xhat = (rz - _channel_mean(rz) - b.xhat * r_sigma) / b.sigma
                ry = _per_channel(p["scale"]) * r_xhat + _per_channel(u["scale"]) * b.xhat + _per_channel(u["shift"])
            ra = b.d1 * ry  # §5.4
            r_blocks.append(_RBlock(r_cols, rz, r_sigma, r_xhat, ry, ra))
            rx = _pool_gather(ra, b.index) if self.pool == "max" else ra  # §5.5
        r_h = rx.mean(axis=(2, 3)) if self.head == "average" else rx.reshape(rx.shape[0], -1)  # §5.6
        r_z = r_h @ params[-1]["weight"] + h @ directions[-1]["weight"] + directions[-1]["bias"]  # §5.7
        return r_blocks, r_h, r_z

    def _r_backward(self, params, directions, blocks: list[_Block], r_blocks: list[_RBlock], h: np.ndarray,
                    r_h: np.ndarray, delta: np.ndarray, r_delta: np.ndarray) -> np.ndarray:
        """R(gradient) = H u from delta = dL/dz of the output layer and R(delta)
        (docs/math.md §5.8, each layer's rule in §5.2 to §5.7)."""
        dense, u_dense = params[-1], directions[-1]
        grads = [{"weight": r_h.T @ delta + h.T @ r_delta, "bias": r_delta.sum(axis=0)}]
        shape = blocks[-1].out.shape
        g = self._head_backward(delta @ dense["weight"].T, shape)
        rg = self._head_backward(r_delta @ dense["weight"].T + delta @ u_dense["weight"].T, shape)
        for p, u, b, rb, geometry in zip(reversed(params[:-1]), reversed(directions[:-1]), reversed(blocks),
                                         reversed(r_blocks), reversed(self._geometry)):
            grad: dict[str, np.ndarray] = {}
            if self.pool == "max":  # §5.5: the selection is fixed, so R commutes with it.
                g, rg = _pool_scatter(g, b.index, b.a.shape), _pool_scatter(rg, b.index, b.a.shape)
            # §5.4: dL/dy = g φ'(y), R(dL/dy) = R(g) φ'(y) + g φ''(y) R(y).
            g, rg = g * b.d1, rg * b.d1 + g * b.d2 * rb.y
            if self.batch_norm:  # §5.3
                grad["shift"] = _channel_sum(rg)
                grad["scale"] = _channel_sum(rg * b.xhat + g * rb.xhat)
                scale, u_scale = _per_channel(p["scale"]), _per_channel(u["scale"])
                gs, rgs = scale * g, u_scale * g + scale * rg
                m = _channel_mean(gs * b.xhat)
                dz = (gs - _channel_mean(gs) - b.xhat * m) / b.sigma
                rg = ((rgs - _channel_mean(rgs) - rb.xhat * m - b.xhat * _channel_mean(rgs * b.xhat + gs * rb.xhat))
                      / b.sigma - dz * rb.sigma / b.sigma)
                g = dz
            else:
                grad["shift"] = grad["scale"] = np.zeros_like(p["shift"])
            # §5.2: R(∇K) = R(δ)ᵀ P + δᵀ R(P), R(∇c) = Σ R(δ), R(dL/dx) = col2im(R(δ) K + δ U).
            gm, rgm = _to_matrix(g), _to_matrix(rg)
            weight = p["weight"].reshape(p["weight"].shape[0], -1)
            u_weight = u["weight"].reshape(weight.shape)
            grad["weight"] = (rgm.T @ b.cols + gm.T @ rb.cols).reshape(p["weight"].shape)
            grad["bias"] = rgm.sum(axis=0)
            rg = _col2im(rgm @ weight + gm @ u_weight, b.x.shape, geometry)
            g = _col2im(gm @ weight, b.x.shape, geometry)
            grads.append(grad)
        return self._pack(grads[::-1])

    # --- argument checks -------------------------------------------------------------------

    def _vector(self, value: Any, name: str) -> np.ndarray:
        array = np.asarray(value)
        if array.dtype.kind not in "fiub":
            raise TypeError(f"{name} must be an array of numbers, got dtype {array.dtype}")
        if array.dtype.kind != "f":
            array = array.astype(np.float64)
        if array.shape != (self.num_params,):
            raise ValueError(f"{name} must have shape ({self.num_params},), got {array.shape}")
        return array

    def _images(self, x: Any, dtype: np.dtype) -> np.ndarray:
        c, h, w = self.input_shape
        x = np.asarray(x)
        if x.dtype.kind not in "fiub":
            raise TypeError(f"x must be an array of numbers, got dtype {x.dtype}")
        if x.ndim == 4:
            if x.shape[1:] != self.input_shape:
                raise ValueError(f"x must have shape (rows, {c}, {h}, {w}) for input_shape (C, H, W) = "
                                 f"{self.input_shape}, got {x.shape}")
        elif x.ndim == 2:
            if x.shape[1] != c * h * w:
                raise ValueError(f"x as flat rows must have shape (rows, {c * h * w}): input_shape (C, H, W) = "
                                 f"{self.input_shape} in C order, got {x.shape}")
            x = x.reshape(x.shape[0], c, h, w)
        else:
            raise ValueError(f"x must have shape (rows, {c}, {h}, {w}) or (rows, {c * h * w}), got {x.shape}")
        if x.shape[0] == 0:
            raise ValueError("x must have at least one row (batch norm needs the batch's statistics)")
        return x.astype(dtype, copy=False)

    def _targets(self, y: Any, rows: int, loss: str, dtype: np.dtype) -> np.ndarray:
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        y = np.asarray(y)
        if loss == "softmax_ce":
            if y.shape != (rows,) or y.dtype.kind not in "iu":
                raise ValueError(f"y for softmax_ce must be integer labels of shape ({rows},), got {y.dtype} "
                                 f"of shape {y.shape}")
            if y.size and (y.min() < 0 or y.max() >= self.outputs):
                raise ValueError(f"y for softmax_ce must hold labels in [0, {self.outputs}), got {y.min()} to "
                                 f"{y.max()}")
            return y
        if y.shape != (rows, self.outputs):
            raise ValueError(f"y for {loss} must have shape ({rows}, {self.outputs}), got {y.shape}")
        return y.astype(dtype, copy=False)


def _shape(value: Any) -> tuple[int, int, int]:
    if not isinstance(value, (tuple, list)) or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        raise TypeError(f"input_shape must be a tuple of three ints (C, H, W), got {value!r}")
    if len(value) != 3 or min(value) < 1:
        raise ValueError(f"input_shape must be three positive sizes (C, H, W), got {tuple(value)}")
    return tuple(int(v) for v in value)  # type: ignore[return-value]


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def _positive_ints(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"{name} must be a tuple of ints, got {value!r}")
    if not value:
        raise ValueError(f"{name} must name at least one block, got {tuple(value)}")
    return tuple(_positive_int(v, f"{name}[{i}]") for i, v in enumerate(value))


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _choice(value: Any, choices: tuple, name: str) -> Any:
    if not (value is None or isinstance(value, str)) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value
