"""README.md and the user guide (docs/guide/*.md) stay true to the code: every Python snippet is
a file of docs/examples that runs as written, and the outputs they show are what the code
prints (docs/regenerate_outputs.py makes them; the quick ones are checked here, timings aside,
at the CPU level they were made at)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

import metafast as mf

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*.py"))
SNIPPET = re.compile(r"<!-- snippet: (?P<path>\S+) -->\n```python\n(?P<code>.*?)```\n", re.S)

spec = importlib.util.spec_from_file_location("regenerate_outputs", ROOT / "docs" / "regenerate_outputs.py")
outputs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(outputs)
PAGES = {page.relative_to(ROOT).as_posix(): page.read_text(encoding="utf-8") for page in outputs.PAGES}

# Runs an example as written, except that training stops after a few meta-iterations: the
# snippets' own lengths are for the outputs README.md shows (docs/regenerate_outputs.py).
SHORT_TRAINING = """
import runpy, sys
from metafast.learner import Learner
train = Learner._train
Learner._train = lambda self, iterations, *args, **kwargs: train(self, min(iterations, 5), *args, **kwargs)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
# Outputs quick enough to make again in the suite (seconds each on 2 cores).
QUICK = ["metafast demo", "python docs/examples/meta_sgd_sine.py", "python docs/examples/reptile_sine.py",
         "python docs/examples/digits_meta_sgd.py",
         "python docs/examples/few_shot_digits.py"]


def example_code(path: Path) -> str:
    """An example's code as the pages show it: without the docstring that titles it in the
    gallery."""
    text = path.read_text(encoding="utf-8")
    if text.startswith('"""'):
        text = text[text.index('"""', 3) + 3:].lstrip("\n")
    return text


def test_every_python_block_is_an_example_file():
    snippets = {}
    for name, text in PAGES.items():
        found = [(match.group("path"), match.group("code")) for match in SNIPPET.finditer(text)]
        assert len(found) == text.count("```python\n"), f"a ```python block of {name} lacks its <!-- snippet: --> marker"
        for path, code in found:
            assert example_code(ROOT / path) == code, f"{name}'s copy of {path} differs from it"
            snippets[path] = code
    # Every example is shown: on one of those pages, or on another page of the documentation site.
    pages = "".join(page.read_text(encoding="utf-8") for page in (ROOT / "docs").glob("*.md"))
    included = {ROOT / "docs" / path for path in re.findall(r"```\{literalinclude\} (\S+)", pages)}
    assert sorted(included | {ROOT / path for path in snippets}) == [
        e for e in EXAMPLES if e.name != "few_shot_digits.py"]


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_every_example_runs_as_written(example, tmp_path):
    needs = {"many_machines": "mpi4py", "digits_meta_sgd": "sklearn", "few_shot_digits": "sklearn",
             "sklearn_few_shot": "sklearn", "export_onnx": "onnxruntime", "convnet_digits": "sklearn"}
    if example.stem in needs:
        pytest.importorskip(needs[example.stem], reason=f"{example.name} needs {needs[example.stem]}")
    done = subprocess.run([sys.executable, "-c", SHORT_TRAINING, str(example)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_every_output_block_names_a_command_that_runs():
    text = "".join(PAGES.values())
    commands = outputs.commands(text)
    assert len(commands) == text.count("<!-- output:")
    for command in commands:
        for word in command.split():
            if word.endswith(".py"):
                assert (ROOT / word).is_file(), command
    assert set(QUICK) <= set(commands)


@pytest.mark.parametrize("command", QUICK)
def test_the_outputs_shown_are_what_the_code_prints(command):
    level = outputs.recorded_level(README)
    if mf.build_info()["level"] != level:
        pytest.skip(f"README.md's outputs were made at the {level} level; this process runs another")
    if "digits" in command:
        pytest.importorskip("sklearn", reason="the digits examples need scikit-learn")
    shown = outputs.recorded("".join(PAGES.values()))[command]
    assert outputs.masked(outputs.run(command)) == outputs.masked(shown)
