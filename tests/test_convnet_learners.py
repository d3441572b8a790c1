"""Meta-SGD, MAML and Reptile on a ConvNet: exact meta-gradients (central finite differences of
the meta-objective written here from the network's own loss and gradient, through 1, 2 and 5
inner steps), bit-identical results at any thread count, save/load/resume and pickle/copy bit
for bit, hostile files naming absurd architectures, wrong image shapes, predictions with the
support set's batch statistics (against a hand computation), learning on held-out digit
classes, and the memory checks before a pass that cannot fit."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import metafast as mf
from conftest import COPIERS
from hostile_files import config_of, saved_entries, with_config, write

# ----------------------------------------------------------------------------- helpers


def random_batch(net, loss, tasks=2, support=6, query=6, seed=0):
    """A float64 TaskBatch of random images: labels 0, 1, 2, ... cycling (softmax_ce) or
    Gaussian targets (mse)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(tasks, support + query, *net.input_shape))
    if loss == "softmax_ce":
        y = np.tile(np.arange(support + query) % net.outputs, (tasks, 1))
    else:
        y = rng.normal(size=(tasks, support + query, net.outputs))
    return mf.TaskBatch(x[:, :support], y[:, :support], x[:, support:], y[:, support:])


def adapted_query_loss(net, loss, theta, alphas, batch):
    """The meta-objective, independently of the learners: the mean over tasks of L_Q(theta_J)
    after theta_{j+1} = theta_j - alphas[j] * grad L_S(theta_j), from the network's own loss and
    gradient (themselves checked against the NumPy reference and finite differences)."""
    total = 0.0
    for t in range(batch.num_tasks):
        adapted = theta
        for alpha in alphas:
            adapted = adapted - alpha * net.loss_and_grad(adapted, batch.x_support[t], batch.y_support[t], loss)[1]
        total += net.loss(adapted, batch.x_query[t], batch.y_query[t], loss)
    return total / batch.num_tasks


def central_differences(f, x, h=1e-6):
    out = np.empty_like(x)
    for i in range(x.size):
        up, down = x.copy(), x.copy()
        up.flat[i] += h
        down.flat[i] -= h
        out.flat[i] = (f(up) - f(down)) / (2 * h)
    return out


def assert_gradient(actual, expected):
    """Within rtol 1e-5 of each entry or of the largest one (a bias before batch norm has a
    gradient of 0 up to rounding)."""
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-7 * max(1.0, float(np.max(np.abs(expected)))))


def perturbed(learner, seed=3):
    """The learner with theta moved off its initialisation (non-zero biases and shifts, scales
    away from 1), so that every path of the gradient is exercised."""
    rng = np.random.default_rng(seed)
    learner.theta = learner.theta + 0.1 * rng.normal(size=learner.theta.size)
    return learner


def image_family(input_shape=(1, 6, 6), rows=40, classes=5, ways=3, shots=2, query=3, seed=0):
    """A Classification family of random images, `rows` of them in `classes` classes."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, *input_shape))
    return mf.tasks.Classification(x, np.arange(rows) % classes, ways=ways, shots=shots, query=query)


def full_state(learner):
    """Everything a saved file holds of the learner's state."""
    return learner._state()


def assert_same_state(a, b):
    first, second = full_state(a), full_state(b)
    assert first.keys() == second.keys()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)


def run_child(code: str, memory_limit: int = 3 * 2**30, timeout: float = 120) -> str:
    """The stdout of `code` run by a fresh interpreter whose address space is limited, so that
    a request that should have been refused fails (MemoryError) instead of taking the machine."""
    script = textwrap.dedent(f"""
        import os, resource
        if "libasan" not in os.environ.get("LD_PRELOAD", ""):  # AddressSanitizer reserves terabytes
            resource.setrlimit(resource.RLIMIT_AS, ({memory_limit}, {memory_limit}))
    """) + textwrap.dedent(code)
    environment = dict(os.environ, OMP_NUM_THREADS="1", MALLOC_ARENA_MAX="2")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout,
                          env=environment)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


# ------------------------------------------------------------- 1. exact meta-gradients

# Every setting the brief names appears: batch norm with and without scale and none at all,
# max-pool, stride 1 and 2, padding valid and same, both heads, softmax_ce and mse.
CONFIGS = {
    "s1-valid-bnscale-flatten-tanh-softmax": (dict(input_shape=(1, 6, 6), channels=(3,), stride=1, padding="valid",
                                                   batch_norm_scale=True, head="flatten", activation="tanh"),
                                              "softmax_ce"),
    "s2-same-bn-average-relu-2blocks-mse": (dict(input_shape=(2, 7, 5), channels=(3, 2), stride=2, padding="same",
                                                 activation="relu"), "mse"),
    "s1-same-max-bnscale-average-sigmoid-softmax": (dict(input_shape=(1, 6, 6), channels=(3,), stride=1,
                                                         padding="same", pool="max", batch_norm_scale=True,
                                                         activation="sigmoid"), "softmax_ce"),
    "s2-valid-nobn-flatten-tanh-mse": (dict(input_shape=(2, 7, 5), channels=(3,), stride=2, padding="valid",
                                            batch_norm=False, head="flatten", activation="tanh"), "mse"),
}
STEPS = [1, 2, 5]


