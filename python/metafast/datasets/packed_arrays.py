"""The container of the data sets shipped inside the package: NumPy arrays (``.npy`` format,
no pickles) after a JSON header of metadata, the whole compressed with xz. Written
deterministically (no time stamps), so the conversion script reproduces a shipped file bit for
bit, and read only after its SHA-256 matches the one recorded beside it."""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import os
import struct
from typing import Any

import numpy as np

_MAGIC = b"METAFAST-ARRAYS-1\n"
_PRESET = 9 | lzma.PRESET_EXTREME


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def array_sha256(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and C-order bytes."""
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
    return digest.hexdigest()


def pack(metadata: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    """The compressed bytes of ``metadata`` (JSON) and ``arrays`` (in the order given)."""
    header = json.dumps(dict(metadata, arrays=list(arrays)), sort_keys=True, separators=(",", ":")).encode()
    body = io.BytesIO()
    body.write(_MAGIC + struct.pack("<Q", len(header)) + header)
    for array in arrays.values():
        np.lib.format.write_array(body, np.ascontiguousarray(array), allow_pickle=False)
    return lzma.compress(body.getvalue(), format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=_PRESET)


def unpack(path: str | os.PathLike, expected_sha256: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The metadata and arrays of a file written by :func:`pack`, once its SHA-256 matches."""
    with open(path, "rb") as handle:
        data = handle.read()
    if sha256(data) != expected_sha256:
        raise OSError(f"{os.fspath(path)} is damaged: its SHA-256 is {sha256(data)}, not the recorded "
                      f"{expected_sha256}; reinstall metafast")
    body = io.BytesIO(lzma.decompress(data, format=lzma.FORMAT_XZ))
    if body.read(len(_MAGIC)) != _MAGIC:
        raise OSError(f"{os.fspath(path)} is not a metafast array file")
    (length,) = struct.unpack("<Q", body.read(8))
    metadata = json.loads(body.read(length))
    arrays = {name: np.lib.format.read_array(body, allow_pickle=False) for name in metadata.pop("arrays")}
    return metadata, arrays
