"""Convolutional networks over a flat parameter vector, evaluated by the C++ core: the few-shot
literature's Conv-4 and its relatives, under every algorithm an MLP runs under."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

from . import _core, _memory, _validation
from .mlp import init_scheme

Layers = list[dict[str, np.ndarray]]

_PADDINGS = ("same", "valid")
_POOLS = (None, "max")
_HEADS = ("average", "flatten")


class ConvNet:
    """A convolutional network whose parameters live in one flat vector ``theta``.

    Blocks of convolution → batch normalisation → activation → optional 2×2 max-pool, one
    block per entry of ``channels``; then a head and a dense output layer without activation
    (its outputs are the logits ``"softmax_ce"`` and ``"bce"`` take, and ``"mse"``'s
    predictions). The defaults are the few-shot literature's Conv-4 for 28×28 single-channel
    images as MAML's Omniglot network has it: four blocks of 64 3×3 filters with stride 2,
    batch normalisation and ReLU, and the average over the spatial positions as the head;
    ``stride=1, pool="max", padding="same"`` gives Vinyals' and Reptile's variant.

    Parameters
    ----------
    input_shape : (int, int, int)
        The images' (channels, height, width).
    channels : sequence of int
        Output channels of each block's convolution.
    outputs : int
        Units of the output layer (classes, for ``"softmax_ce"``).
    kernel_size : int
        Side of every convolution's square kernel.
    stride : int
        Every convolution's stride.
    padding : {"same", "valid"}
        ``"same"``: TensorFlow's rule (output size ``ceil(size / stride)``, total padding
        ``max((out - 1) * stride + kernel_size - size, 0)``, the smaller half before);
        ``"valid"``: no padding.
    pool : {None, "max"}
        A 2×2 max-pool of stride 2 after each block's activation (odd sizes rounded down).
    batch_norm : bool
        Batch normalisation after each convolution, with a learned shift.
    batch_norm_scale : bool
        A learned scale too (it needs ``batch_norm``).
    batch_norm_eps : float
        Added to the variance.
    activation : {"relu", "tanh", "sigmoid", "identity"}
        Every block's activation.
    head : {"average", "flatten"}
        ``"average"``: each channel's mean over height and width; ``"flatten"``: the last
        block's output (C, H, W) in C order.
    bias : bool
        Whether each convolution and the output layer have a bias.

    Notes
    -----
    **Parameter layout.** For each block: the convolution's weights of shape
    ``(out_channels, in_channels, k, k)`` in C order (PyTorch's layout), its bias
    ``(out_channels,)`` when ``bias``, batch norm's shift ``(out_channels,)`` and, with
    ``batch_norm_scale``, its scale; then the output layer as :class:`~metafast.MLP` lays
    it out: ``W`` of shape ``(features, outputs)`` in C order, then ``b``.
    :meth:`unflatten` names every array.

    **Inputs** are images as ``(rows, C, H, W)`` arrays or flat rows ``(rows, C·H·W)`` (the
    same memory), float32 or float64, in any memory order (copied once into C order).

    **Batch normalisation** normalises with the statistics of the rows of each call (per
    channel over rows, height and width, biased variance), as MAML and Reptile use it: no
    running averages. In meta-learning the inner loop normalises with the support set's
    statistics and the query loss with the query set's. The consequence is transductive: a
    row's output depends on the other rows it is evaluated with. For predictions that do
    not, ``learner.predict(x, x_support=...)`` with ``batch_norm="support"`` normalises
    ``x`` with the support set's statistics. The gradients and Hessian-vector products are
    those of the loss as this function of the whole batch, exact (docs/math.md, section 5);
    a 2×2 max-pool sends the gradient to the first maximum of its window in row-major order.

    Examples
    --------
    >>> import numpy as np, metafast as mf
    >>> net = mf.ConvNet((1, 28, 28))  # Conv-4, 5 outputs
    >>> theta = net.init(seed=0, dtype="float32")
    >>> x = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)
    >>> loss, grad = net.loss_and_grad(theta, x, np.arange(5), loss="softmax_ce")
    >>> grad.shape == (net.num_params,)
    True
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        channels: Sequence[int] = (64, 64, 64, 64),
        outputs: int = 5,
        kernel_size: int = 3,
        stride: int = 2,
        padding: str = "same",
        pool: Optional[str] = None,
        batch_norm: bool = True,
        batch_norm_scale: bool = False,
        batch_norm_eps: float = 1e-5,
        activation: str = "relu",
        head: str = "average",
        bias: bool = True,
    ) -> None:
        self._input_shape = _sizes(input_shape, "input_shape")
        if len(self._input_shape) != 3:
            raise ValueError(f"input_shape must be three sizes (C, H, W), got {self._input_shape}")
        self._channels = _sizes(channels, "channels")
        if pool is not None and not isinstance(pool, str):
            raise TypeError(f"pool must be None or 'max', got {pool!r}")
        self._settings = dict(
            outputs=_validation.int64(outputs, "outputs"),
            kernel_size=_validation.int64(kernel_size, "kernel_size"),
            stride=_validation.int64(stride, "stride"),
            padding=_validation.string(padding, "padding"),
            pool=pool,
            batch_norm=_validation.boolean(batch_norm, "batch_norm"),
            batch_norm_scale=_validation.boolean(batch_norm_scale, "batch_norm_scale"),
            batch_norm_eps=_validation.real(batch_norm_eps, "batch_norm_eps"),
            activation=_validation.string(activation, "activation"),
            head=_validation.string(head, "head"),
            bias=_validation.boolean(bias, "bias"),
        )
        # The core checks every range and the geometry, naming the block at fault.
        self._impl = _core.ConvNet(list(self._input_shape), list(self._channels), **self._settings)
        self._layout = [(int(layer), str(name), int(offset), tuple(int(s) for s in shape))
                        for layer, name, offset, shape in self._impl.layout]

    # ------------------------------------------------------------------ architecture
    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The images' (C, H, W)."""
        return self._input_shape  # type: ignore[return-value]

    @property
    def channels(self) -> tuple[int, ...]:
        """Output channels of each block."""
        return self._channels

    outputs = property(lambda self: self._settings["outputs"], doc="Units of the output layer.")
    kernel_size = property(lambda self: self._settings["kernel_size"], doc="Side of the convolutions' kernels.")
    stride = property(lambda self: self._settings["stride"], doc="The convolutions' stride.")
    padding = property(lambda self: self._settings["padding"], doc='"same" or "valid".')
    pool = property(lambda self: self._settings["pool"], doc='None or "max".')
    batch_norm = property(lambda self: self._settings["batch_norm"], doc="Whether the blocks normalise.")
    batch_norm_scale = property(lambda self: self._settings["batch_norm_scale"], doc="Whether batch norm scales.")
    batch_norm_eps = property(lambda self: self._settings["batch_norm_eps"], doc="Batch norm's epsilon.")
    activation = property(lambda self: self._settings["activation"], doc="The blocks' activation.")
    head = property(lambda self: self._settings["head"], doc='"average" or "flatten".')
    bias = property(lambda self: self._settings["bias"], doc="Whether convolutions and output layer have biases.")

    @property
    def num_params(self) -> int:
        """Length of the flat parameter vector."""
        return self._impl.num_params

    @property
    def features(self) -> int:
        """Width of the head's output, the output layer's input."""
        return self._impl.features

    @property
    def block_shapes(self) -> tuple[tuple[int, int, int], ...]:
        """Each block's output shape (C, H, W)."""
        return tuple(tuple(shape) for shape in self._impl.block_shapes)

    @property
    def output(self) -> str:
        """The output layer's activation: always "identity" (the logits), as an MLP's default."""
        return "identity"

    @property
    def input_width(self) -> int:
        """Values in one input row, C·H·W."""
        return int(np.prod(self._input_shape))

    @property
    def output_width(self) -> int:
        """Values in one output row, ``outputs``."""
        return self.outputs

    def __repr__(self) -> str:
        settings = ", ".join(f"{key}={value!r}" for key, value in self._settings.items())
        return f"ConvNet(input_shape={self._input_shape}, channels={self._channels}, {settings})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ConvNet):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[Any, ...]:
        return (self._input_shape, self._channels, tuple(self._settings.items()))

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt through the constructor, as MLP: a payload meets the checks user input meets.
        return (_rebuilt, (self._config(),))

    def _config(self) -> dict[str, Any]:
        """The constructor's arguments, as a saved file records them (JSON types)."""
        return dict(input_shape=list(self._input_shape), channels=list(self._channels), **self._settings)

    # ------------------------------------------------------------------ parameters
    def init(self, seed: int = 0, dtype: Any = "float64", scheme: Any = "auto") -> np.ndarray:
        """Random initial parameters, reproducible from ``seed``.

        A convolution's ``fan_in`` is ``in_channels·k²`` and its ``fan_out``
        ``out_channels·k²``; the output layer's are its widths. Schemes, as
        :meth:`MLP.init <metafast.MLP.init>`'s:

        - ``"auto"`` (the default): weights uniform in ``[-a, a]``, He
          (``a = sqrt(6 / fan_in)``) for convolutions followed by ReLU, Glorot
          (``a = sqrt(6 / (fan_in + fan_out))``) for the others and the output layer.
        - ``"he"`` or ``"glorot"``: that limit for every layer.
        - ``"pytorch"``: ``torch.nn.Conv2d``'s and ``torch.nn.Linear``'s defaults, weights and
          biases uniform in ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``.
        - ``("normal", std)``: weights ``N(0, std^2)``.

        Biases and batch norm's shifts start at 0 (but with ``"pytorch"``), its scales at 1.
        Values are drawn layer by layer in float64 by NumPy's PCG64 and then cast.

        Parameters
        ----------
        seed : int
            Seed of ``numpy.random.default_rng``.
        dtype : {"float32", "float64"}
            Dtype of the result.
        scheme : str or ("normal", float)
            The initialisation scheme.

        Returns
        -------
        ndarray, shape (num_params,)
            The flat parameter vector.
        """
        rng = np.random.default_rng(_validation.seed(seed))
        dtype = _validation.float_dtype(dtype)
        scheme = init_scheme(scheme, "scheme")
        theta = np.zeros(self.num_params)
        for layer, name, offset, shape in self._layout:
            count = int(np.prod(shape))
            values = theta[offset : offset + count]
            if name == "scale":
                values[:] = 1.0
            elif name == "weight":
                fan_in, fan_out = _fans(shape)
                if isinstance(scheme, tuple):
                    values[:] = rng.normal(0.0, scheme[1], count)
                    continue
                if scheme == "pytorch":
                    limit = 1.0 / np.sqrt(fan_in)
                else:
                    relu = len(shape) == 4 and self.activation == "relu"
                    he = scheme == "he" or (scheme == "auto" and relu)
                    limit = np.sqrt(6.0 / (fan_in if he else fan_in + fan_out))
                values[:] = rng.uniform(-limit, limit, count)
            elif name == "bias" and scheme == "pytorch":
                weight_shape = next(s for index, n, _, s in self._layout if index == layer and n == "weight")
                limit = 1.0 / np.sqrt(_fans(weight_shape)[0])
                values[:] = rng.uniform(-limit, limit, count)
        return theta.astype(dtype)

    def unflatten(self, theta: np.ndarray) -> Layers:
        """The layers' arrays: one dict per block, then one for the output layer.

        Parameters
        ----------
        theta : ndarray, shape (num_params,)
            Parameters, float32 or float64.

        Returns
        -------
        list of dict
            A block's dict holds ``"weight"`` ``(out_channels, in_channels, k, k)`` and, where
            the network has them, ``"bias"``, ``"shift"`` and ``"scale"`` ``(out_channels,)``;
            the output layer's ``"weight"`` ``(features, outputs)`` and ``"bias"``. Views of
            ``theta`` when it is contiguous: writing to them writes to ``theta``.
        """
        theta = _validation.params(theta)
        if theta.shape != (self.num_params,):
            raise ValueError(f"theta must have shape ({self.num_params},), got {theta.shape}")
        layers: Layers = [{} for _ in range(len(self._channels) + 1)]
        for layer, name, offset, shape in self._layout:
            layers[layer][name] = theta[offset : offset + int(np.prod(shape))].reshape(shape)
        return layers

    def flatten(self, layers: Sequence[dict[str, Any]]) -> np.ndarray:
        """Inverse of :meth:`unflatten`: packs the layers' arrays into one flat vector.

        Parameters
        ----------
        layers : sequence of dict
            One dict per block and one for the output layer, with exactly the entries and
            shapes :meth:`unflatten` gives. The first block's ``"weight"`` must be float32 or
            float64 and sets the result's dtype; the other arrays are converted to it.

        Returns
        -------
        ndarray, shape (num_params,)
            The flat parameter vector.
        """
        if not isinstance(layers, Sequence) or len(layers) != len(self._channels) + 1:
            raise ValueError(f"layers must be a sequence of {len(self._channels) + 1} dicts (one per block, then "
                             "the output layer)")
        for index, entries in enumerate(layers):
            expected = sorted(name for layer, name, _, _ in self._layout if layer == index)
            if not isinstance(entries, dict) or sorted(entries) != expected:
                got = sorted(entries) if isinstance(entries, dict) else type(entries).__name__
                raise ValueError(f"layers[{index}] must have the entries {expected}, got {got}")
        first = _validation.params(_validation.as_array(layers[0]["weight"], "layers[0]['weight']").ravel(),
                                   "layers[0]['weight']")
        theta = np.empty(self.num_params, dtype=first.dtype)
        for layer, name, offset, shape in self._layout:
            where = f"layers[{layer}][{name!r}]"
            values = _validation.numbers_as(layers[layer][name], where, theta.dtype)
            if values.shape != shape:
                raise ValueError(f"{where} must have shape {shape}, got {values.shape}")
            theta[offset : offset + values.size] = values.ravel()
        return theta

    # ------------------------------------------------------------------ evaluation
    def forward(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The output layer's values (logits), batch norm normalising with the rows of ``x``.

        Parameters
        ----------
        theta : array, shape (num_params,)
            Parameters, float32 or float64: the dtype of the computation and the result.
        x : array, shape (rows, C, H, W) or (rows, C·H·W)
            The images (converted to theta's dtype).

        Returns
        -------
        ndarray, shape (rows, outputs)
        """
        theta, x = self._pass_arguments(theta, x)
        return self._impl.forward(theta, x)

    def loss(self, theta: np.ndarray, x: np.ndarray, y: np.ndarray, loss: str = "mse") -> np.floating:
        """Mean loss on ``(x, y)``: ``"mse"`` (y of shape (rows, outputs)), ``"bce"`` on the
        logits (y in [0, 1]), ``"softmax_ce"`` on the logits (y integer labels, shape (rows,)).

        Parameters
        ----------
        theta, x
            As for :meth:`forward`.
        y : array
            The targets.
        loss : {"mse", "bce", "softmax_ce"}

        Returns
        -------
        numpy.floating
            The mean loss over rows, of theta's dtype.
        """
        theta, x, y, loss = self._loss_arguments(theta, x, y, loss)
        return theta.dtype.type(self._impl.loss(theta, x, y, loss))

    def loss_and_grad(
        self, theta: np.ndarray, x: np.ndarray, y: np.ndarray, loss: str = "mse"
    ) -> tuple[np.floating, np.ndarray]:
        """Mean loss and its exact gradient with respect to ``theta`` (arguments as for
        :meth:`loss`).

        Returns
        -------
        loss : numpy.floating
        grad : ndarray, shape (num_params,)
        """
        theta, x, y, loss = self._loss_arguments(theta, x, y, loss)
        value, grad = self._impl.loss_and_grad(theta, x, y, loss)
        return theta.dtype.type(value), grad

    def hvp(self, theta: np.ndarray, x: np.ndarray, y: np.ndarray, v: np.ndarray, loss: str = "mse") -> np.ndarray:
        """Exact Hessian-vector product ``H v`` of the mean loss at ``theta`` (the R-operator
        through every layer; docs/math.md, section 5.8). Arguments as for :meth:`loss`, and
        ``v`` of shape (num_params,) in theta's layout.

        Returns
        -------
        ndarray, shape (num_params,)
        """
        theta, x, y, loss = self._loss_arguments(theta, x, y, loss)
        return self._impl.hvp(theta, x, y, _validation.numbers_as(v, "v", theta.dtype), loss)

    # ------------------------------------------------------------------ helpers
    def _input_rows(self, x: np.ndarray, name: str, leading: int = 1) -> np.ndarray:
        """``x`` (floats) with `leading` leading axes and images (C, H, W) or flat rows after
        them, as C-ordered flat rows: the form the core's learners take."""
        trailing = x.shape[leading:]
        if trailing not in (self._input_shape, (self.input_width,)):
            lead = ", ".join(("tasks", "rows")[-leading:] if leading <= 2 else ["..."] * leading)
            c, h, w = self._input_shape
            raise ValueError(f"{name} must have shape ({lead}, {c}, {h}, {w}) or ({lead}, {self.input_width}) for "
                             f"input_shape (C, H, W) = {self._input_shape}, got {x.shape}")
        return np.ascontiguousarray(x.reshape(x.shape[:leading] + (self.input_width,)))

    def _check_rows_shape(self, shape: tuple[int, ...] | None, what: str) -> None:
        """ValueError when rows of `shape` (images (C, H, W) or flat rows (width,); None: not
        known) are not this network's input."""
        if shape is not None and tuple(shape) not in (self._input_shape, (self.input_width,)):
            raise ValueError(f"{what} have shape {tuple(shape)}, but the model takes images of input_shape (C, H, W) = "
                             f"{self._input_shape} (or flat rows of {self.input_width} values)")

    def _pass_arguments(self, theta: Any, x: Any) -> tuple[np.ndarray, np.ndarray]:
        theta = _validation.params(theta)
        x = _validation.numbers_as(x, "x", theta.dtype)
        if x.ndim not in (2, 4):
            c, h, w = self._input_shape
            raise ValueError(f"x must have shape (rows, {c}, {h}, {w}) or (rows, {self.input_width}), got {x.shape}")
        rows = x.shape[0]
        _memory.check(self._impl.workspace_bytes(rows, theta.dtype.itemsize),
                      f"a pass of the network over {rows:,} rows")
        return theta, x

    def _loss_arguments(self, theta: Any, x: Any, y: Any, loss: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        theta, x = self._pass_arguments(theta, x)
        loss = _validation.string(loss, "loss")
        y = _validation.labels(y) if loss == "softmax_ce" else _validation.numbers_as(y, "y", theta.dtype)
        return theta, x, y, loss


def _sizes(value: Any, name: str) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise TypeError(f"{name} must be a sequence of sizes, got {value!r}")
    return tuple(_validation.int64(v, f"{name}[{i}]") for i, v in enumerate(value))


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight array: a convolution's (O, C, k, k) or a dense (F, m)."""
    if len(shape) == 4:
        out_c, in_c, k, _ = shape
        return in_c * k * k, out_c * k * k
    return shape[0], shape[1]


def _rebuilt(config: dict[str, Any]) -> ConvNet:
    return ConvNet(**config)
