"""Export (metafast.export): state dicts named and shaped as torch.nn.Sequential's, checked
against a NumPy forward pass written here; ONNX models checked by onnxruntime against
MLP.forward; the errors for bad input."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import metafast as mf
from metafast import export

HIDDEN = ["relu", "tanh", "sigmoid", "identity"]
OUTPUTS = ["identity", "tanh", "sigmoid", "relu"]
DTYPES = ["float32", "float64"]
CASES = [(hidden, output, bias, dtype) for hidden in HIDDEN for output in OUTPUTS for bias in (True, False)
         for dtype in DTYPES]
IDS = [f"{hidden}-{output}-{'bias' if bias else 'nobias'}-{dtype}" for hidden, output, bias, dtype in CASES]
# float32: the core and onnxruntime sum in different orders; float64 differs in the last bits.
TOLERANCE = {"float32": {"rtol": 1e-5, "atol": 1e-6}, "float64": {"rtol": 1e-12, "atol": 1e-14}}

NUMPY_ACTIVATIONS = {
    "relu": lambda z: np.maximum(z, 0),
    "tanh": np.tanh,
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "identity": lambda z: z,
}


def numpy_forward(entries: dict[str, np.ndarray], hidden: str, output: str, x: np.ndarray) -> np.ndarray:
    """The Sequential's forward pass from its state dict alone: Linear is a @ weight.T + bias."""
    layers = sorted({int(name.split(".")[0]) for name in entries})
    a = x
    for index in layers:
        a = a @ entries[f"{index}.weight"].T
        if f"{index}.bias" in entries:
            a = a + entries[f"{index}.bias"]
        a = NUMPY_ACTIVATIONS[output if index == layers[-1] else hidden](a)
    return a


def layout(sizes: list[int], bias: bool, theta: np.ndarray) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(W, b) per layer sliced from theta by the README's layout: W (fan_in, fan_out) row-major, then b."""
    layers, offset = [], 0
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        weights = theta[offset : offset + fan_in * fan_out].reshape(fan_in, fan_out)
        offset += fan_in * fan_out
        b = None
        if bias:
            b = theta[offset : offset + fan_out]
            offset += fan_out
        layers.append((weights, b))
    assert offset == theta.size
    return layers


def inputs(rows: int, width: int, dtype: str) -> np.ndarray:
    return np.random.default_rng(7).normal(scale=2.0, size=(rows, width)).astype(dtype)


@pytest.fixture(scope="module")
def ort():
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    return onnxruntime


