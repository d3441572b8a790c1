"""What every learner shares through one base class (state, parameter checks, training loop,
checkpoints, divergence), the sampler path of the supervised learners, and the package's
import structure (no cycle, no eager import of the NumPy reference)."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import metafast as mf
from metafast import _optimizers, io, reference
from metafast.tasks import Sinusoid

PACKAGE = Path(mf.__file__).resolve().parent
SINE = Sinusoid(support=5, query=5)


def tiny(kind, **kwargs):
    """A learner of each kind, small enough that a few meta-iterations take milliseconds."""
    if kind == "metasgd":
        return mf.MetaSGD(mf.MLP([1, 8, 1]), **kwargs)
    if kind == "reptile":
        return mf.Reptile(mf.MLP([1, 8, 1]), inner_epochs=2, inner_batch=5, **kwargs)
    return mf.rl.MetaSGDRL(mf.MLP([2, 8, 2]), inner_trajectories=4, meta_lr=1e-2, **kwargs)


def train(learner, iterations, **kwargs):
    settings = dict(iterations=iterations, meta_batch=2, progress=False, **kwargs)
    if isinstance(learner, mf.rl.MetaSGDRL):
        return learner.fit(**settings)
    return learner.fit(SINE, **settings)


def assert_same_state(a, b):
    """theta, alpha (where there is one), optimizer state, iteration count and history agree bit for bit."""
    np.testing.assert_array_equal(a.theta, b.theta)
    if hasattr(a, "alpha"):
        np.testing.assert_array_equal(a.alpha, b.alpha)
    for got, expected in zip(a._impl.get_optimizer_state(), b._impl.get_optimizer_state()):
        np.testing.assert_array_equal(got, expected)
    assert a.iteration == b.iteration
    np.testing.assert_array_equal(a.history, b.history)


KINDS = ["metasgd", "reptile", "metasgd-rl"]


# ---------------------------------------------------------------------- shared state
@pytest.mark.parametrize("kind", KINDS)
def test_every_learner_has_model_dtype_seed_iteration_history_and_threads(kind):
    learner = tiny(kind, dtype="float64", seed=7, num_threads=1)
    assert isinstance(learner, mf.learner.Learner)
    assert isinstance(learner.model, mf.MLP) and learner.model.num_params <= learner.theta.size
    assert learner.dtype == np.float64 and learner.theta.dtype == np.float64
    assert learner.seed == 7
    assert learner.iteration == 0 and learner.history.shape == (0,)
    assert learner.num_threads == 1
    learner.num_threads = 2
    assert learner.num_threads == 2
    history = train(learner, 3)
    assert learner.iteration == 3 and history.shape == (3,) and history.dtype == np.float64
    np.testing.assert_array_equal(learner.history, history)


@pytest.mark.parametrize("kind", KINDS)
def test_theta_setter_converts_and_checks(kind):
    learner = tiny(kind)  # float32
    theta = learner.theta
    learner.theta = (theta + 1).astype(np.float64).tolist()  # lists of any float width are converted
    np.testing.assert_array_equal(learner.theta, theta + 1)
    bad = {
        "short": (theta[:-1], ValueError, rf"theta must have shape \({theta.size},\)"),
        "nan": (np.full(theta.size, np.nan), ValueError, "theta contains NaN or infinity"),
        "beyond-float32": (np.full(theta.size, 1e300), ValueError, "theta has values beyond the range of float32"),
        "strings": (["a"] * theta.size, TypeError, r"theta must hold numbers \(floats or integers\), got dtype <U1"),
    }
    for value, error, message in bad.values():
        with pytest.raises(error, match=message):
            learner.theta = value
    np.testing.assert_array_equal(learner.theta, theta + 1)  # a refused value changes nothing


@pytest.mark.parametrize("kind", ["metasgd", "metasgd-rl"])
def test_alpha_setter_converts_and_checks(kind):
    learner = tiny(kind)
    alpha = learner.alpha
    learner.alpha = alpha.astype(np.float64) * 2
    np.testing.assert_array_equal(learner.alpha, alpha * 2)
    with pytest.raises(ValueError, match="alpha must have shape"):
        learner.alpha = alpha[:3]
    with pytest.raises(TypeError, match=r"alpha must hold numbers \(floats or integers\), got dtype object"):
        learner.alpha = [None] * alpha.size
    np.testing.assert_array_equal(learner.alpha, alpha * 2)


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_load_through_either_entry_point(tmp_path, kind):
    learner = tiny(kind, seed=4)
    train(learner, 2)
    learner.save(tmp_path / "learner.npz")
    assert io.load is mf.load
    loaded = io.load(tmp_path / "learner.npz", num_threads=1)
    assert type(loaded) is type(learner) and loaded.seed == 4 and loaded.dtype == learner.dtype
    assert loaded.model == learner.model and loaded.num_threads == 1
    assert_same_state(loaded, learner)


def test_a_file_whose_kind_is_not_a_name_is_a_value_error(tmp_path):
    io.write_archive(tmp_path / "odd.npz", {"kind": ["MetaSGD"]}, {})
    with pytest.raises(ValueError, match="unknown learner kind"):
        mf.load(tmp_path / "odd.npz")


# ------------------------------------------------------------ RL training loop paths
def test_rl_checkpoint_and_resume_is_bit_identical(tmp_path):
    straight = tiny("metasgd-rl")
    train(straight, 6)
    checkpoint = tmp_path / "rl.npz"
    interrupted = tiny("metasgd-rl")
    train(interrupted, 5, checkpoint=checkpoint, checkpoint_every=2)
    resumed = mf.load(checkpoint)
    assert resumed.iteration == 4  # the last multiple of checkpoint_every
    train(resumed, 2)
    assert_same_state(resumed, straight)


def test_rl_divergence_raises_unchanged_or_skips_the_batch(tmp_path):
    learner = tiny("metasgd-rl")
    train(learner, 2)
    alpha = learner.alpha
    learner.alpha = np.full(alpha.size, 1e30)  # the adapted policy's loss overflows
    learner.save(tmp_path / "before.npz")
    before = mf.load(tmp_path / "before.npz")
    with pytest.raises(mf.TrainingDivergedError, match="meta-iteration 2"):
        train(learner, 2)
    assert_same_state(learner, before)

    history = train(learner, 2, on_divergence="skip")
    assert learner.iteration == 4 and np.all(np.isnan(history))
    np.testing.assert_array_equal(learner.theta, before.theta)  # skipped: no update
    assert learner._impl.get_optimizer_state()[2] == before._impl.get_optimizer_state()[2]
    learner.alpha = alpha
    train(learner, 1)
    assert learner.iteration == 5 and np.isfinite(learner.history[-1])
    assert np.isnan(learner.history[2:4]).all() and np.isfinite(learner.history[[0, 1, 4]]).all()


# ------------------------------------------------------ supervised: sampler == meta_step
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kind", ["metasgd", "reptile"])
def test_fit_on_a_sampler_equals_meta_steps_on_the_same_batches(kind, threads):
    def sampler(num_tasks, rng):
        return SINE.sample(num_tasks, seed=int(rng.integers(1 << 31)), dtype="float32")

    fitted, stepped = tiny(kind, seed=5, num_threads=threads), tiny(kind, seed=5, num_threads=threads)
    history = fitted.fit(sampler, iterations=5, meta_batch=3, progress=False)
    for iteration in range(5):
        stepped.meta_step(sampler(3, np.random.default_rng([5, iteration])))  # the rng fit seeds
    assert_same_state(fitted, stepped)
    np.testing.assert_array_equal(history, stepped.history)


# ------------------------------------------------------------- the Python meta-optimizer
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_python_meta_optimizer_matches_the_reference_adam_and_sgd(dtype, rng):
    params = rng.normal(size=6).astype(dtype)
    adam = _optimizers.MetaOptimizer("adam", 6, dtype, 1e-2, (0.9, 0.999), 1e-8)
    sgd = _optimizers.MetaOptimizer("sgd", 6, dtype, 1e-2, (0.9, 0.999), 1e-8)
    expected_adam, state, expected_sgd = params, (np.zeros(6, dtype), np.zeros(6, dtype), 0), params
    got_adam = got_sgd = params
    for _ in range(3):
        grad = rng.normal(size=6).astype(dtype)
        expected_adam, state = reference.adam_update(expected_adam, grad, state, 1e-2, 0.9, 0.999, 1e-8)
        expected_adam = expected_adam.astype(dtype)
        state = (state[0].astype(dtype), state[1].astype(dtype), state[2])
        expected_sgd = reference.sgd_update(expected_sgd, grad, 1e-2).astype(dtype)
        got_adam, got_sgd = adam.update(got_adam, grad), sgd.update(got_sgd, grad)
    np.testing.assert_array_equal(got_adam, expected_adam)
    np.testing.assert_array_equal(got_sgd, expected_sgd)
    for got, expected in zip(adam.state, state):
        np.testing.assert_array_equal(got, expected)
    assert sgd.state[2] == 3
    assert adam.update(got_adam, np.full(6, np.inf, dtype)) is None and adam.state[2] == 3


# ---------------------------------------------------------------------- import structure
def test_import_metafast_leaves_the_reference_unimported_until_used():
    script = ("import sys, metafast as mf; assert 'metafast.reference' not in sys.modules; "
              "mf.reference.adam_update; assert 'metafast.reference' in sys.modules")
    subprocess.run([sys.executable, "-c", script], check=True)


def test_import_metafast_never_needs_mpi():
    script = ("import sys, metafast, metafast.cli, metafast.distributed; "
              "assert 'mpi4py' not in sys.modules, 'mpi4py imported'")
    subprocess.run([sys.executable, "-c", script], check=True)


def module_name(path: Path) -> str:
    parts = ("metafast", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports anywhere (in functions too): import
    statements, and importlib.import_module calls with a literal name."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def resolve(target: str, level: int) -> str:
        if not level:
            return target
        base = package.rsplit(".", level - 1)[0] if level > 1 else package
        return f"{base}.{target}" if target else base

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = resolve(node.module or "", node.level)
            found.update(f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                         for alias in node.names)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)):
            target = node.args[0].value
            found.add(resolve(target.lstrip("."), len(target) - len(target.lstrip("."))))
    return {module for module in found if module in modules and module != name}


def import_graph() -> dict[str, set[str]]:
    """Each Python module of the package and the package's Python modules it imports."""
    paths = sorted(PACKAGE.rglob("*.py"))
    # Stubs name the compiled modules, so that ``from . import _core`` is not read as an
    # import of the package's __init__.
    names = {module_name(path) for path in paths} | {module_name(path) for path in PACKAGE.rglob("*.pyi")}
    return {module_name(path): imported_modules(path, names) & {module_name(p) for p in paths} for path in paths}


