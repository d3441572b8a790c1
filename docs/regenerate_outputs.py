"""Regenerates every output README.md and the user guide (docs/guide/*.md) show from the code
that prints it, so that they cannot drift from the code.

In these pages, a block of output follows a marker naming the command that prints it::

    <!-- output: python docs/examples/meta_sgd_sine.py -->

and the machine the outputs came from stands in README.md between ``<!-- machine -->`` and
``<!-- /machine -->``. ``python docs/regenerate_outputs.py`` runs every command (from a
scratch folder, so the files they write do not land in the clone), rewrites the blocks and
the machine, and copies the demo's picture to docs/demo.png. ``--only NAME ...`` runs the
commands containing one of the names. The test suite runs the quick ones and compares them
with the pages (timings aside) when it runs at the level the outputs were made at.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# The pages whose snippets and outputs are the code's: the front page and the user guide.
PAGES = [README, *sorted((ROOT / "docs" / "guide").glob("*.md"))]
BLOCK = re.compile(r"(<!-- output: (?P<command>.+?) -->\n```\n)(?P<body>.*?)(```\n)", re.S)
MACHINE = re.compile(r"<!-- machine -->(?P<text>.*?)<!-- /machine -->")
# Files a command writes that the README shows, and where they go.
KEPT = {"metafast-demo.png": ROOT / "docs" / "demo.png"}
# Timings differ run to run; everything else an output shows is determined by the code.
TIMING = re.compile(r"\d+(\.\d+)? s\b")


def commands(text: str) -> list[str]:
    """The commands of the output blocks of ``text``, in order."""
    return [match.group("command") for match in BLOCK.finditer(text)]


def recorded(text: str) -> dict[str, str]:
    """Each command's output as ``text`` shows it."""
    return {match.group("command"): match.group("body") for match in BLOCK.finditer(text)}


def machine_text() -> str:
    """The machine and level that outputs made now come from, as README.md names them."""
    import metafast

    info = metafast.build_info()
    return f"{info['cpu']} ({os.cpu_count()} cores), `{info['level']}` level"


def recorded_level(text: str) -> str | None:
    """The CPU level the README's outputs were made at."""
    match = MACHINE.search(text)
    found = match and re.search(r"`(\w+)` level", match.group("text"))
    return found.group(1) if found else None


def run(command: str, keep: bool = False) -> str:
    """What ``command`` prints on stdout, run from a scratch folder: ``python X`` runs X of
    the clone with this interpreter, ``metafast ...`` the installed command line."""
    words = shlex.split(command)
    if words[0] == "python":
        argv = [sys.executable, *(str(ROOT / w) if w.endswith(".py") else w for w in words[1:])]
    elif words[0] == "metafast":
        argv = [sys.executable, "-m", "metafast", *words[1:]]
    else:
        raise ValueError(f"an output command starts with python or metafast, got {command!r}")
    with tempfile.TemporaryDirectory() as scratch:
        done = subprocess.run(argv, cwd=scratch, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"{command} failed:\n{done.stderr[-3000:]}")
        if keep:
            for name, destination in KEPT.items():
                if (Path(scratch) / name).exists():
                    shutil.copyfile(Path(scratch) / name, destination)
    return done.stdout


def masked(output: str) -> str:
    """``output`` with its timings hidden."""
    return TIMING.sub("<t> s", output)


def pages_text() -> str:
    """The pages' text, end to end."""
    return "".join(page.read_text(encoding="utf-8") for page in PAGES)


def regenerate(only: list[str] | None = None) -> None:
    wanted = dict.fromkeys(c for c in commands(pages_text()) if not only or any(name in c for name in only))
    outputs = {command: run(command, keep=True) for command in wanted}

    def replaced(match: re.Match[str]) -> str:
        body = outputs.get(match.group("command"), match.group("body"))
        return match.group(1) + body + match.group(4)

    for page in PAGES:
        text = BLOCK.sub(replaced, page.read_text(encoding="utf-8"))
        if page == README:
            text = MACHINE.sub(f"<!-- machine -->{machine_text()}<!-- /machine -->", text)
        page.write_text(text, encoding="utf-8")
    for command in outputs:
        print(f"regenerated: {command}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="regenerate the outputs of these commands only")
    regenerate(parser.parse_args().only)


if __name__ == "__main__":
    main()
