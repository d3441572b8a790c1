"""The documentation site builds offline with warnings as errors, and its API reference
names every public name of the package."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import metafast as mf

ROOT = Path(__file__).resolve().parents[1]
API = (ROOT / "docs" / "api.rst").read_text(encoding="utf-8")

# Public names that are not documented objects of their own: subpackages (each has its
# section), a registry and type aliases (named in the functions that take them), and the
# reference module's ports of a book's listings (benchmark baselines its docstring describes).
NOT_OBJECTS = {"metafast": {"__version__"}, "metafast.tasks": {"FAMILIES", "Sampler", "Tasks"},
               "metafast.reference": {"BookMetaSGD", "BookReptile", "book_sample_points",
                                      "book_reptile_sample_points"}}


def documented() -> dict[str, set[str]]:
    """The names each ``.. module::`` section of docs/api.rst lists in its autosummary."""
    names: dict[str, set[str]] = {}
    module = None
    for line in API.splitlines():
        if match := re.match(r"\.\. (?:current)?module:: (\S+)", line):
            module = match.group(1)
        elif module and (match := re.match(r"   ([A-Za-z_]\w*)$", line)):
            names.setdefault(module, set()).add(match.group(1))
    return names


@pytest.mark.parametrize("module", ["metafast", "metafast.tasks", "metafast.datasets", "metafast.rl",
                                    "metafast.sklearn", "metafast.distributed", "metafast.reference"])
def test_every_public_name_is_in_the_api_reference(module):
    package = __import__(module, fromlist=["_"])
    public = {name for name in package.__all__ if not isinstance(getattr(package, name), types.ModuleType)}
    missing = public - documented().get(module, set()) - NOT_OBJECTS.get(module, set())
    assert not missing, f"{module}: not in docs/api.rst: {sorted(missing)}"
    for name in documented().get(module, set()):
        assert hasattr(package, name), f"docs/api.rst lists {module}.{name}, which does not exist"


def test_the_site_builds_offline_with_warnings_as_errors(tmp_path):
    pytest.importorskip("sphinx", reason="the docs extra (metafast[docs]) builds the site")
    pytest.importorskip("sphinx_gallery", reason="the docs extra (metafast[docs]) builds the gallery")
    environment = dict(os.environ, METAFAST_DOCS_QUICK="1")  # the gallery's trainings: a few meta-iterations
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-d",
                           str(tmp_path / "doctrees"), str(ROOT / "docs"), str(tmp_path / "html")],
                          capture_output=True, text=True, timeout=600, env=environment)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "html" / "api.html").is_file()
    assert f"metafast {mf.__version__}" in (tmp_path / "html" / "index.html").read_text(encoding="utf-8")
    # The gallery: a page per example, with what it printed where it runs at build time.
    for example in sorted((ROOT / "docs" / "examples").glob("*.py")):
        page = (tmp_path / "html" / "gallery" / f"{example.stem}.html").read_text(encoding="utf-8")
        printing = "print(" in example.read_text(encoding="utf-8")
        if printing and example.stem not in ("many_machines", "pipelines"):  # shown, not run (docs/conf.py)
            assert "sphx-glr-script-out" in page, f"the gallery shows no output of {example.name}"
