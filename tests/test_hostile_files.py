"""Hostile and damaged model files: each load succeeds or is refused with a ValueError naming
the file, within a second and in bounded memory, never with another exception or an
allocation of whatever the file declares.

The loads run in a child process limited to 2 GiB of address space, so that a regression
fails its test (with the MemoryError or the kill) instead of taking the machine down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import metafast as mf
from hostile_files import config_of, deep_json, flipped, saved_entries, with_config, write
from metafast import _memory

MEMORY_LIMIT = 2 * 2**30
SECONDS = 1.0  # what a refusal may take at most (the README's contract)
CHILD_TIMEOUT = 60

# The limit is set by the child itself, first: a preexec_fn could deadlock a threaded parent.
CHILD = f"""
import os, resource
if "libasan" not in os.environ.get("LD_PRELOAD", ""):  # AddressSanitizer reserves terabytes of address space
    resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT}))
import json, sys, time
import metafast as mf
results = []
for path in sys.argv[1:]:
    started = time.perf_counter()
    try:
        mf.load(path, num_threads=1)
        outcome = "loaded"
    except BaseException as error:  # which one is the test's to judge
        outcome = f"{{type(error).__name__}}: {{error}}"
    results.append([outcome, time.perf_counter() - started])
print(json.dumps(results))
"""


def loads_in_child(paths) -> list[tuple[str, float]]:
    """What loading each file does in a memory-limited child: its outcome and seconds."""
    # One thread and few malloc arenas: the limit is on address space, which idle threads reserve.
    environment = dict(os.environ, OMP_NUM_THREADS="1", MALLOC_ARENA_MAX="2")
    try:
        result = subprocess.run([sys.executable, "-c", CHILD, *map(str, paths)], capture_output=True, text=True,
                                timeout=CHILD_TIMEOUT, env=environment)
    except subprocess.TimeoutExpired:
        pytest.fail(f"loading {len(paths)} file(s) took more than {CHILD_TIMEOUT} s")
    assert result.returncode == 0, f"the loading process died ({result.returncode}): {result.stderr[-2000:]}"
    return [tuple(item) for item in json.loads(result.stdout)]


def assert_refused(paths) -> None:
    for path, (outcome, seconds) in zip(paths, loads_in_child(paths)):
        assert outcome.startswith(f"ValueError: {path} "), outcome
        assert seconds < SECONDS, f"{path}: refused after {seconds:.2f} s"


@pytest.fixture
def entries(tmp_path):
    return saved_entries(tmp_path)


BOMB = [1, 40_000, 40_000, 1]  # 1.6e9 parameters: 64 GB for a Meta-SGD learner
BOMB_PARAMS = 40_000 + 40_000 * 40_000 + 40_000 + 2 * 40_000 + 1


@pytest.mark.parametrize("headers", ["small arrays", "arrays declared to the bomb's size"])
def test_an_architecture_bomb_is_refused_before_anything_is_built(tmp_path, entries, headers):
    config = config_of(entries)
    bomb = with_config(entries, dict(config, model=dict(config["model"], sizes=BOMB)))
    declared = {} if headers == "small arrays" else {
        name: dict(shape=(factor * BOMB_PARAMS,)) for name, factor in
        (("theta", 1), ("alpha", 1), ("optimizer_m", 2), ("optimizer_v", 2))}
    assert_refused([write(tmp_path / "bomb.npz", bomb, headers=declared)])


@pytest.mark.parametrize("entry", ["theta", "optimizer_m", "history"])
def test_a_huge_declared_array_is_refused_before_it_is_read(tmp_path, entries, entry):
    huge = 2**40  # 4 TiB of float32, 8 TiB of float64
    if entry == "history":  # as long as the iteration count says
        entries = dict(entries, iteration=np.array(huge))
    assert_refused([write(tmp_path / "huge.npz", entries, headers={entry: dict(shape=(huge,))})])


def test_a_config_of_100000_layers_is_refused_at_once(tmp_path, entries):
    sizes = [1] * 100_001
    parameters = 2 * 100_000  # consistent arrays: a weight and a bias per layer
    deep = dict(entries, theta=np.zeros(parameters, np.float32), alpha=np.zeros(parameters, np.float32),
                optimizer_m=np.zeros(2 * parameters, np.float32), optimizer_v=np.zeros(2 * parameters, np.float32))
    config = config_of(entries)
    assert_refused([write(tmp_path / "layers.npz", with_config(deep, dict(config, model=dict(config["model"],
                                                                                             sizes=sizes))))])


@pytest.mark.parametrize("depth", [100_000, 500])  # beyond the recursion limit of json, and within it
def test_a_deeply_nested_config_is_refused(tmp_path, entries, depth):
    assert_refused([write(tmp_path / "deep.npz", with_config(entries, deep_json(depth)))])


def test_values_of_the_wrong_type_are_refused(tmp_path, entries):
    config = config_of(entries)
    wrong = {
        "kind-list": with_config(entries, dict(config, kind=["MetaSGD"])),
        "kind-object": with_config(entries, dict(config, kind={"MetaSGD": 1})),
        "tasks-list": with_config(entries, dict(config, tasks=["Sinusoid"])),
        "family-list": with_config(entries, dict(config, tasks=dict(config["tasks"], family=["Sinusoid"]))),
        "model-list": with_config(entries, dict(config, model=[1, 4, 1])),
        "sizes-floats": with_config(entries, dict(config, model=dict(config["model"], sizes=[1.0, 4.0, 1.0]))),
        "dtype-list": with_config(entries, dict(config, dtype=["float32"])),
    }
    paths = [write(tmp_path / f"{name}.npz", value) for name, value in wrong.items()]
    paths.append(write(tmp_path / "object-theta.npz", entries, headers={"theta": dict(descr="|O")}))
    paths.append(write(tmp_path / "text-theta.npz", entries, headers={"theta": dict(descr="<U1")}))
    assert_refused(paths)


def test_byte_flipped_files_load_or_are_refused(tmp_path, entries):
    # 100 one-byte changes each of a stored and of a deflated archive (numpy's savez and
    # savez_compressed): headers, names, sizes, compression methods, data.
    paths = []
    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        data = write(tmp_path / "model.npz", entries, compression=compression).read_bytes()
        for position, copy in flipped(data, 100, seed=compression):
            path = tmp_path / f"flipped-{compression}-{position}.npz"
            path.write_bytes(copy)
            paths.append(path)
    results = loads_in_child(paths)
    for path, (outcome, seconds) in zip(paths, results):
        assert outcome == "loaded" or outcome.startswith(f"ValueError: {path} "), outcome
        assert seconds < SECONDS, f"{path}: {seconds:.2f} s"
    assert sum(outcome != "loaded" for outcome, _ in results) > 100  # most changes are damage to refuse


def test_a_file_too_large_for_the_memory_is_refused_before_it_is_read(tmp_path, entries, monkeypatch):
    # Room for the file's arrays but not for them and the learner built from them as well.
    path = write(tmp_path / "model.npz", entries)
    state = {name: array for name, array in entries.items() if name not in ("format", "format_version", "config")}
    arrays = sum(array.nbytes for array in state.values())
    learner = mf.MetaSGD._learner_bytes(13, 1, np.dtype("float32"))  # a float32 Meta-SGD of 13 parameters
    monkeypatch.setattr(_memory, "available_bytes", lambda: (arrays + learner // 2) / 0.9)
    with pytest.raises(ValueError, match=f"{path} is too large to load: the learner it holds needs about"):
        mf.load(path)
    monkeypatch.setattr(_memory, "available_bytes", lambda: None)
    assert mf.load(path).iteration == 2


@pytest.mark.parametrize("kind", ["device", "fifo", "directory"])
def test_anything_but_a_regular_file_is_refused_before_it_is_read(kind, tmp_path):
    path = {"device": "/dev/zero", "fifo": str(tmp_path / "pipe"), "directory": str(tmp_path)}[kind]
    if kind == "fifo":
        os.mkfifo(path)  # opening it for reading would block until a writer came
    with pytest.raises(ValueError, match=f"^{path} is not a regular file$"):
        mf.load(path)


def test_running_out_of_memory_while_loading_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    mf.MetaSGD(mf.MLP([1, 4, 1])).save(path)

    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(mf.MetaSGD, "_from_saved", exhausted)
    with pytest.raises(MemoryError, match=f"^not enough memory to load {path}$"):
        mf.load(path)