def test_the_package_import_graph_has_no_cycle():
    graph = import_graph()
    assert "metafast.meta_gradient" in graph["metafast.meta_sgd"]  # the parser sees the imports
    assert "metafast.reference" in graph["metafast"]  # and the lazy one
    state: dict[str, str] = {}  # "open" while on the current path, "done" after

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                pytest.fail("import cycle: " + " -> ".join(path[path.index(target):] + [module, target]))
            if target not in state:
                visit(target, path + [module])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_production_code_never_imports_the_reference():
    graph = import_graph()
    importers = {module for module, targets in graph.items()
                 if any(t == "metafast.reference" or t.startswith("metafast.reference.") for t in targets)
                 and not module.startswith("metafast.reference")}
    assert importers == {"metafast"}  # only the package's lazy attribute


# ------------------------------------------------------------------ the hierarchy
COMMON = {"model", "dtype", "seed", "num_threads", "iteration", "meta_batch", "history", "theta", "fit", "save"}
SUPERVISED = COMMON | {"loss", "tasks", "tasks_config", "meta_step", "adapt", "predict", "evaluate", "export_onnx"}
META_GRADIENT = SUPERVISED | {"inner_steps", "first_order", "meta_optimizer", "meta_lr", "adam_betas", "adam_eps",
                              "clip_grad_norm", "init", "meta_gradient"}
