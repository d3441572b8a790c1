"""Crafted model files for the tests of loading (tests/test_hostile_files.py, tests/test_cli.py):
real saved entries with a config, an array header or bytes changed."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

import metafast as mf
from metafast.tasks import Sinusoid


def saved_entries(folder: Path, learner=None) -> dict[str, np.ndarray]:
    """The entries of a saved file: by default of a small Meta-SGD trained on sine waves for
    two meta-iterations (so that it records its task family)."""
    if learner is None:
        learner = mf.MetaSGD(mf.MLP([1, 4, 1]), num_threads=1)
        learner.fit(Sinusoid(), iterations=2, meta_batch=2, progress=False)
    learner.save(folder / "saved.npz")
    with np.load(folder / "saved.npz") as archive:
        return {name: archive[name] for name in archive.files}


def config_of(entries: dict[str, np.ndarray]) -> dict:
    return json.loads(str(entries["config"]))


def with_config(entries: dict[str, np.ndarray], config: dict | str) -> dict[str, np.ndarray]:
    """The entries with another config (a dict, or the JSON text itself)."""
    text = config if isinstance(config, str) else json.dumps(config)
    return dict(entries, config=np.array(text))


def write(path: Path, entries: dict[str, np.ndarray], headers: dict[str, dict] | None = None,
          compression: int = zipfile.ZIP_STORED) -> Path:
    """An .npz of `entries` as numpy writes one, except that the entries named in `headers`
    get that .npy header (``shape``, ``descr``) in front of their real data."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, array in entries.items():
            buffer = io.BytesIO()
            if headers and name in headers:
                header = dict(shape=array.shape, fortran_order=False, descr=np.lib.format.dtype_to_descr(array.dtype))
                np.lib.format.write_array_header_1_0(buffer, dict(header, **headers[name]))
                buffer.write(array.tobytes())
            else:
                np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
            archive.writestr(f"{name}.npy", buffer.getvalue())
    return path


def deep_json(depth: int) -> str:
    """A config whose model is nested `depth` lists deep."""
    return '{"kind": "MetaSGD", "dtype": "float32", "model": ' + "[" * depth + "]" * depth + "}"


def flipped(data: bytes, count: int, seed: int = 0) -> list[tuple[int, bytes]]:
    """`count` copies of `data`, each with one byte changed, at positions spread over it."""
    rng = np.random.default_rng(seed)
    positions = rng.choice(len(data), size=min(count, len(data)), replace=False)
    copies = []
    for position, change in zip(positions, rng.integers(1, 256, size=len(positions))):
        copy = bytearray(data)
        copy[position] ^= int(change)
        copies.append((int(position), bytes(copy)))
    return copies


def with_compression_method(path: Path, entry: str, method: int) -> Path:
    """The archive at `path` with entry `entry` claiming compression `method` in the central
    directory (where zipfile reads it)."""
    data = bytearray(path.read_bytes())
    name = f"{entry}.npy".encode()
    record = data.find(b"PK\x01\x02")  # a central directory record, whose name follows at +46
    while data[record + 46 : record + 46 + len(name)] != name:
        record = data.find(b"PK\x01\x02", record + 1)
        assert record >= 0, f"no entry {entry}"
    data[record + 10 : record + 12] = method.to_bytes(2, "little")
    path.write_bytes(bytes(data))
    return path


def with_first_data_byte(path: Path, entry: str, value: int) -> Path:
    """The archive at `path` with the first byte of entry `entry`'s (compressed) data set to
    `value`; 0xFF starts a deflate stream with an invalid block type."""
    with zipfile.ZipFile(path) as archive:
        offset = archive.getinfo(f"{entry}.npy").header_offset
    data = bytearray(path.read_bytes())
    name_length, extra_length = (int.from_bytes(data[offset + k : offset + k + 2], "little") for k in (26, 28))
    data[offset + 30 + name_length + extra_length] = value
    path.write_bytes(bytes(data))
    return path
