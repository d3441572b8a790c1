"""Multilayer perceptrons over a flat parameter vector, evaluated by the C++ core."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

from . import _core, _memory, _validation
from ._docs import shared_docs

Layers = list[tuple[np.ndarray, Optional[np.ndarray]]]

# The core's limits (Mlp::max_width_allowed, Mlp::max_params_allowed: far beyond memory, far from
# any overflow of a size product), read from it; checked here first to name the layer at fault.
MAX_WIDTH: int = _core.MLP.max_width
MAX_PARAMS: int = _core.MLP.max_params

# The schemes MLP.init accepts by name, besides ("normal", std): the one list (the CLI's too).
INIT_SCHEMES = ("auto", "he", "glorot", "pytorch")
INIT_FORMS = ", ".join(map(repr, INIT_SCHEMES)) + " or ('normal', std)"


class MLP:
    """A multilayer perceptron whose parameters live in one flat vector ``theta``.

    Parameters
    ----------
    sizes : sequence of int
        Widths from input to output, e.g. ``[1, 40, 40, 1]``.
    activation : {"relu", "tanh", "sigmoid", "identity"}
        Activation of every hidden layer.
    output : {"identity", "tanh", "sigmoid", "relu"}
        Activation of the output layer.
    bias : bool
        Whether each layer has a bias vector.

    Notes
    -----
    **Parameter layout.** For each layer in order: ``W`` of shape ``(fan_in, fan_out)`` in
    row-major order, then ``b`` of shape ``(fan_out,)`` (omitted when ``bias=False``). A
    layer computes ``z = a @ W + b``, ``a' = f(z)`` with rows as samples.

    **Losses** are means over rows: ``"mse"`` is the mean over rows and outputs of the
    squared error of the output activation; ``"bce"`` is binary cross-entropy on the logits
    (output ``"identity"``, or ``"sigmoid"`` whose probabilities come from those logits),
    summed over outputs; ``"softmax_ce"`` is softmax cross-entropy on the logits (output
    ``"identity"``) with integer labels ``y`` of shape ``(rows,)``.

    ``theta``'s dtype (float32 or float64) is the dtype of the computation and of every
    result: ``x``, float targets ``y`` and ``v`` of another dtype, integers included, are
    converted to it (float64 values beyond float32's range are a ValueError, not infinities).
    Gradients come from backpropagation, Hessian-vector products from Pearlmutter's
    R-operator (Pearlmutter 1994), both exact.

    Examples
    --------
    >>> import numpy as np, metafast as mf
    >>> model = mf.MLP([1, 40, 40, 1], activation="relu")
    >>> theta = model.init(seed=0)
    >>> x = np.linspace(-5, 5, 10).reshape(-1, 1)
    >>> loss, grad = model.loss_and_grad(theta, x, np.sin(x))
    >>> grad.shape == (model.num_params,)
    True
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "relu",
        output: str = "identity",
        bias: bool = True,
    ) -> None:
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, (Sequence, np.ndarray)):
            raise TypeError(f"sizes must be a sequence of layer widths, got {sizes!r}")
        widths = [_validation.integer(s, f"sizes[{i}]", minimum=1, maximum=MAX_WIDTH) for i, s in enumerate(sizes)]
        bias = _validation.boolean(bias, "bias")
        params = sum(a * b + (b if bias else 0) for a, b in zip(widths[:-1], widths[1:]))
        if params > MAX_PARAMS:
            raise ValueError(f"the network has {params:,} parameters, more than the limit of {MAX_PARAMS:,} (2**{MAX_PARAMS.bit_length() - 1})")
        self._impl = _core.MLP(
            widths,
            _validation.string(activation, "activation"),
            _validation.string(output, "output"),
            bias,
        )

    @property
    def sizes(self) -> tuple[int, ...]:
        """Layer widths from input to output."""
        return tuple(self._impl.sizes)

    @property
    def num_params(self) -> int:
        """Length of the flat parameter vector."""
        return self._impl.num_params

    @property
    def input_width(self) -> int:
        """Values in one input row, ``sizes[0]``."""
        return self.sizes[0]

    @property
    def output_width(self) -> int:
        """Values in one output row, ``sizes[-1]``."""
        return self.sizes[-1]

    @property
    def num_layers(self) -> int:
        """Number of weight layers, ``len(sizes) - 1``."""
        return len(self.sizes) - 1

    @property
    def activation(self) -> str:
        """Activation of the hidden layers."""
        return self._impl.activation

    @property
    def output(self) -> str:
        """Activation of the output layer."""
        return self._impl.output

    @property
    def bias(self) -> bool:
        """Whether each layer has a bias vector."""
        return self._impl.bias

    def __repr__(self) -> str:
        return (
            f"MLP({list(self.sizes)}, activation={self.activation!r}, "
            f"output={self.output!r}, bias={self.bias})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MLP):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[Any, ...]:
        return (self.sizes, self.activation, self.output, self.bias)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle and copy rebuild through the constructor: a payload meets the checks that user
        # input meets, and every copy (copy.copy too) gets a core object of its own.
        return (type(self), (list(self.sizes), self.activation, self.output, self.bias))

    def init(self, seed: int = 0, dtype: Any = "float64", scheme: Any = "auto") -> np.ndarray:
        """Random initial parameters, reproducible from ``seed``.

        Schemes (``fan_in``, ``fan_out``: a layer's widths):

        - ``"auto"`` (the default): weights uniform in ``[-a, a]``, He (``a = sqrt(6 / fan_in)``)
          for layers followed by ReLU, Glorot (``a = sqrt(6 / (fan_in + fan_out))``)
          otherwise; biases zero.
        - ``"he"`` or ``"glorot"``: that uniform limit for every layer; biases zero.
        - ``"pytorch"``: ``torch.nn.Linear``'s default, weights and biases uniform in
          ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``.
        - ``("normal", std)``: weights ``N(0, std^2)``, biases zero (MAML's code uses 0.01).

        Values are drawn in float64 by NumPy's PCG64 and then cast, so
        ``init(s, "float32") == init(s, "float64").astype("float32")``.

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
            The flat parameter vector (layout in the class's Notes).
        """
        seed = _validation.seed(seed)
        dtype = _validation.float_dtype(dtype)
        scheme = init_scheme(scheme, "scheme")
        std = scheme[1] if isinstance(scheme, tuple) else None
        rng = np.random.default_rng(seed)
        theta = np.zeros(self.num_params)
        sizes = self.sizes  # once: each access copies the widths, so one per layer is quadratic
        for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            start, count = self._impl.weight_offset(layer), fan_in * fan_out
            if std is not None:
                theta[start : start + count] = rng.normal(0.0, std, count)
                continue
            if scheme == "pytorch":
                bound = 1.0 / np.sqrt(fan_in)
                theta[start : start + count] = rng.uniform(-bound, bound, count)
                if self.bias:
                    theta[start + count : start + count + fan_out] = rng.uniform(-bound, bound, fan_out)
                continue
            relu = (self.output if layer == len(sizes) - 2 else self.activation) == "relu"
            he = scheme == "he" or (scheme == "auto" and relu)
            limit = np.sqrt(6.0 / (fan_in if he else fan_in + fan_out))
            theta[start : start + count] = rng.uniform(-limit, limit, count)
        return theta.astype(dtype)

    @shared_docs
    def forward(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Network outputs (after the output activation).

        Parameters
        ----------
        {theta and x}

        Returns
        -------
        ndarray, shape (rows, sizes[-1])
            Outputs, in theta's dtype.
        """
        theta = _validation.params(theta)
        x = _validation.numbers_as(x, "x", theta.dtype)
        self._check_pass(theta, x)
        return self._impl.forward(theta, x)

    @shared_docs
    def loss(self, theta: np.ndarray, x: np.ndarray, y: np.ndarray, loss: str = "mse") -> np.floating:
        """Mean loss of the network on ``(x, y)``.

        Parameters
        ----------
        {theta and x}
        {targets}
        {loss}

        Returns
        -------
        numpy.floating
            The mean loss over rows, a scalar of theta's dtype.
        """
        theta, x, y, loss = self._loss_arguments(theta, x, y, loss)
        return theta.dtype.type(self._impl.loss(theta, x, y, loss))

    @shared_docs
    def loss_and_grad(
        self, theta: np.ndarray, x: np.ndarray, y: np.ndarray, loss: str = "mse"
    ) -> tuple[np.floating, np.ndarray]:
        """Mean loss and its gradient with respect to ``theta`` (backpropagation).

        Parameters
        ----------
        {theta and x}
        {targets}
        {loss}

        Returns
        -------
        loss : numpy.floating
            The mean loss over rows, a scalar of theta's dtype.
        grad : ndarray, shape (num_params,)
            Its gradient, in theta's layout.
        """
        theta, x, y, loss = self._loss_arguments(theta, x, y, loss)
        value, grad = self._impl.loss_and_grad(theta, x, y, loss)
        return theta.dtype.type(value), grad

    @shared_docs
    def hvp(
        self, theta: np.ndarray, x: np.ndarray, y: np.ndarray, v: np.ndarray, loss: str = "mse"
    ) -> np.ndarray:
        """Exact Hessian-vector product ``H v`` of the mean loss at ``theta`` (Pearlmutter's
        R-operator: one extra forward and backward pass; docs/math.md, section 2).

        Parameters
        ----------
        {theta and x}
        {targets}
        v : array, shape (num_params,)
            The direction, in theta's layout (converted to theta's dtype).
        {loss}

        Returns
        -------
        ndarray, shape (num_params,)
            ``H v``, with H the Hessian of the mean loss with respect to theta.
        """
        theta, x, y, loss = self._loss_arguments(theta, x, y, loss)
        return self._impl.hvp(theta, x, y, _validation.numbers_as(v, "v", theta.dtype), loss)

    def unflatten(self, theta: np.ndarray) -> Layers:
        """The layers' weights and biases as arrays.

        Parameters
        ----------
        theta : ndarray, shape (num_params,)
            Parameters, float32 or float64.

        Returns
        -------
        list of (W, b)
            ``[(W1, b1), (W2, b2), ...]`` with ``W`` of shape ``(fan_in, fan_out)`` and ``b``
            of shape ``(fan_out,)``, or None without biases. These are views into ``theta``
            when it is a contiguous array, so writing to them writes to ``theta``.
        """
        theta = _validation.params(theta)
        if theta.shape != (self.num_params,):
            raise ValueError(f"theta must have shape ({self.num_params},), got {theta.shape}")
        layers: Layers = []
        for layer, (fan_in, fan_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            w = self._impl.weight_offset(layer)
            weights = theta[w : w + fan_in * fan_out].reshape(fan_in, fan_out)
            b = self._impl.bias_offset(layer)
            layers.append((weights, theta[b : b + fan_out] if self.bias else None))
        return layers

    def flatten(self, layers: Sequence[tuple[Any, Any]]) -> np.ndarray:
        """Inverse of :meth:`unflatten`: packs the layers into one flat vector.

        Parameters
        ----------
        layers : sequence of (W, b)
            One pair per layer, ``W`` of shape ``(fan_in, fan_out)`` and ``b`` of shape
            ``(fan_out,)`` (None when the model has no biases). The first ``W`` must be float32
            or float64 and sets the result's dtype; the other arrays may be of any float or
            integer dtype and are converted to it (float64 values beyond float32's range into a
            float32 result are a ValueError, other dtypes such as bool a TypeError).

        Returns
        -------
        ndarray, shape (num_params,)
            The flat parameter vector, in the dtype of the first ``W``.
        """
        if len(layers) != self.num_layers:
            raise ValueError(f"layers must hold {self.num_layers} (W, b) pairs, got {len(layers)}")
        first = _validation.params(_validation.as_array(layers[0][0], "layers[0][0]").ravel(), "layers[0][0]")
        theta = np.empty(self.num_params, dtype=first.dtype)
        target = self.unflatten(theta)
        for i, ((weights, bias), (w_out, b_out)) in enumerate(zip(layers, target)):
            w_in = _validation.numbers_as(weights, f"layers[{i}][0]", theta.dtype)
            if w_in.shape != w_out.shape:
                raise ValueError(f"layers[{i}][0] must have shape {w_out.shape}, got {w_in.shape}")
            w_out[...] = w_in
            if b_out is None:
                if bias is not None:
                    raise ValueError(f"layers[{i}][1] must be None: the model has no biases")
                continue
            if bias is None:  # np.asarray(None, float) would be a NaN, not an error
                raise ValueError(f"layers[{i}][1] is None, but the model has biases: give an array of shape "
                                 f"{b_out.shape}")
            b_in = _validation.numbers_as(bias, f"layers[{i}][1]", theta.dtype)
            if b_in.shape != b_out.shape:
                raise ValueError(f"layers[{i}][1] must have shape {b_out.shape}, got {b_in.shape}")
            b_out[...] = b_in
        return theta

    def _loss_arguments(
        self, theta: Any, x: Any, y: Any, loss: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        theta = _validation.params(theta)
        loss = _validation.string(loss, "loss")
        x = _validation.numbers_as(x, "x", theta.dtype)
        y = _validation.labels(y) if loss == "softmax_ce" else _validation.numbers_as(y, "y", theta.dtype)
        self._check_pass(theta, x)
        return theta, x, y, loss

    def _input_rows(self, x: np.ndarray, name: str, leading: int = 1) -> np.ndarray:
        """``x`` (floats) with `leading` leading axes, then an input row: as the core takes it."""
        if x.ndim != leading + 1:
            lead = ", ".join(("tasks", "rows")[-leading:])
            raise ValueError(f"{name} must have shape ({lead}, {self.input_width}), got {x.shape}")
        return x

    def _check_rows_shape(self, shape: tuple[int, ...] | None, what: str) -> None:
        """Nothing to check beyond the width, which the core checks (a ConvNet checks images)."""

    def _check_pass(self, theta: np.ndarray, x: np.ndarray) -> None:
        """The memory check of a pass over the rows of ``x``, before the core allocates it."""
        rows = x.shape[0] if x.ndim else 1
        _memory.check(self._impl.workspace_bytes(rows, theta.dtype.itemsize),
                      f"a pass of the network over {rows:,} rows")

    def state_dict(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """``theta`` as the state dict of the equivalent ``torch.nn.Sequential``.

        The equivalent Sequential follows every ``Linear`` but the last by the hidden
        activation module (``torch.nn.Identity`` for ``"identity"``), and the last by the
        output activation module unless the output is ``"identity"``; layer ``i`` is module
        ``2 * i`` (details in :mod:`metafast.export`).

        Parameters
        ----------
        theta : ndarray, shape (num_params,)
            Parameters, float32 or float64, all finite.

        Returns
        -------
        collections.OrderedDict of str to ndarray
            ``"0.weight"`` of shape ``(sizes[1], sizes[0])`` (``W`` transposed, as
            ``torch.nn.Linear`` stores it), ``"0.bias"`` of shape ``(sizes[1],)``, then
            ``"2.weight"``, ``"2.bias"``, ...; no bias entries when ``bias=False``. Copies, in
            theta's dtype.

        Examples
        --------
        >>> import metafast as mf
        >>> model = mf.MLP([3, 5, 4, 2])
        >>> {name: array.shape for name, array in model.state_dict(model.init()).items()}
        {'0.weight': (5, 3), '0.bias': (5,), '2.weight': (4, 5), '2.bias': (4,), '4.weight': (2, 4), '4.bias': (2,)}
        """
        from . import export  # export imports this module

        return export.state_dict(self, theta)

    def to_onnx(self, theta: np.ndarray, path: Any = None) -> Any:
        """The network with parameters ``theta`` as an ONNX model, written to ``path`` if given.

        Needs the onnx package: ``pip install "metafast[onnx]"``.

        Parameters
        ----------
        theta : ndarray, shape (num_params,)
            Parameters, float32 or float64, all finite.
        path : str or os.PathLike, optional
            Where to write the model: atomically, and only over a regular file (as
            ``learner.save`` writes). None: write nothing.

        Returns
        -------
        onnx.ModelProto
            The model, also when it was written: input ``"x"`` of shape ``("rows", sizes[0])``,
            output ``"y"`` of shape ``("rows", sizes[-1])``, in theta's dtype (details in
            :func:`metafast.export.to_onnx`).

        Examples
        --------
        >>> import numpy as np, metafast as mf
        >>> import onnxruntime as ort  # doctest: +SKIP
        >>> model = mf.MLP([1, 40, 40, 1])
        >>> theta = model.init(seed=0, dtype="float32")
        >>> proto = model.to_onnx(theta, "sine.onnx")  # doctest: +SKIP
        >>> session = ort.InferenceSession("sine.onnx")  # doctest: +SKIP
        >>> x = np.linspace(-5, 5, 10, dtype=np.float32).reshape(-1, 1)
        >>> np.allclose(session.run(None, {"x": x})[0], model.forward(theta, x))  # doctest: +SKIP
        True
        """
        from . import export  # export imports this module

        return export.to_onnx(self, theta, path)


def init_scheme(scheme: Any, name: str = "init", forms: str = INIT_FORMS) -> str | tuple[str, float]:
    """The initialisation scheme that ``scheme`` names: a name of ``INIT_SCHEMES`` or
    ``("normal", std)`` with a finite ``std >= 0`` (returned as a tuple). Anything else is a
    ValueError (a string or a sequence that starts with one) or a TypeError naming ``name`` and
    listing ``forms``, the accepted forms."""
    if isinstance(scheme, str):
        if scheme not in INIT_SCHEMES:
            raise ValueError(f"{name} must be {forms}, got {scheme!r}")
        return scheme
    if isinstance(scheme, (tuple, list)) and scheme and isinstance(scheme[0], str):
        if len(scheme) != 2 or scheme[0] != "normal":
            raise ValueError(f"{name} must be {forms}, got {scheme!r}: a scheme is a name alone or ('normal', std)")
        return ("normal", _validation.real(scheme[1], f"{name}'s normal std", minimum=0.0))
    raise TypeError(f"{name} must be {forms}, got {_shown(scheme)}")


def _shown(value: Any) -> str:
    """A short description of ``value`` for a message (never a whole array)."""
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype} and shape {value.shape}"
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({type(value).__name__})"


def initial_theta(model: MLP, init: Any, seed: int, dtype: np.dtype,
                  default: str = "auto") -> tuple[np.ndarray, Any]:
    """theta to start from, and what a saved file records of ``init``: a scheme of
    :meth:`MLP.init` (None for the learner's ``default`` scheme, a name of ``INIT_SCHEMES``, or
    ("normal", std)), or an explicit theta, an array of ``model.num_params`` finite numbers
    (recorded as None). Any other ``init`` is a TypeError or ValueError that names it and lists
    these forms."""
    forms = f"{INIT_FORMS.replace(' or ', ', ')} or theta (an array of {model.num_params} numbers)"
    if init is None:
        return model.init(seed, dtype, scheme=default), None
    if isinstance(init, str) or (isinstance(init, (tuple, list)) and init and isinstance(init[0], str)):
        scheme = init_scheme(init, "init", forms)
        return model.init(seed, dtype, scheme=scheme), scheme
    theta = _validation.as_array(init, "init")
    if theta.dtype.kind not in "fiu":
        raise TypeError(f"init must be {forms}, got {_shown(init)}")
    if theta.shape != (model.num_params,):
        raise ValueError(f"init as an array must be theta, of shape ({model.num_params},), got {theta.shape}")
    theta = _validation.converted(theta, dtype, "init")
    if not np.all(np.isfinite(theta)):
        raise ValueError("init contains NaN or infinity")
    return np.ascontiguousarray(theta), None

