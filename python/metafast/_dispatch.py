"""Loads the compiled core built for the running CPU.

A portable build of metafast holds the core compiled once per x86-64 level: ``baseline``
(x86-64-v2: SSE4.2), ``avx2`` (x86-64-v3: AVX2, FMA) and ``avx512`` (x86-64-v4: AVX-512 F, BW,
CD, DQ, VL), as the extension modules ``metafast._core_<level>``. A tiny probe compiled for the
oldest x86-64 (``metafast._cpu``) reads the CPU's features with CPUID, and the best level the
CPU and the operating system support is imported as ``metafast._core``. A native build
(``METAFAST_NATIVE=ON``) holds one core, ``native``, made for the machine that built it.

The environment variable ``METAFAST_CPU`` (``baseline``, ``avx2``, ``avx512``, ``native`` or
``auto``) forces a level, for testing and troubleshooting; a level that this build lacks or
this CPU cannot run is refused at import with an ImportError that says why.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType
from typing import Any

#: The portable levels, oldest first, with the x86-64 level each needs and its features.
LEVELS = ("baseline", "avx2", "avx512")
_REQUIREMENTS = {
    "baseline": ("x86-64-v2", ("sse4_2", "ssse3", "popcnt", "cx16")),
    "avx2": ("x86-64-v3", ("avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "lzcnt", "movbe", "os_ymm")),
    "avx512": ("x86-64-v4", ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl", "os_zmm")),
}
ENVIRONMENT_VARIABLE = "METAFAST_CPU"


def built_levels() -> list[str]:
    """The levels whose core this installation holds (``native`` alone in a native build)."""
    return [level for level in (*LEVELS, "native") if importlib.util.find_spec(f"{__package__}._core_{level}")]


def missing_features(level: str, features: dict[str, Any]) -> list[str]:
    """The features `level` needs that the CPU (or the operating system) lacks; none for
    ``native``, which cannot be checked, and for every level off x86 (one generic core)."""
    if level == "native" or not features["x86"]:
        return []
    missing: list[str] = []
    for name in LEVELS[: LEVELS.index(level) + 1]:
        missing += [feature for feature in _REQUIREMENTS[name][1] if not features[feature]]
    return missing


def choose_level(requested: str | None, built: list[str], features: dict[str, Any]) -> str:
    """The level to load: `requested` (from METAFAST_CPU; None or "auto" for the best) if this
    build has it and the CPU runs it, else an ImportError that says why."""
    if not built:
        raise ModuleNotFoundError("no compiled core found")
    runnable = [level for level in built if not missing_features(level, features)]
    cpu = features["brand"] or features["vendor"] or "this CPU"
    if requested in (None, "", "auto"):
        if not runnable:
            needs = missing_features(built[0], features)
            raise ImportError(
                f"metafast needs at least {_REQUIREMENTS[built[0]][0]} "
                f"({', '.join(_REQUIREMENTS[built[0]][1])}); {cpu} lacks {', '.join(needs)}"
            )
        return runnable[-1]
    if requested not in (*LEVELS, "native"):
        raise ImportError(
            f"{ENVIRONMENT_VARIABLE}={requested!r} is not a CPU level: expected auto or one of {', '.join(built)}"
        )
    if requested not in built:
        raise ImportError(
            f"{ENVIRONMENT_VARIABLE}={requested}: this build of metafast has no {requested} core "
            f"(it has {', '.join(built)})"
        )
    needs = missing_features(requested, features)
    if needs:
        raise ImportError(
            f"{ENVIRONMENT_VARIABLE}={requested}: {cpu} cannot run the {requested} core "
            f"({_REQUIREMENTS[requested][0]}): it lacks {', '.join(needs)}; "
            f"levels it runs: {', '.join(runnable) or 'none'}"
        )
    return requested


def _load(requested: str | None) -> tuple[ModuleType, dict[str, Any], list[str]]:
    features = importlib.import_module(f"{__package__}._cpu").features()
    built = built_levels()
    level = choose_level(requested, built, features)
    module = importlib.import_module(f"{__package__}._core_{level}")
    # One core per process, known to the rest of the package as metafast._core.
    sys.modules[f"{__package__}._core"] = module
    return module, features, built


_requested = os.environ.get(ENVIRONMENT_VARIABLE) or None
core, _features, _built = _load(_requested)


def build_info() -> dict[str, Any]:
    """How this metafast was built and which of its cores the running CPU got.

    Returns
    -------
    dict
        ``level`` (the core in use), ``levels_built`` (those this installation holds),
        ``levels_supported`` (those of them the CPU runs), ``forced`` (the value of
        ``METAFAST_CPU``, or None), ``cpu`` and ``vendor`` (from CPUID), ``compiler`` and
        ``compile_flags`` (of the core in use), ``openmp`` and ``max_threads``, ``version``.

    Examples
    --------
    >>> import metafast as mf
    >>> mf.build_info()["level"]  # doctest: +SKIP
    'avx512'
    """
    return {
        "version": core.__version__,
        "level": core.level,
        "levels_built": list(_built),
        "levels_supported": [level for level in _built if not missing_features(level, _features)],
        "forced": _requested,
        "cpu": _features["brand"],
        "vendor": _features["vendor"],
        "compiler": core.compiler,
        "compile_flags": core.compile_flags,
        "openmp": bool(core.openmp),
        "max_threads": int(core.max_threads()),
    }
