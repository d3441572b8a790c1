"""Reading image folders laid out like the Omniglot repository: ``ALPHABET/characterNN/
CCCC_DD.png`` (any folders above ALPHABET; DD the drawer), in a folder or in zip files. The
strokes come back as they are stored (105 x 105 booleans, ink False), one record per image,
sorted by alphabet, character and drawer. Decoding PNG needs Pillow (``pip install pillow``)."""

from __future__ import annotations

import io
import os
import re
import zipfile
from dataclasses import dataclass
from typing import Iterator

import numpy as np

_NAME = re.compile(r"(?:^|/)([^/]+)/(character\d+)/(\d+)_(\d+)\.png$")
MAX_IMAGES = 100_000        # 3x Omniglot's 32,460: with MAX_FILE_BYTES, a bound on what a path may make us hold
MAX_SIDE = 1024             # pixels per side of one image
MAX_FILE_BYTES = 1 << 22    # one PNG file (Omniglot's are about 300 bytes)


@dataclass(frozen=True)
class StrokeImage:
    alphabet: str
    character: str          # "characterNN"
    drawer: int
    pixels: np.ndarray      # (H, W) bool, True where the paper is white


def _pillow():
    try:
        from PIL import Image
    except ImportError as error:
        raise ImportError("reading Omniglot's PNG files needs Pillow: pip install pillow") from error
    return Image


def _decoded(data: bytes, where: str) -> np.ndarray:
    image_module = _pillow()
    try:
        with image_module.open(io.BytesIO(data)) as image:
            if max(image.size) > MAX_SIDE:
                raise ValueError(f"{where}: {image.size[0]} x {image.size[1]} pixels, more than {MAX_SIDE} per side")
            return np.asarray(image.convert("L")) >= 128
    except (OSError, SyntaxError) as error:  # Pillow's errors for files that are not images
        raise ValueError(f"{where} is not a readable image: {error}") from error


def _entries(path: str) -> Iterator[tuple[str, bytes]]:
    """(name inside the set, bytes) of every PNG under a folder or in a zip file, or in every zip
    file of a folder that holds zips and no PNGs (the repository's python/ folder)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if _NAME.search(info.filename):
                    if info.file_size > MAX_FILE_BYTES:
                        raise ValueError(f"{path}:{info.filename}: {info.file_size:,} bytes, more than an image's "
                                         f"{MAX_FILE_BYTES:,}")
                    yield f"{path}:{info.filename}", archive.read(info)
        return
    if not os.path.isdir(path):
        raise ValueError(f"path must be a folder or a zip file laid out like Omniglot's, got {path!r}")
    found = False
    for folder, subfolders, files in os.walk(path):
        subfolders.sort()
        for name in sorted(files):
            full = os.path.join(folder, name)
            if _NAME.search(full.replace(os.sep, "/")):
                found = True
                if os.path.getsize(full) > MAX_FILE_BYTES:
                    raise ValueError(f"{full}: more than an image's {MAX_FILE_BYTES:,} bytes")
                with open(full, "rb") as handle:
                    yield full, handle.read()
    if not found:
        for name in sorted(os.listdir(path)):
            full = os.path.join(path, name)
            if name.endswith(".zip") and zipfile.is_zipfile(full):
                yield from _entries(full)


def read_strokes(path: str | os.PathLike) -> list[StrokeImage]:
    """Every image under ``path`` (a folder, a zip, or a folder of zips), each (alphabet,
    character, drawer) once: the same image in two zips (Omniglot's Greek and Latin in both
    minimal sets) is kept once, and two different images at the same place are refused."""
    records: dict[tuple[str, str, int], StrokeImage] = {}
    for where, data in _entries(os.fspath(path)):
        alphabet, character, _, drawer = _NAME.search(where.replace(os.sep, "/")).groups()
        key = (alphabet, character, int(drawer))
        image = StrokeImage(alphabet, character, int(drawer), _decoded(data, where))
        if key in records:
            if not np.array_equal(records[key].pixels, image.pixels):
                raise ValueError(f"{where}: two different images of {alphabet}/{character} by drawer {drawer}")
            continue
        if len(records) == MAX_IMAGES:
            raise ValueError(f"{path!r} holds more than {MAX_IMAGES:,} images")
        records[key] = image
    if not records:
        raise ValueError(f"no images laid out as ALPHABET/characterNN/CCCC_DD.png under {os.fspath(path)!r}")
    return [records[key] for key in sorted(records)]