def convnet(name):
    settings, loss = CONFIGS[name]
    return mf.ConvNet(outputs=3, **settings), loss


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("name", CONFIGS)
def test_meta_sgd_meta_gradient_matches_finite_differences(name, steps):
    net, loss = convnet(name)
    learner = perturbed(mf.MetaSGD(net, loss=loss, inner_steps=steps, alpha_init=(0.02, 0.2), dtype="float64", seed=1))
    batch = random_batch(net, loss)
    theta, alpha = learner.theta, learner.alpha
    assert np.ptp(alpha) > 0.1  # a non-uniform alpha: its entries are told apart
    value, g_theta, g_alpha = learner.meta_gradient(batch)
    assert g_theta.shape == g_alpha.shape == (net.num_params,)
    assert value == pytest.approx(adapted_query_loss(net, loss, theta, [alpha] * steps, batch), rel=1e-12)
    assert_gradient(g_theta, central_differences(lambda t: adapted_query_loss(net, loss, t, [alpha] * steps, batch),
                                                 theta))
    assert_gradient(g_alpha, central_differences(lambda a: adapted_query_loss(net, loss, theta, [a] * steps, batch),
                                                 alpha))
    # meta_gradient changes nothing.
    np.testing.assert_array_equal(learner.theta, theta)
    np.testing.assert_array_equal(learner.alpha, alpha)


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("name", ["s1-same-max-bnscale-average-sigmoid-softmax", "s2-valid-nobn-flatten-tanh-mse"])
def test_per_step_alpha_meta_gradient_matches_finite_differences(name, steps):
    net, loss = convnet(name)
    learner = perturbed(mf.MetaSGD(net, loss=loss, inner_steps=steps, alpha_per_step=True, alpha_init=(0.02, 0.2),
                                   dtype="float64", seed=2))
    batch = random_batch(net, loss, seed=1)
    theta, alphas = learner.theta, learner.alpha
    assert alphas.shape == (steps, net.num_params)
    value, g_theta, g_alpha = learner.meta_gradient(batch)
    assert g_alpha.shape == alphas.shape
    assert value == pytest.approx(adapted_query_loss(net, loss, theta, alphas, batch), rel=1e-12)
    assert_gradient(g_theta, central_differences(lambda t: adapted_query_loss(net, loss, t, alphas, batch), theta))
    assert_gradient(g_alpha, central_differences(lambda a: adapted_query_loss(net, loss, theta, a, batch), alphas))


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("name", CONFIGS)
def test_maml_meta_gradient_matches_finite_differences(name, steps):
    net, loss = convnet(name)
    inner_lr = 0.15
    learner = perturbed(mf.MAML(net, loss=loss, inner_lr=inner_lr, inner_steps=steps, dtype="float64", seed=4))
    batch = random_batch(net, loss, seed=2)
    theta = learner.theta
    value, g_theta = learner.meta_gradient(batch)
    alphas = [np.full(net.num_params, inner_lr)] * steps
    assert value == pytest.approx(adapted_query_loss(net, loss, theta, alphas, batch), rel=1e-12)
    assert_gradient(g_theta, central_differences(lambda t: adapted_query_loss(net, loss, t, alphas, batch), theta))


def first_order_gradients(net, loss, theta, alphas, batch):
    """First order by its definition (docs/math.md, section 1): the query gradient at theta_J
    stands for the gradient with respect to theta, and each step's alpha gradient is
    -grad L_S(theta_j) * grad L_Q(theta_J); means over the tasks."""
    g_theta, g_alphas = np.zeros_like(theta), np.zeros((len(alphas), theta.size))
    for t in range(batch.num_tasks):
        adapted, support_grads = theta, []
        for alpha in alphas:
            support_grads.append(net.loss_and_grad(adapted, batch.x_support[t], batch.y_support[t], loss)[1])
            adapted = adapted - alpha * support_grads[-1]
        query_grad = net.loss_and_grad(adapted, batch.x_query[t], batch.y_query[t], loss)[1]
        g_theta += query_grad / batch.num_tasks
        g_alphas -= np.array(support_grads) * query_grad / batch.num_tasks
    return g_theta, g_alphas


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("kind", ["metasgd", "metasgd-per-step", "maml"])
def test_first_order_meta_gradient_follows_its_definition(kind, steps):
    net, loss = convnet("s1-valid-bnscale-flatten-tanh-softmax")
    settings = dict(inner_steps=steps, dtype="float64", seed=5)
    if kind == "maml":
        make = lambda first_order: mf.MAML(net, loss=loss, inner_lr=0.2, first_order=first_order, **settings)
    else:
        make = lambda first_order: mf.MetaSGD(net, loss=loss, alpha_init=(0.05, 0.3), first_order=first_order,
                                             alpha_per_step=kind == "metasgd-per-step", **settings)
    learner, exact = perturbed(make(True)), perturbed(make(False))
    batch = random_batch(net, loss, seed=3)
    alpha = np.full(net.num_params, 0.2) if kind == "maml" else learner.alpha
    alphas = list(alpha) if kind == "metasgd-per-step" else [alpha] * steps
    expected_theta, expected_alphas = first_order_gradients(net, loss, learner.theta, alphas, batch)
    got = learner.meta_gradient(batch)
    assert got[0] == exact.meta_gradient(batch)[0]  # the same loss: only its gradient is approximated
    np.testing.assert_allclose(got[1], expected_theta, rtol=1e-10, atol=1e-14)
    # ... and it is an approximation: the Hessian terms it drops are not zero here.
    assert not np.allclose(got[1], exact.meta_gradient(batch)[1], rtol=1e-3, atol=0)
    if kind == "metasgd":
        np.testing.assert_allclose(got[2], expected_alphas.sum(axis=0), rtol=1e-10, atol=1e-14)
    elif kind == "metasgd-per-step":
        np.testing.assert_allclose(got[2], expected_alphas, rtol=1e-10, atol=1e-14)
    else:
        assert len(got) == 2


# ------------------------------------------------------------------ 2. thread bit-identity