def run(ort, source, x: np.ndarray) -> np.ndarray:
    """The model's output under onnxruntime; ``source`` is a path or a ModelProto."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    model = os.fspath(source) if isinstance(source, (str, os.PathLike)) else source.SerializeToString()
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    (y,) = session.run(["y"], {"x": x})
    return y


# ------------------------------------------------------------------ state dict
def test_state_dict_names_and_shapes_are_torch_sequentials():
    model = mf.MLP([3, 5, 4, 2])
    entries = model.state_dict(model.init(seed=0))
    assert list(entries) == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    assert [a.shape for a in entries.values()] == [(5, 3), (5,), (4, 5), (4,), (2, 4), (2,)]
    assert export.torch_modules(model) == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]


def test_state_dict_without_biases_and_with_identity_and_output_modules():
    model = mf.MLP([3, 5, 4, 2], activation="identity", output="sigmoid", bias=False)
    entries = model.state_dict(model.init(seed=0))
    assert list(entries) == ["0.weight", "2.weight", "4.weight"]  # identity hidden layers still take an index
    assert [a.shape for a in entries.values()] == [(5, 3), (4, 5), (2, 4)]
    assert export.torch_modules(model) == ["Linear", "Identity", "Linear", "Identity", "Linear", "Sigmoid"]
    one = mf.MLP([3, 2], output="tanh")
    assert list(one.state_dict(one.init())) == ["0.weight", "0.bias"]
    assert export.torch_modules(one) == ["Linear", "Tanh"]


@pytest.mark.parametrize("hidden, output, bias, dtype", CASES, ids=IDS)
def test_state_dict_computes_what_forward_computes(hidden, output, bias, dtype):
    sizes = [3, 5, 4, 2]
    model = mf.MLP(sizes, activation=hidden, output=output, bias=bias)
    theta = model.init(seed=1, dtype=dtype, scheme="pytorch")  # nonzero biases
    entries = model.state_dict(theta)
    assert all(a.dtype == np.dtype(dtype) and a.flags.c_contiguous for a in entries.values())
    for index, (weights, b) in enumerate(layout(sizes, bias, theta)):
        np.testing.assert_array_equal(entries[f"{2 * index}.weight"], weights.T)
        if bias:
            np.testing.assert_array_equal(entries[f"{2 * index}.bias"], b)
    x = inputs(6, 3, dtype)
    np.testing.assert_allclose(numpy_forward(entries, hidden, output, x), model.forward(theta, x), **TOLERANCE[dtype])


def test_state_dict_arrays_are_copies():
    model = mf.MLP([2, 3, 1])
    theta = model.init(seed=0, scheme="pytorch")
    kept = theta.copy()
    for array in model.state_dict(theta).values():
        array[...] = 42.0
    np.testing.assert_array_equal(theta, kept)


# ------------------------------------------------------------------------ ONNX
@pytest.mark.parametrize("hidden, output, bias, dtype", CASES, ids=IDS)
def test_onnxruntime_computes_what_forward_computes(ort, hidden, output, bias, dtype):
    model = mf.MLP([3, 5, 4, 2], activation=hidden, output=output, bias=bias)
    theta = model.init(seed=1, dtype=dtype, scheme="pytorch")
    proto = model.to_onnx(theta)
    for rows in (1, 9):  # the batch dimension is dynamic
        x = inputs(rows, 3, dtype)
        y = run(ort, proto, x)
        assert y.dtype == np.dtype(dtype) and y.shape == (rows, 2)
        np.testing.assert_allclose(y, model.forward(theta, x), **TOLERANCE[dtype])


def test_onnx_graph_names_and_initializers(ort):
    import onnx.numpy_helper

    model = mf.MLP([3, 5, 4, 2], activation="identity", output="sigmoid")
    theta = model.init(seed=0, dtype="float64")
    proto = model.to_onnx(theta)
    graph = proto.graph
    assert [i.name for i in graph.input] == ["x"] and [o.name for o in graph.output] == ["y"]
    x_dims = graph.input[0].type.tensor_type.shape.dim
    y_dims = graph.output[0].type.tensor_type.shape.dim
    assert (x_dims[0].dim_param, x_dims[1].dim_value) == ("rows", 3)
    assert (y_dims[0].dim_param, y_dims[1].dim_value) == ("rows", 2)
    assert [n.op_type for n in graph.node] == ["Gemm", "Identity", "Gemm", "Identity", "Gemm", "Sigmoid"]
    initializers = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    entries = model.state_dict(theta)
    assert list(initializers) == list(entries)
    for name, array in entries.items():
        np.testing.assert_array_equal(initializers[name], array)


@pytest.mark.parametrize("activation", HIDDEN)
def test_one_table_names_each_activation_for_both_exports(ort, activation):
    """The ONNX operator and the torch module of an activation come from one row of one table,
    keyed by metafast's activation name, which names every activation the MLP takes."""
    assert set(export._ACTIVATION_NAMES) == set(NUMPY_ACTIVATIONS)
    names = export._ACTIVATION_NAMES[activation]
    model = mf.MLP([2, 3, 1], activation=activation, output=activation)
    graph = export._onnx_graph(model, model.init(seed=0)).graph
    output_module = activation != "identity"  # an identity output adds nothing after the last layer
    assert [n.op_type for n in graph.node] == ["Gemm", names.onnx_op, "Gemm"] + [names.onnx_op] * output_module
    assert export.torch_modules(model) == ["Linear", names.torch_module, "Linear"] + [names.torch_module] * output_module


