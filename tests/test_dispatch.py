"""The choice of compiled core: the CPU probe reads the CPU right, the best level it supports is
loaded, METAFAST_CPU forces a level or is refused with a clear error, and the levels agree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import metafast as mf
from metafast import _cpu, _dispatch

INFO = mf.build_info()
FEATURES = _cpu.features()


def run_python(code: str, level: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "METAFAST_CPU"}
    if level is not None:
        env["METAFAST_CPU"] = level
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_build_info_describes_the_core_in_use():
    assert INFO["level"] == mf._core.level
    assert INFO["level"] in INFO["levels_supported"]
    assert set(INFO["levels_supported"]) <= set(INFO["levels_built"])
    assert INFO["version"] == mf.__version__
    assert INFO["openmp"] == mf._core.openmp
    assert INFO["compiler"] and isinstance(INFO["compile_flags"], str)
    assert INFO["max_threads"] >= 1
    assert sys.modules["metafast._core"] is mf._core
    assert mf._core.__name__ == f"metafast._core_{INFO['level']}"


@pytest.mark.skipif(os.environ.get("METAFAST_CPU") not in (None, "", "auto"), reason="a level is forced")
def test_the_best_supported_level_is_picked():
    assert INFO["forced"] is None
    assert INFO["level"] == INFO["levels_supported"][-1]


@pytest.mark.skipif(not FEATURES["x86"], reason="x86-64 only")
def test_portable_build_holds_every_level():
    if "native" in INFO["levels_built"]:
        pytest.skip("a native build (METAFAST_NATIVE=ON) holds one core")
    assert INFO["levels_built"] == ["baseline", "avx2", "avx512"]


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists() or not FEATURES["x86"], reason="Linux on x86-64")
def test_probe_agrees_with_the_kernel():
    # The kernel's view of CPUID; under qemu-user /proc/cpuinfo is the host's, so only here.
    flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    flags = set(flags.split(":")[1].split())
    names = {"sse4_2": "sse4_2", "ssse3": "ssse3", "popcnt": "popcnt", "cx16": "cx16", "avx": "avx", "avx2": "avx2",
             "fma": "fma", "bmi1": "bmi1", "bmi2": "bmi2", "f16c": "f16c", "lzcnt": "abm", "movbe": "movbe",
             "avx512f": "avx512f", "avx512bw": "avx512bw", "avx512cd": "avx512cd", "avx512dq": "avx512dq",
             "avx512vl": "avx512vl"}
    for feature, flag in names.items():
        assert FEATURES[feature] == (flag in flags), feature
    assert FEATURES["vendor"] in ("GenuineIntel", "AuthenticAMD") or FEATURES["vendor"]


def features(level: str | None) -> dict:
    """A fake CPU that runs exactly the levels up to `level` (None: not even the baseline)."""
    fake = {name: False for name in FEATURES if name not in ("vendor", "brand")}
    fake.update(x86=True, vendor="GenuineIntel", brand="Test CPU")
    for name in _dispatch.LEVELS[: _dispatch.LEVELS.index(level) + 1] if level else ():
        fake.update({feature: True for feature in _dispatch._REQUIREMENTS[name][1]})
    return fake


ALL = ["baseline", "avx2", "avx512"]


@pytest.mark.parametrize("cpu", ALL)
def test_auto_picks_the_best_level_the_cpu_runs(cpu):
    assert _dispatch.choose_level(None, ALL, features(cpu)) == cpu
    assert _dispatch.choose_level("auto", ALL, features(cpu)) == cpu


def test_a_forced_level_is_loaded():
    assert _dispatch.choose_level("avx2", ALL, features("avx512")) == "avx2"
    assert _dispatch.choose_level("baseline", ALL, features("avx2")) == "baseline"


@pytest.mark.parametrize(
    "requested, built, cpu, message",
    [
        ("avx512", ALL, "avx2", "METAFAST_CPU=avx512: Test CPU cannot run the avx512 core (x86-64-v4): it lacks avx512f"),
        ("avx2", ALL, "baseline", "lacks avx, avx2, fma"),
        ("avx2", ["baseline"], "avx512", "this build of metafast has no avx2 core (it has baseline)"),
        ("native", ALL, "avx512", "has no native core"),
        ("sse9", ALL, "avx512", "METAFAST_CPU='sse9' is not a CPU level: expected auto or one of baseline, avx2, avx512"),
        (None, ALL, None, "metafast needs at least x86-64-v2 (sse4_2, ssse3, popcnt, cx16); Test CPU lacks sse4_2"),
    ],
    ids=["cpu-lacks-avx512", "cpu-lacks-avx2", "not-built", "no-native", "unknown", "cpu-too-old"],
)
def test_refusals_say_why(requested, built, cpu, message):
    with pytest.raises(ImportError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _dispatch.choose_level(requested, built, features(cpu))


def test_the_os_must_save_the_registers():
    # AVX-512 listed by CPUID but its registers not saved by the OS: the instructions would fault.
    cpu = features("avx512") | {"os_zmm": False}
    assert _dispatch.choose_level(None, ALL, cpu) == "avx2"


def test_other_processors_load_their_one_core():
    assert _dispatch.choose_level(None, ["baseline"], {**features(None), "x86": False}) == "baseline"


@pytest.mark.parametrize("level", INFO["levels_supported"])
def test_forcing_a_supported_level_loads_it(level):
    result = run_python("import metafast as mf; i = mf.build_info(); print(i['level'], i['forced'])", level)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [level, level]


def test_forcing_an_unknown_level_fails_the_import_clearly():
    result = run_python("import metafast", "avx1024")
    assert result.returncode != 0
    assert "ImportError: METAFAST_CPU='avx1024' is not a CPU level" in result.stderr


LACKING = [level for level in INFO["levels_built"] if level not in INFO["levels_supported"]]


@pytest.mark.parametrize("level", LACKING or ["none"])
def test_forcing_a_level_the_cpu_lacks_fails_the_import_clearly(level):
    if level == "none":
        pytest.skip("this CPU runs every level built")
    result = run_python("import metafast", level)
    assert result.returncode != 0
    assert f"cannot run the {level} core" in result.stderr


META_GRADIENT = """
import numpy as np, metafast as mf
model = mf.MLP([1, 40, 40, 1], activation="relu")
learner = mf.MetaSGD(model, dtype="{dtype}", seed=3, num_threads=1)
_, g_theta, g_alpha = learner.meta_gradient(mf.tasks.Sinusoid().sample(5, seed=4, dtype="{dtype}"))
np.save("{out}", np.concatenate([g_theta, g_alpha]).astype(np.float64))
"""


@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-12), ("float32", 2e-5)])
def test_levels_agree(tmp_path, dtype, tolerance):
    results = {}
    for level in INFO["levels_supported"]:
        out = tmp_path / f"{level}.npy"
        result = run_python(META_GRADIENT.format(dtype=dtype, out=out), level)
        assert result.returncode == 0, result.stderr
        results[level] = np.load(out)
    best = results[INFO["levels_supported"][-1]]
    for level, value in results.items():
        assert np.linalg.norm(value - best) <= tolerance * np.linalg.norm(best), level


def test_peak_probes_measure_something():
    assert mf._core.fma_peak_gflops(0.01) > 0.1
    if FEATURES["x86"]:
        assert 0.2 < mf._core.clock_ghz(0.01) < 10


@pytest.mark.parametrize("seconds", [0.0, -1.0, float("nan"), 61.0])
def test_peak_probes_refuse_bad_durations(seconds):
    with pytest.raises(ValueError, match="seconds"):
        mf._core.fma_peak_gflops(seconds)
    with pytest.raises(ValueError, match="seconds"):
        mf._core.clock_ghz(seconds)
