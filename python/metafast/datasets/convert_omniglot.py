"""Converts Omniglot's two minimal background sets (the repository's
``images_background_small1.zip`` and ``images_background_small2.zip``) into the file the
package ships, ``data/omniglot.xz``, and its record ``data/provenance.json``: bit for bit
the shipped files. Needs Pillow.

    python -m metafast.datasets.convert_omniglot FOLDER_WITH_THE_ZIPS [--out FOLDER]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._atomic_file import write_atomically
from . import packed_arrays
from .omniglot import DATA, SIDE
from .omniglot_layout import read_strokes

ZIPS = {"small1": "images_background_small1.zip", "small2": "images_background_small2.zip"}
SOURCE = ("Omniglot, github.com/brendenlake/omniglot, commit 057f034, python/images_background_small1.zip and "
          "python/images_background_small2.zip; MIT License, Copyright (c) 2015 Brenden Lake")
CITATION = ("Lake, B. M., Salakhutdinov, R. and Tenenbaum, J. B. (2015). Human-level concept learning through "
            "probabilistic program induction. Science, 350(6266), 1332-1338.")


def convert(folder: str | os.PathLike) -> tuple[bytes, dict[str, Any]]:
    """The shipped file's bytes and its provenance record, from the two zips in ``folder``."""
    paths = {subset: Path(folder) / name for subset, name in ZIPS.items()}
    for path in paths.values():
        if not path.is_file():
            raise ValueError(f"{path} is missing: the folder must hold {' and '.join(ZIPS.values())}")
    by_subset = {subset: read_strokes(path) for subset, path in paths.items()}
    records = read_strokes(folder)  # both zips: identical images (Greek, Latin) once, any clash refused
    characters = sorted({f"{r.alphabet}/{r.character}" for r in records})
    index = {name: c for c, name in enumerate(characters)}
    if {r.pixels.shape for r in records} != {(SIDE, SIDE)}:
        raise ValueError(f"every Omniglot image must be {SIDE} x {SIDE}")
    ink = np.stack([~r.pixels for r in records]).reshape(len(records), -1)
    arrays = {
        "ink": np.packbits(ink, axis=1),
        "character": np.array([index[f"{r.alphabet}/{r.character}"] for r in records], dtype=np.int16),
        "drawer": np.array([r.drawer for r in records], dtype=np.uint8),
    }
    metadata = {
        "alphabets": sorted({r.alphabet for r in records}),
        "characters": characters,
        "subsets": {subset: sorted({r.alphabet for r in found}) for subset, found in by_subset.items()},
        "side": SIDE,
    }
    data = packed_arrays.pack(metadata, arrays)
    provenance = {
        "source": SOURCE,
        "citation": CITATION,
        "zips": {path.name: packed_arrays.sha256(path.read_bytes()) for path in paths.values()},
        "file": {"omniglot.xz": packed_arrays.sha256(data)},
        "arrays": {name: packed_arrays.array_sha256(array) for name, array in arrays.items()},
        "images": len(records),
        "characters": len(characters),
    }
    return data, provenance


def provenance_text(provenance: dict[str, Any]) -> bytes:
    return (json.dumps(provenance, indent=2, sort_keys=True) + "\n").encode()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m metafast.datasets.convert_omniglot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="the folder holding " + " and ".join(ZIPS.values()))
    parser.add_argument("--out", default=str(DATA), help="where to write omniglot.xz and provenance.json "
                                                         "(default: the package's data folder)")
    args = parser.parse_args(argv)
    data, provenance = convert(args.folder)
    write_atomically(Path(args.out) / "omniglot.xz", lambda handle: handle.write(data))
    write_atomically(Path(args.out) / "provenance.json", lambda handle: handle.write(provenance_text(provenance)))
    print(f"wrote {args.out}/omniglot.xz ({len(data):,} bytes: {provenance['images']:,} images, "
          f"{provenance['characters']} characters) and provenance.json")


if __name__ == "__main__":
    main()