# conftest sets METAFAST_TEAMS=exact: a call asking for 2 threads gets a team of 2 even on a
# busy 2-core machine, so the parallel paths really run.
LEARNERS = {
    "metasgd": lambda threads, **kw: mf.MetaSGD(mf.ConvNet((1, 6, 6), channels=(4,), outputs=3, stride=1, pool="max"),
                                                loss="softmax_ce", inner_steps=2, alpha_per_step=True, meta_lr=1e-2,
                                                seed=5, num_threads=threads, **kw),
    "maml": lambda threads, **kw: mf.MAML(mf.ConvNet((1, 6, 6), channels=(3, 2), outputs=3, batch_norm_scale=True,
                                                     head="flatten"),
                                          loss="softmax_ce", inner_lr=0.1, inner_steps=2, clip_grad_norm=1.0,
                                          meta_lr=1e-2, seed=5, num_threads=threads, **kw),
    "reptile": lambda threads, **kw: mf.Reptile(mf.ConvNet((1, 6, 6), channels=(4,), outputs=3, stride=1,
                                                           padding="valid"),
                                                loss="softmax_ce", inner_epochs=2, inner_batch=4, shuffle=True,
                                                reset_optimizer=True, seed=5, num_threads=threads, **kw),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", LEARNERS)
def test_fit_gives_the_same_bits_at_any_thread_count(kind, dtype):
    family = image_family()
    one, two = LEARNERS[kind](1, dtype=dtype), LEARNERS[kind](2, dtype=dtype)
    assert (one.num_threads, two.num_threads) == (1, 2)
    for learner in (one, two):
        learner.fit(family, iterations=6, meta_batch=5, progress=False)
    assert one.iteration == 6 and np.all(np.isfinite(one.history))
    assert not np.array_equal(one.theta, LEARNERS[kind](1, dtype=dtype).theta)  # it trained
    assert_same_state(one, two)
    batch = family.sample(5, seed=9, dtype=dtype)
    for a, b in zip(one.evaluate(batch, steps=(0, 1)).task_losses.T, two.evaluate(batch, steps=(0, 1)).task_losses.T):
        np.testing.assert_array_equal(a, b)
    if kind != "reptile":
        for a, b in zip(one.meta_gradient(batch), two.meta_gradient(batch)):
            np.testing.assert_array_equal(a, b)


# -------------------------------------------------------------- 3. save, load, pickle

RESUMABLE = {
    **LEARNERS,
    "metasgd-float64-sgd": lambda threads, **kw: mf.MetaSGD(
        mf.ConvNet((2, 7, 5), channels=(3, 2), outputs=3, stride=1, padding="same", pool="max", activation="tanh"),
        loss="softmax_ce", meta_optimizer="sgd", meta_lr=0.05, dtype="float64", seed=2, num_threads=threads, **kw),
}


def family_for(learner):
    return image_family(learner.model.input_shape, seed=1)


@pytest.mark.parametrize("kind", RESUMABLE)
def test_save_load_and_resume_equals_the_uninterrupted_run(kind, tmp_path):
    family = family_for(RESUMABLE[kind](1))
    whole = RESUMABLE[kind](1)
    whole.fit(family, iterations=7, meta_batch=3, progress=False)
    half = RESUMABLE[kind](2)
    half.fit(family, iterations=3, meta_batch=3, progress=False)
    half.save(tmp_path / "half.npz")
    loaded = mf.load(tmp_path / "half.npz", num_threads=1)
    assert type(loaded) is type(whole)
    assert isinstance(loaded.model, mf.ConvNet) and loaded.model == half.model and loaded.model is not half.model
    assert repr(loaded.model) == repr(half.model)
    assert loaded.meta_batch == 3 and loaded.tasks_config == family._config()
    assert_same_state(loaded, half)
    loaded.fit(family, iterations=4, meta_batch=3, progress=False)
    assert_same_state(loaded, whole)
    # The file of the resumed run is the file of the uninterrupted one, entry for entry.
    loaded.save(tmp_path / "resumed.npz")
    whole.save(tmp_path / "whole.npz")
    with np.load(tmp_path / "resumed.npz") as resumed, np.load(tmp_path / "whole.npz") as expected:
        assert resumed.files == expected.files
        for name in expected.files:
            np.testing.assert_array_equal(resumed[name], expected[name], err_msg=name)


@pytest.mark.parametrize("how", list(COPIERS))
@pytest.mark.parametrize("kind", LEARNERS)
def test_a_copy_of_a_trained_convnet_learner_continues_bit_for_bit(kind, how):
    family = family_for(LEARNERS[kind](1))
    learner = LEARNERS[kind](1)
    learner.fit(family, iterations=2, meta_batch=3, progress=False)
    copied = COPIERS[how](learner)
    assert type(copied) is type(learner) and copied is not learner
    assert copied.model == learner.model and isinstance(copied.model, mf.ConvNet)
    assert copied.tasks == learner.tasks  # the data-set family travels with the pickle
    assert_same_state(copied, learner)
    copied.num_threads = 2
    learner.fit(family, iterations=3, meta_batch=3, progress=False)
    assert not np.array_equal(copied.theta, learner.theta)  # independent: the original moved alone
    copied.fit(copied.tasks, iterations=3, meta_batch=3, progress=False)
    assert_same_state(copied, learner)


@pytest.mark.parametrize("how", list(COPIERS))
def test_a_convnet_copies_and_equals_itself(how):
    net = mf.ConvNet((2, 9, 9), channels=(3, 2), outputs=4, kernel_size=2, stride=1, padding="valid", pool="max",
                     batch_norm_scale=True, batch_norm_eps=1e-3, activation="sigmoid", head="flatten", bias=False)
    copied = COPIERS[how](net)
    assert copied == net and hash(copied) == hash(net) and repr(copied) == repr(net)
    assert copied != mf.ConvNet((2, 9, 9), channels=(3, 2), outputs=4, kernel_size=2, stride=1, padding="valid",
                                pool="max", batch_norm_scale=True, batch_norm_eps=1e-3, activation="sigmoid",
                                head="flatten", bias=True)
    theta = net.init(seed=1)
    x = np.random.default_rng(0).normal(size=(3, 2, 9, 9))
    np.testing.assert_array_equal(copied.forward(theta, x), net.forward(theta, x))


INTERRUPTED = textwrap.dedent("""
    import sys, time
    import numpy as np
    import metafast as mf

    def make():
        return mf.MAML(mf.ConvNet((1, 6, 6), channels=(4,), outputs=3, stride=1, pool="max"), loss="softmax_ce",
                       inner_steps=2, seed=1, num_threads=2)

    rng = np.random.default_rng(0)
    family = mf.tasks.Classification(rng.normal(size=(40, 1, 6, 6)), np.arange(40) % 5, ways=3, shots=2, query=3)
    learner = make()
    print("ready", flush=True)
    try:
        learner.fit(family, iterations=10**9, meta_batch=6, progress=False)
    except KeyboardInterrupt:
        stopped = time.time()
        assert learner.iteration == len(learner.history) > 0
        replay = make()  # the parameters are those of the last recorded iteration
        replay.fit(family, iterations=learner.iteration, meta_batch=6, progress=False)
        assert np.array_equal(replay.theta, learner.theta)
        learner.fit(family, iterations=3, meta_batch=6, progress=False)
        print("interrupted", stopped, flush=True)
        sys.exit(0)
    sys.exit(1)
""")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_stops_a_convnet_fit_at_a_consistent_iteration():
    process = subprocess.Popen([sys.executable, "-c", INTERRUPTED], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    sent = time.time()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    word, stopped = out.split()
    assert word == "interrupted"
    assert float(stopped) - sent < 0.5  # chunks last about a tenth of a second


# ---------------------------------------------------------------------- 4. hostile files

MEMORY_LIMIT = 2 * 2**30
LOAD_CHILD = """
import json, sys, time
import metafast as mf
results = []
for path in sys.argv[1:]:
    started = time.perf_counter()
    try:
        mf.load(path, num_threads=1)
        outcome = "loaded"
    except BaseException as error:  # which one is the test's to judge
        outcome = f"{type(error).__name__}: {error}"
    results.append([outcome, time.perf_counter() - started])
print(json.dumps(results))
"""


def loads_in_child(paths):
    """What loading each file does in a child limited to 2 GiB of address space."""
    code = LOAD_CHILD.replace("sys.argv[1:]", repr([str(p) for p in paths]))
    return [tuple(item) for item in json.loads(run_child(code, MEMORY_LIMIT, timeout=60))]


def convnet_entries(folder):
    family = image_family()
    learner = mf.MetaSGD(mf.ConvNet((1, 6, 6), channels=(3,), outputs=3), loss="softmax_ce", num_threads=1)
    learner.fit(family, iterations=2, meta_batch=2, progress=False)
    return saved_entries(folder, learner)


# (the model's config as the file has it) -> its replacement, and what the refusal says
HOSTILE = {
    "channels 2**24 each": (lambda m: dict(m, channels=[2**24, 2**24]), "has a damaged config"),
    # Its one-row pass (8.75 GiB in float32) fits some machines: then theta's length refuses it.
    "one block of 2**24 channels": (lambda m: dict(m, channels=[2**24]),
                                    ("values in theta, but its model", "is too large to load")),
    "input_shape (1, 2**24, 2**24)": (lambda m: dict(m, input_shape=[1, 2**24, 2**24]), "has a damaged config"),
    "5000 blocks": (lambda m: dict(m, channels=[64] * 5000, stride=1), "has a damaged config"),
    "20000 blocks": (lambda m: dict(m, channels=[1] * 20000, stride=1), "has a damaged config"),
    "an unknown key": (lambda m: dict(m, dropout=0.5), "unexpected keyword argument 'dropout'"),
    "an MLP's sizes in a ConvNet": (lambda m: dict(m, sizes=[36, 3]), "unexpected keyword argument 'sizes'"),
    "channels an integer": (lambda m: dict(m, channels=64), "has a damaged config"),
    "channels a string": (lambda m: dict(m, channels="64"), "has a damaged config"),
    "channels of floats": (lambda m: dict(m, channels=[3.0]), "has a damaged config"),
    "channels beyond 64 bits": (lambda m: dict(m, channels=[2**70]), "has a damaged config"),
    "no channels": (lambda m: dict(m, channels=[]), "has a damaged config"),
    "input_shape a string": (lambda m: dict(m, input_shape="1x6x6"), "has a damaged config"),
    "input_shape of two sizes": (lambda m: dict(m, input_shape=[6, 6]), "has a damaged config"),
    "a kernel of 2**40": (lambda m: dict(m, kernel_size=2**40), "has a damaged config"),
    "2**40 outputs": (lambda m: dict(m, outputs=2**40), "has a damaged config"),
    "an unknown network type": (lambda m: dict(m, type="Transformer"), "has a damaged config"),
    "a geometry that shrinks to nothing": (lambda m: dict(m, channels=[3] * 20, padding="valid"),
                                           "has a damaged config"),
}


def test_hostile_convnet_configs_are_refused_at_once_in_bounded_memory(tmp_path):
    entries = convnet_entries(tmp_path)
    config = config_of(entries)
    assert config["model"]["type"] == "ConvNet"
    paths = [write(tmp_path / "intact.npz", entries)]  # the control: the child loads a sound file
    for index, (change, _) in enumerate(HOSTILE.values()):
        paths.append(write(tmp_path / f"hostile-{index}.npz",
                           with_config(entries, dict(config, model=change(config["model"])))))
    # The wide block again, its arrays declared to the size its model implies (data absent).
    wide = mf.ConvNet((1, 6, 6), channels=(2**24,), outputs=3).num_params
    declared = {name: dict(shape=(factor * wide,)) for name, factor in
                (("theta", 1), ("alpha", 1), ("optimizer_m", 2), ("optimizer_v", 2))}
    paths.append(write(tmp_path / "wide-declared.npz", with_config(
        entries, dict(config, model=dict(config["model"], channels=[2**24]))), headers=declared))
    results = loads_in_child(paths)
    assert len(results) == len(paths) and results[0][0] == "loaded"
    expected = [fragment for _, fragment in HOSTILE.values()] + [("declares", "is too large to load")]
    for path, fragments, (outcome, seconds) in zip(paths[1:], expected, results[1:]):
        assert outcome.startswith(f"ValueError: {path} "), outcome
        fragments = (fragments,) if isinstance(fragments, str) else fragments
        assert any(fragment in outcome for fragment in fragments), outcome
        assert seconds < 1.0, f"{path}: refused after {seconds:.2f} s"


# ------------------------------------------------------------------------- 5. bad shapes

NET_SHAPE = (2, 7, 5)
Y = np.arange(6) % 3


def shape_learner(kind):
    net = mf.ConvNet(NET_SHAPE, channels=(3,), outputs=3, stride=1, padding="valid")
    make = {"metasgd": mf.MetaSGD, "maml": mf.MAML, "reptile": mf.Reptile}[kind]
    learner = make(net, loss="softmax_ce", dtype="float64", seed=0, num_threads=1)
    learner.fit(image_family(NET_SHAPE), iterations=2, meta_batch=2, progress=False)  # a state worth keeping
    return learner


def images(*shape):
    return np.random.default_rng(0).normal(size=shape)


def expected(name, got, lead="rows"):
    return re.escape(f"{name} must have shape ({lead}, 2, 7, 5) or ({lead}, 70) for input_shape (C, H, W) = "
                     f"(2, 7, 5), got {got}")


def bad_batch(x_support, x_query):
    y = np.tile(Y, (x_support.shape[0], 1))
    return mf.TaskBatch(x_support, y, x_query, y)


BAD_SHAPES = {
    "adapt, C and W swapped": (lambda l: l.adapt(images(6, 5, 7, 2), Y), expected("x_support", (6, 5, 7, 2))),
    "adapt, H and W swapped": (lambda l: l.adapt(images(6, 2, 5, 7), Y), expected("x_support", (6, 2, 5, 7))),
    "adapt, flat rows one short": (lambda l: l.adapt(images(6, 69), Y), expected("x_support", (6, 69))),
    "adapt, no channel axis": (lambda l: l.adapt(images(6, 7, 5), Y), expected("x_support", (6, 7, 5))),
    "predict, wrong C": (lambda l: l.predict(images(6, 1, 7, 5)), expected("x", (6, 1, 7, 5))),
    "predict, flat rows one long": (lambda l: l.predict(images(6, 71)), expected("x", (6, 71))),
    "predict with support statistics, wrong x_support": (
        lambda l: l.predict(images(6, 2, 7, 5), batch_norm="support", x_support=images(6, 2, 7, 4)),
        expected("x_support", (6, 2, 7, 4))),
    "predict with support statistics, wrong x": (
        lambda l: l.predict(images(6, 3, 7, 5), batch_norm="support", x_support=images(6, 2, 7, 5)),
        expected("x", (6, 3, 7, 5))),
    "meta_step, support images of the wrong size": (
        lambda l: l.meta_step(bad_batch(images(2, 6, 2, 7, 4), images(2, 6, 2, 7, 4))),
        expected("x_support", (2, 6, 2, 7, 4), "tasks, rows")),
    "meta_step, flat rows of the wrong width": (
        lambda l: l.meta_step(bad_batch(images(2, 6, 69), images(2, 6, 69))),
        expected("x_support", (2, 6, 69), "tasks, rows")),
    "fit on a batch of images of the wrong size": (
        lambda l: l.fit(bad_batch(images(2, 6, 2, 5, 7), images(2, 6, 2, 5, 7)), iterations=1, meta_batch=2,
                        progress=False),
        expected("x_support", (2, 6, 2, 5, 7), "tasks, rows")),
    "evaluate on a batch of images of the wrong size": (
        lambda l: l.evaluate(bad_batch(images(2, 6, 1, 7, 5), images(2, 6, 1, 7, 5)), steps=(0, 1)),
        expected("x_support", (2, 6, 1, 7, 5), "tasks, rows")),
    # A Classification family keeps the shape of its images (README: "Classification takes
    # (n, C, H, W) features"), which the model checks.
    "fit on a Classification family of smaller images": (
        lambda l: l.fit(image_family((1, 7, 5)), iterations=1, meta_batch=2, progress=False),
        re.escape("the tasks' rows have shape (1, 7, 5), but the model takes images of input_shape (C, H, W) = "
                  "(2, 7, 5) (or flat rows of 70 values)")),
    "fit on a Classification family of larger images": (
        lambda l: l.fit(image_family((2, 8, 5)), iterations=1, meta_batch=2, progress=False),
        re.escape("the tasks' rows have shape (2, 8, 5), but the model takes images of input_shape (C, H, W) = "
                  "(2, 7, 5) (or flat rows of 70 values)")),
}


@pytest.mark.parametrize("kind", ["metasgd", "maml", "reptile"])
def test_wrong_image_shapes_are_refused_naming_the_shape_and_change_nothing(kind):
    learner = shape_learner(kind)
    before = full_state(learner)
    for name, (call, message) in BAD_SHAPES.items():
        with pytest.raises(ValueError, match=message):
            call(learner)
        after = full_state(learner)
        for entry in before:
            np.testing.assert_array_equal(after[entry], before[entry], err_msg=f"{name}: {entry}")
    # The same learner takes the right shapes, images and flat rows alike, with the same bits.
    x = images(6, *NET_SHAPE)
    np.testing.assert_array_equal(learner.adapt(x, Y), learner.adapt(x.reshape(6, -1), Y))
    np.testing.assert_array_equal(learner.predict(x), learner.predict(x.reshape(6, -1)))


def test_a_classification_family_of_images_of_another_shape_is_refused_naming_the_shape():
    learner = shape_learner("metasgd")
    for shape in ((2, 5, 7), (1, 7, 5)):  # the same C·H·W transposed; a smaller image
        with pytest.raises(ValueError, match=re.escape("(2, 7, 5)")):
            learner.fit(image_family(shape), iterations=1, meta_batch=2, progress=False)


FORWARD_SHAPES = {
    (4, 2, 7, 4): "x must have shape (rows, 2, 7, 5) for input_shape (C, H, W) = (2, 7, 5), got (4, 2, 7, 4)",
    (4, 1, 7, 5): "x must have shape (rows, 2, 7, 5) for input_shape (C, H, W) = (2, 7, 5), got (4, 1, 7, 5)",
    (4, 71): "x as flat rows must have shape (rows, 70): input_shape (C, H, W) = (2, 7, 5) in C order, got (4, 71)",
    (4, 2, 35): "x must have shape (rows, 2, 7, 5) or (rows, 70), got (4, 2, 35)",
    (4, 1, 2, 7, 5): "x must have shape (rows, 2, 7, 5) or (rows, 70), got (4, 1, 2, 7, 5)",
}


@pytest.mark.parametrize("shape", FORWARD_SHAPES, ids=str)
def test_convnet_forward_refuses_a_wrong_shape_naming_the_expected_one(shape):
    net = mf.ConvNet(NET_SHAPE, channels=(3,), outputs=3)
    theta = net.init()
    for call in (lambda: net.forward(theta, images(*shape)),
                 lambda: net.loss_and_grad(theta, images(*shape), np.zeros(4, int), "softmax_ce")):
        with pytest.raises(ValueError, match=re.escape(FORWARD_SHAPES[shape])):
            call()


# --------------------------------------------------- 6. predictions with support statistics


def predict_learner(kind="metasgd", batch_norm=True, **settings):
    net = mf.ConvNet((2, 7, 5), channels=(3, 2), outputs=3, stride=1, padding="same", pool="max",
                     batch_norm=batch_norm, batch_norm_scale=batch_norm, **settings)
    make = {"metasgd": mf.MetaSGD, "maml": mf.MAML, "reptile": mf.Reptile}[kind]
    return perturbed(make(net, loss="softmax_ce", dtype="float64", seed=3, num_threads=1))


@pytest.mark.parametrize("kind", ["metasgd", "maml", "reptile"])
def test_support_statistics_make_each_prediction_independent_of_the_other_rows(kind):
    learner = predict_learner(kind)
    support, x = images(9, 2, 7, 5), np.random.default_rng(1).normal(size=(8, 2, 7, 5))
    params = learner.adapt(support, np.arange(9) % 3)
    full = learner.predict(x, params, batch_norm="support", x_support=support)
    assert full.shape == (8, 3)
    for rows in ([0], [5, 2], [7, 1, 3], list(range(8))[::-1]):
        np.testing.assert_allclose(learner.predict(x[rows], params, batch_norm="support", x_support=support),
                                   full[rows], rtol=1e-12, atol=1e-14)
    # Flat rows, and a support set given as flat rows, give the same.
    np.testing.assert_allclose(learner.predict(x.reshape(8, -1), params, batch_norm="support",
                                               x_support=support.reshape(9, -1)), full, rtol=1e-12, atol=1e-14)
    # With the batch's statistics the rows are coupled: the test above could fail.
    batch = learner.predict(x, params)
    assert not np.allclose(learner.predict(x[[5, 2]], params), batch[[5, 2]], rtol=1e-6)
    # With the support set as the batch, support statistics are the batch's.
    np.testing.assert_allclose(learner.predict(support, params, batch_norm="support", x_support=support),
                               learner.predict(support, params), rtol=1e-12, atol=1e-14)
    # Other support sets give other statistics.
    assert not np.allclose(learner.predict(x, params, batch_norm="support", x_support=support[:4]), full, rtol=1e-6)


def test_without_batch_norm_both_modes_agree_and_rows_are_independent():
    learner = predict_learner(batch_norm=False)
    support, x = images(9, 2, 7, 5), np.random.default_rng(1).normal(size=(8, 2, 7, 5))
    params = learner.adapt(support, np.arange(9) % 3)
    batch = learner.predict(x, params)
    np.testing.assert_array_equal(learner.predict(x, params, batch_norm="support", x_support=support), batch)
    np.testing.assert_allclose(learner.predict(x[[3, 6]], params), batch[[3, 6]], rtol=1e-12, atol=1e-14)


def hand_predictions(net, params, x, support):
    """One block (3×3 convolution, stride 1, valid), batch norm with the support set's
    statistics (per channel over rows, height and width; biased variance), scale and shift,
    ReLU, the spatial mean, the output layer: plain NumPy, following docs/math.md section 5."""
    block, dense = net.unflatten(params)

    def convolution(images):
        windows = np.lib.stride_tricks.sliding_window_view(images, (3, 3), axis=(2, 3))  # (N, C, Ho, Wo, 3, 3)
        return np.einsum("ncijpq,ocpq->noij", windows, block["weight"]) + block["bias"][None, :, None, None]

    z_support = convolution(support)
    mean = z_support.mean(axis=(0, 2, 3))[None, :, None, None]
    sigma = np.sqrt(z_support.var(axis=(0, 2, 3)) + net.batch_norm_eps)[None, :, None, None]
    normalised = (convolution(x) - mean) / sigma
    activated = np.maximum(block["scale"][None, :, None, None] * normalised + block["shift"][None, :, None, None], 0)
    return activated.mean(axis=(2, 3)) @ dense["weight"] + dense["bias"]


@pytest.mark.parametrize("kind", ["metasgd", "reptile"])
def test_support_statistics_match_a_hand_computation(kind):
    net = mf.ConvNet((2, 7, 5), channels=(4,), outputs=3, kernel_size=3, stride=1, padding="valid", pool=None,
                     batch_norm_scale=True, activation="relu", head="average")
    make = {"metasgd": mf.MetaSGD, "reptile": mf.Reptile}[kind]
    learner = perturbed(make(net, loss="softmax_ce", dtype="float64", seed=6, num_threads=1), seed=8)
    rng = np.random.default_rng(4)
    support, x = rng.normal(size=(9, 2, 7, 5)), rng.normal(loc=0.5, scale=2.0, size=(5, 2, 7, 5))
    params = learner.adapt(support, np.arange(9) % 3)
    np.testing.assert_allclose(learner.predict(x, params, batch_norm="support", x_support=support),
                               hand_predictions(net, params, x, support), rtol=1e-11, atol=1e-13)
    # The hand computation with the batch's own statistics is batch mode's: it tells the two apart.
    np.testing.assert_allclose(learner.predict(x, params), hand_predictions(net, params, x, x), rtol=1e-11,
                               atol=1e-13)
    assert not np.allclose(hand_predictions(net, params, x, x), hand_predictions(net, params, x, support), rtol=1e-3)


@pytest.mark.parametrize("arguments, message", [
    (dict(batch_norm="x"), "batch_norm must be 'batch' or 'support', got 'x'"),
    (dict(batch_norm=None), "batch_norm must be 'batch' or 'support', got None"),
    (dict(batch_norm="support"), "batch_norm='support' needs x_support, the support set whose statistics it uses"),
    (dict(x_support=images(4, 2, 7, 5)), "x_support applies only with batch_norm='support'"),
    (dict(batch_norm="batch", x_support=images(4, 2, 7, 5)), "x_support applies only with batch_norm='support'"),
], ids=["unknown-mode", "none-mode", "support-without-x_support", "x_support-default-mode", "x_support-batch-mode"])
def test_bad_batch_norm_arguments_are_refused(arguments, message):
    learner = predict_learner()
    with pytest.raises(ValueError, match=re.escape(message)):
        learner.predict(images(4, 2, 7, 5), **arguments)


# ------------------------------------------------------------------------ 7. learning


def test_meta_sgd_on_digit_images_beats_training_from_scratch_on_held_out_classes():
    datasets = pytest.importorskip("sklearn.datasets", reason="the digits test needs scikit-learn (the test extra)")
    data = datasets.load_digits()
    x, y = (data.data / 16.0).reshape(-1, 1, 8, 8), data.target
    assert x.min() == 0.0 and x.max() == 1.0
    train = mf.tasks.Classification(x, y, ways=3, shots=5, query=5, classes=range(6))
    test = mf.tasks.Classification(x, y, ways=3, shots=5, query=5, classes=range(6, 10))
    net = mf.ConvNet((1, 8, 8), channels=(8, 8), outputs=3, stride=1, pool="max", head="flatten")
    steps = 3
    learner = mf.MetaSGD(net, loss="softmax_ce", inner_steps=steps, alpha_init=0.1, meta_lr=5e-3, seed=0,
                         num_threads=1)
    history = learner.fit(train, iterations=150, meta_batch=8, progress=False)
    assert history[-20:].mean() < 0.5 * history[:5].mean()
    episodes = test.sample(50, seed=99, dtype="float64")

    def accuracy(params, t):
        return np.mean(net.forward(params, episodes.x_query[t]).argmax(axis=1) == episodes.y_query[t])

    meta = np.array([accuracy(learner.adapt(episodes.x_support[t], episodes.y_support[t]).astype(np.float64), t)
                     for t in range(episodes.num_tasks)])
    # The same network from model.init, the same number of SGD steps on each support set, at
    # the best of several learning rates (chosen on these very tasks: the baseline's best case).
    scratch = {}
    for lr in (0.03, 0.1, 0.3, 1.0):
        accuracies = []
        for t in range(episodes.num_tasks):
            theta = net.init(seed=100 + t)
            for _ in range(steps):
                theta = theta - lr * net.loss_and_grad(theta, episodes.x_support[t], episodes.y_support[t],
                                                       "softmax_ce")[1]
            accuracies.append(accuracy(theta, t))
        scratch[lr] = np.array(accuracies)
    best = max(scratch.values(), key=np.mean)
    assert meta.mean() > best.mean() + 0.05, (meta.mean(), {lr: a.mean() for lr, a in scratch.items()})
    assert meta.mean() > 0.75  # chance is 1/3


# ------------------------------------------------------------------------- 8. memory

# A one-block ConvNet whose single row's pass needs about 22 GiB in float64 (11 GiB in
# float32): 2**16 channels over 64×64 images, from parameters and inputs of a few MiB. The
# child process has 3 GiB of address space and is told 1 GiB of memory is available.
MEMORY_CHILD = """
import time
import numpy as np
import metafast as mf
from metafast import _memory
_memory.available_bytes = lambda: 2**30
net = mf.ConvNet((1, 64, 64), channels=(2**16,), outputs=3, stride=1)
theta = np.zeros(net.num_params)
x = np.zeros((2, 1, 64, 64)); y = np.array([0, 1])
batch = mf.TaskBatch(x[None], y[None], x[None], y[None])
small = mf.ConvNet((1, 6, 6), channels=(3,), outputs=3)
family = mf.tasks.Classification(np.zeros((8, 1, 64, 64)), np.arange(8) % 2, ways=2, shots=1, query=1)
small_family = mf.tasks.Classification(np.zeros((20, 1, 6, 6)), np.arange(20) % 4, ways=3, shots=2, query=3)
learners = {name: make(net, loss="softmax_ce", dtype="float64", num_threads=1) for name, make in
            (("MetaSGD", mf.MetaSGD), ("MAML", mf.MAML), ("Reptile", mf.Reptile))}
calls = {
    "forward": lambda: net.forward(theta, x[:1]),
    "forward-float32": lambda: net.forward(theta.astype(np.float32), x[:1]),
    "loss_and_grad": lambda: net.loss_and_grad(theta, x[:1], y[:1], "softmax_ce"),
    "hvp": lambda: net.hvp(theta, x[:1], y[:1], theta, "softmax_ce"),
    "huge meta_batch of a small network": lambda: mf.MetaSGD(small, loss="softmax_ce").fit(
        small_family, iterations=1, meta_batch=10**6, progress=False),
    "evaluation of many tasks": lambda: mf.MetaSGD(small, loss="softmax_ce").evaluate(
        small_family, num_tasks=10**7, steps=range(64)),
}
for name, learner in learners.items():
    calls.update({
        f"{name}.predict": lambda l=learner: l.predict(x),
        f"{name}.predict-support": lambda l=learner: l.predict(x[:1], batch_norm="support", x_support=x[1:]),
        f"{name}.fit-family": lambda l=learner: l.fit(family, iterations=1, meta_batch=1, progress=False),
        f"{name}.fit-batch": lambda l=learner: l.fit(batch, iterations=1, meta_batch=1, progress=False),
    })
for name, call in calls.items():
    started = time.perf_counter()
    try:
        call()
        outcome = "ran"
    except BaseException as error:
        outcome = f"{type(error).__name__}: {error}"
    print(f"{name}|{time.perf_counter() - started:.3f}|{' '.join(outcome.split())}")
"""


def test_a_pass_or_fit_beyond_the_memory_is_refused_before_allocating():
    lines = run_child(MEMORY_CHILD).splitlines()
    assert len(lines) == 6 + 3 * 4, lines
    for line in lines:
        name, seconds, outcome = line.split("|")
        assert outcome.startswith("ValueError: ") and "GiB, but only 1.0 GiB of memory is available" in outcome, line
        assert float(seconds) < 1.0, line
    outcomes = {line.split("|")[0]: line.split("|")[2] for line in lines}
    assert "a pass of the network over 1 rows needs about 22.0 GiB" in outcomes["forward"]
    assert "a pass of the network over 1 rows needs about 11.0 GiB" in outcomes["forward-float32"]
    assert "a meta-batch of 1000000 tasks" in outcomes["huge meta_batch of a small network"]


UNCHECKED_CHILD = MEMORY_CHILD.split("calls = {")[0] + """
learner = learners["MetaSGD"]
for name, call in {"adapt": lambda: learner.adapt(x, y), "meta_step": lambda: learner.meta_step(batch),
                   "meta_gradient": lambda: learner.meta_gradient(batch),
                   "evaluate": lambda: learner.evaluate(batch, steps=(0, 1))}.items():
    try:
        call()
        outcome = "ran"
    except BaseException as error:
        outcome = type(error).__name__
    print(f"{name}|{outcome}")
"""


def test_adapt_meta_step_and_evaluate_beyond_the_memory_are_refused_before_allocating():
    lines = run_child(UNCHECKED_CHILD).splitlines()
    assert lines == [f"{name}|ValueError" for name in ("adapt", "meta_step", "meta_gradient", "evaluate")]


# ------------------------------------------------------------------- 9. ecosystem faces

def test_scikit_learn_estimators_take_a_convnet_learner_on_flat_image_rows():
    pytest.importorskip("sklearn")
    from metafast.sklearn import FewShotClassifier, FewShotRegressor

    rng = np.random.default_rng(0)
    X, y = rng.random((9, 16)), np.arange(9) % 3
    learner = mf.MAML(mf.ConvNet((1, 4, 4), channels=(3,), outputs=3), loss="softmax_ce", dtype="float64")
    clf = FewShotClassifier(learner, steps=2).fit(X, y)
    theta = learner.adapt(X.reshape(9, 1, 4, 4), y, steps=2)
    np.testing.assert_array_equal(clf.predict(X), learner.predict(X, theta).argmax(axis=1))
    assert clf.predict_proba(X).shape == (9, 3)
    np.testing.assert_allclose(clf.predict_proba(X).sum(axis=1), 1.0)
    reg = FewShotRegressor(mf.MAML(mf.ConvNet((1, 4, 4), channels=(3,), outputs=1), dtype="float64")).fit(X, X.sum(1))
    assert reg.predict(X).shape == (9,)
    with pytest.raises(ValueError, match="X has 15 features, but the learner's network takes 16"):
        FewShotClassifier(learner).fit(X[:, :15], y)


def test_export_onnx_says_it_exports_an_mlp_and_a_convnet_has_logits():
    net = mf.ConvNet((1, 4, 4), channels=(3,), outputs=3)
    learner = mf.MAML(net, loss="softmax_ce")
    with pytest.raises(TypeError, match="export_onnx exports an MLP; this learner's model is a ConvNet"):
        learner.export_onnx(None, np.zeros((3, 1, 4, 4)), np.arange(3))
    assert net.output == "identity" and net.output_width == 3 and net.input_width == 16