def test_onnx_file_is_written_atomically_and_read_back(ort, tmp_path):
    import onnx

    model = mf.MLP([1, 8, 1], activation="tanh")
    theta = model.init(seed=3, dtype="float32")
    path = tmp_path / "model.onnx"
    path.write_bytes(b"an older model")
    proto = model.to_onnx(theta, path)
    assert os.listdir(tmp_path) == ["model.onnx"]  # no temporary file left
    assert onnx.load(path) == proto
    x = inputs(5, 1, "float32")
    np.testing.assert_allclose(run(ort, path, x), model.forward(theta, x), **TOLERANCE["float32"])
    model.to_onnx(theta, str(path))  # a str path too
    assert onnx.load(str(path)) == proto


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize("method", ["state_dict", "to_onnx"])
def test_bad_theta_is_refused_with_its_name(method, ort):
    model = mf.MLP([2, 3, 1])
    call = getattr(model, method)
    theta = model.init(seed=0)
    with pytest.raises(ValueError, match=r"^theta must have shape \(13,\), got \(12,\)$"):
        call(theta[:-1])
    with pytest.raises(ValueError, match=r"^theta must have shape \(13,\), got \(1, 13\)$"):
        call(theta.reshape(1, -1))
    with pytest.raises(TypeError, match=r"^theta must be a float32 or float64 array, got dtype int64$"):
        call(np.arange(13))
    with pytest.raises(TypeError, match=r"^theta must be a float32 or float64 array, got dtype float16$"):
        call(theta.astype(np.float16))
    with pytest.raises(TypeError, match=r"^theta must be a float32 or float64 array, got None$"):
        call(None)
    with pytest.raises(ValueError, match=r"^theta must be an array of numbers"):
        call("theta")
    for bad in (np.nan, np.inf, -np.inf):
        broken = theta.copy()
        broken[4] = bad
        with pytest.raises(ValueError, match=r"^theta contains NaN or infinity \(at flat index 4\)$"):
            call(broken)
    # the same message as forward's
    with pytest.raises(ValueError, match=r"^theta contains NaN or infinity \(at flat index 4\)$"):
        model.forward(broken, np.zeros((1, 2)))


def test_bad_model_is_refused():
    with pytest.raises(TypeError, match="^model must be a metafast.MLP, got list$"):
        export.state_dict([2, 3, 1], np.zeros(13))


def test_bad_path_is_refused_before_anything_is_written(ort, tmp_path):
    model = mf.MLP([2, 3, 1])
    theta = model.init(seed=0)
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(ValueError, match=r"^path: .*folder is a directory; save replaces only a regular file$"):
        model.to_onnx(theta, folder)
    assert os.listdir(folder) == [] and sorted(os.listdir(tmp_path)) == ["folder"]
    with pytest.raises(TypeError, match=r"^path must be a path \(str or os.PathLike\), got int$"):
        model.to_onnx(theta, 3)
    with pytest.raises(ValueError, match=r"^path: cannot write .*missing/model.onnx"):
        model.to_onnx(theta, tmp_path / "missing" / "model.onnx")


def test_missing_onnx_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    model = mf.MLP([2, 3, 1])
    with pytest.raises(ImportError, match=r'pip install "metafast\[onnx\]"'):
        model.to_onnx(model.init(seed=0))
    assert list(model.state_dict(model.init(seed=0)))  # the state dict needs no onnx


# ------------------------------------------------------- adapted to a support set
@pytest.fixture(scope="module")
def sine_tasks():
    return mf.tasks.Sinusoid().sample(2, seed=11, dtype="float32")


@pytest.mark.parametrize("make", [
    lambda: mf.MetaSGD(mf.MLP([1, 8, 1]), num_threads=1),
    lambda: mf.MAML(mf.MLP([1, 8, 1], activation="tanh"), num_threads=1),
    lambda: mf.Reptile(mf.MLP([1, 8, 1]), inner_epochs=2, num_threads=1),
], ids=["MetaSGD", "MAML", "Reptile"])
def test_learner_export_onnx_computes_the_adapted_predictions(ort, make, sine_tasks, tmp_path):
    learner = make()
    learner.fit(mf.tasks.Sinusoid(), iterations=5, meta_batch=4, progress=False)
    xs, ys, xq = sine_tasks.x_support[0], sine_tasks.y_support[0], sine_tasks.x_query[0]
    for steps in (None, 3):
        path = tmp_path / f"adapted-{steps}.onnx"
        proto = learner.export_onnx(path, xs, ys, steps)
        expected = learner.predict(xq, learner.adapt(xs, ys, steps))
        np.testing.assert_allclose(run(ort, path, xq), expected, **TOLERANCE["float32"])
        np.testing.assert_allclose(run(ort, proto, xq), expected, **TOLERANCE["float32"])
    unadapted = learner.predict(xq)
    assert not np.allclose(run(ort, path, xq), unadapted)  # the export is of the adapted model


def test_learner_export_onnx_checks_the_destination_before_adapting(ort, tmp_path):
    learner = mf.MetaSGD(mf.MLP([1, 8, 1]), num_threads=1)
    with pytest.raises(ValueError, match="is a directory"):
        learner.export_onnx(tmp_path, np.zeros((2, 1), np.float32), np.zeros((2, 1), np.float32))