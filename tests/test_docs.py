"""Every comment or docstring that cites a section of docs/math.md names one that exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MATH = ROOT / "docs" / "math.md"
# "docs/math.md, section 3", "docs/math.md (section 1)", "math.md sections 1 and 4"
CITATION = re.compile(r"math\.md,?\s*\(?sections?\s+(\d+(?:\s*(?:,|and)\s*\d+)*)")


def source_files() -> list[Path]:
    return [p for folder in ("python", "cpp", "benchmarks") for p in (ROOT / folder).rglob("*")
            if p.suffix in (".py", ".pyi", ".hpp", ".cpp", ".h") and p.is_file()]


def citations() -> list[tuple[str, int]]:
    found = []
    for path in source_files():
        for match in CITATION.finditer(path.read_text(encoding="utf-8")):
            found += [(str(path.relative_to(ROOT)), int(n)) for n in re.findall(r"\d+", match.group(1))]
    return found


def test_math_citations_resolve():
    sections = {int(n) for n in re.findall(r"^## (\d+)\.", MATH.read_text(encoding="utf-8"), re.MULTILINE)}
    found = citations()
    assert found, "no citations found: the pattern no longer matches the code's wording"
    missing = [(path, n) for path, n in found if n not in sections]
    assert not missing, f"citations of sections docs/math.md lacks: {missing}"


def test_math_citations_name_the_file_by_its_path():
    bare = [str(p.relative_to(ROOT)) for p in source_files()
            if re.search(r"(?<!docs/)math\.md", p.read_text(encoding="utf-8"))]
    assert not bare, f"cite docs/math.md, not math.md: {bare}"