PUBLIC_ATTRIBUTES = {
    "MetaSGD": META_GRADIENT | {"alpha", "alpha_lr", "alpha_init", "alpha_per_step"},
    "MAML": META_GRADIENT | {"inner_lr"},
    "Reptile": SUPERVISED | {"inner_optimizer", "inner_lr", "inner_epochs", "inner_batch", "epsilon", "epsilon_final",
                             "adam_betas", "adam_eps", "reset_optimizer", "shuffle"},
    "MetaSGDRL": COMMON | {"alpha", "alpha_lr", "env", "policy", "adapt", "evaluate", "inner_trajectories", "gamma",
                           "alpha_init", "log_std_init", "first_order", "normalize_advantages", "meta_optimizer",
                           "meta_lr", "adam_betas", "adam_eps", "inner_steps", "gae_lambda", "init", "max_kl",
                           "cg_iterations", "cg_damping", "line_search_steps", "line_search_ratio"},
}
CLASSES = {"MetaSGD": mf.MetaSGD, "MAML": mf.MAML, "Reptile": mf.Reptile, "MetaSGDRL": mf.rl.MetaSGDRL}


@pytest.mark.parametrize("name", list(PUBLIC_ATTRIBUTES))
def test_every_learner_has_exactly_its_public_attributes(name):
    learner = CLASSES[name](mf.MLP([2, 4, 2] if name == "MetaSGDRL" else [1, 4, 1]), num_threads=1)
    assert {attribute for attribute in dir(learner) if not attribute.startswith("_")} == PUBLIC_ATTRIBUTES[name]


@pytest.mark.parametrize("name", list(CLASSES))
def test_every_constructor_argument_reads_back(name):
    parameters = inspect.signature(CLASSES[name]).parameters
    assert set(parameters) <= PUBLIC_ATTRIBUTES[name]
    learner = CLASSES[name](mf.MLP([2, 4, 2] if name == "MetaSGDRL" else [1, 4, 1]))
    for argument, parameter in parameters.items():  # those with a default of their own read it back
        if parameter.default not in (None, inspect.Parameter.empty):
            assert getattr(learner, argument) == parameter.default, argument


def test_maml_and_meta_sgd_are_siblings():
    from metafast.meta_gradient import MetaGradientLearner

    assert not issubclass(mf.MAML, mf.MetaSGD) and not issubclass(mf.MetaSGD, mf.MAML)
    assert issubclass(mf.MAML, MetaGradientLearner) and issubclass(mf.MetaSGD, MetaGradientLearner)
