"""Reading a model file without trusting it: every size the file declares is checked before
anything is allocated for it.

A model file can come from anywhere. Before :mod:`metafast.io` reads an array's data, the
array's ``.npy`` header (shape and dtype, read on its own) must fit its entry of the format
and its data must really be in the file; the config must be small and shallow, name a
registered learner and a bounded model; the parameter arrays must have the lengths that model
implies; and the arrays together with the learner built from them must fit in memory. So a
hostile or damaged file costs time and memory bounded by the data it really holds (a
deflated entry expands at most about a thousandfold), never by what it claims. Each refusal
is a :class:`Refused` (a ValueError) saying what is wrong, phrased to follow the file's name,
which :mod:`metafast.io` adds.
"""

from __future__ import annotations

import io
import json
import math
import struct
import zipfile
import zlib
from collections.abc import Container
from dataclasses import dataclass
from typing import IO, Any, Callable

import numpy as np

from . import _memory
from .networks import Network, network_from_config

# Bounds far beyond any real model file, and small enough to check in well under a second.
MAX_LAYERS = 10_000
MAX_CONFIG_CHARS = 2**20
MAX_ALPHA_VECTORS = 100_000  # alpha per inner step: at most the inner steps a learner takes
MAX_CONFIG_DEPTH = 8  # a saved config nests three levels deep (config, model, sizes)
MAX_HEADER_BYTES = 10_000  # numpy's own bound on a .npy header it reads without trust
DEFLATE_MAX_RATIO = 1032  # deflate expands its input at most about 1032-fold
READ_CHUNK = 2**24  # bytes per read of an array's data

# What decoding damaged bytes can raise (zipfile, zlib, numpy's .npy header parser, json) or
# rebuilding a learner from a damaged config: each means the file is damaged.
DAMAGE = (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError, OverflowError, RuntimeError,
          RecursionError, MemoryError, struct.error, zipfile.BadZipFile, zlib.error)


class Refused(ValueError):
    """A model file's problem, phrased to follow the file's name."""


@dataclass(frozen=True)
class Entry:
    """What an entry of the format may hold: its dtype kinds, dimensions and largest size."""

    description: str
    kinds: str
    ndim: int
    max_bytes: int | None = None  # None: bounded by the model (parameter vectors) or the iteration count


TEXT = Entry("a string", "U", 0, 4 * MAX_CONFIG_CHARS)
INTEGER = Entry("an integer", "iu", 0, 8)
FLOATS = Entry("a float32 or float64 vector", "f", 1)
ENTRIES = {"format": TEXT, "format_version": INTEGER, "config": TEXT, "theta": FLOATS, "alpha": FLOATS,
           "optimizer_m": FLOATS, "optimizer_v": FLOATS, "optimizer_step": INTEGER, "iteration": INTEGER,
           "history": FLOATS}
STATE = ("theta", "alpha", "optimizer_m", "optimizer_v", "optimizer_step", "iteration", "history")
OPTIONAL = ("alpha",)  # Meta-SGD's; Reptile has none


@dataclass(frozen=True)
class Declared:
    """An array as its ``.npy`` header declares it."""

    shape: tuple[int, ...]
    fortran_order: bool
    dtype: np.dtype

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


def shortened(text: str, limit: int = 200) -> str:
    """`text` on one line and at most `limit` characters: a hostile file can make it any length."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shown(value: Any) -> str:
    """A value from a file, for a message."""
    return shortened(repr(value), 60)


def described(error: BaseException) -> str:
    """An error met reading a file, for a message."""
    return shortened(str(error) or type(error).__name__)


class Archive:
    """A model file's zip archive, whose arrays are read only once their headers pass.

    Parameters
    ----------
    file : binary file
        The model file, open for reading.
    """

    def __init__(self, file: IO[bytes]) -> None:
        self._file_size = file.seek(0, io.SEEK_END)
        file.seek(0)
        self._zip = zipfile.ZipFile(file)
        self._names = set(self._zip.namelist())

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exception: object) -> None:
        self._zip.close()

    def __contains__(self, name: str) -> bool:
        return f"{name}.npy" in self._names

    def declared(self, name: str) -> Declared:
        """Entry `name`'s array as its header declares it, checked against the format and
        against the data its entry holds; the data is not read."""
        member, room = self._open(name)
        with member:
            return self._header(name, member, room)

    def read(self, name: str, expected: Declared | None = None) -> np.ndarray:
        """Entry `name`'s array (its header checked as by :meth:`declared`, and equal to
        `expected` if given: the file must not change between the two)."""
        member, room = self._open(name)
        with member:
            declared = self._header(name, member, room)
            if expected is not None and declared != expected:
                raise Refused(f"changed while being read (entry {name!r})")
            flat = np.empty(declared.size, declared.dtype)
            data = flat.view(np.uint8)
            for start in range(0, data.size, READ_CHUNK):
                chunk = member.read(min(READ_CHUNK, data.size - start))
                if len(chunk) < min(READ_CHUNK, data.size - start):
                    raise Refused(f"has a truncated entry {name!r}")
                data[start : start + len(chunk)] = np.frombuffer(chunk, np.uint8)
            if member.read(1):  # reading to the end also makes zipfile check the entry's CRC
                raise Refused(f"has bytes after the data of its entry {name!r}")
        if declared.fortran_order:
            return flat.reshape(declared.shape[::-1]).T
        return flat.reshape(declared.shape)

    def _open(self, name: str) -> tuple[IO[bytes], int]:
        """Entry `name`'s stream, and the bytes it can yield at most."""
        if name not in self:
            raise Refused(f"lacks the entry {name!r}")
        info = self._zip.getinfo(f"{name}.npy")
        if info.flag_bits & 0x1:
            raise Refused(f"has an encrypted entry {name!r}")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise Refused(f"has an entry {name!r} compressed by method {info.compress_type}, which metafast "
                          "does not read")
        if info.compress_size > self._file_size:
            raise Refused(f"has an entry {name!r} longer than the file")
        ratio = 1 if info.compress_type == zipfile.ZIP_STORED else DEFLATE_MAX_RATIO
        return self._zip.open(info), min(info.file_size, ratio * info.compress_size)

    @staticmethod
    def _header(name: str, member: IO[bytes], room: int) -> Declared:
        version = np.lib.format.read_magic(member)
        if version not in ((1, 0), (2, 0)):
            raise Refused(f"has an entry {name!r} in .npy format version {version}, which metafast does not read")
        prefix = _exactly(member, 2 if version == (1, 0) else 4, name)
        length = int.from_bytes(prefix, "little")
        if length > MAX_HEADER_BYTES:
            raise Refused(f"has an entry {name!r} whose header is {length} bytes long")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        header = io.BytesIO(prefix + _exactly(member, length, name))
        try:
            declared = Declared(*read_header(header))
        except Exception as error:  # noqa: BLE001 - numpy's parser of a short text can raise anything (TokenError)
            raise Refused(f"has an entry {name!r} with a damaged header ({described(error)})") from None
        entry, dtype = ENTRIES[name], declared.dtype
        if (dtype.hasobject or dtype.kind not in entry.kinds or dtype.itemsize == 0
                or (entry is FLOATS and dtype.itemsize not in (4, 8)) or len(declared.shape) != entry.ndim):
            raise Refused(f"has an entry {name!r} of dtype {shortened(str(dtype), 40)} and shape "
                          f"{shown(declared.shape)}; it must hold {entry.description}")
        if entry.max_bytes is not None and declared.nbytes > entry.max_bytes:
            raise Refused(f"has an entry {name!r} of {declared.nbytes} bytes, more than {entry.max_bytes}")
        header_bytes = 8 + len(prefix) + length  # magic string and version, then the header
        if declared.nbytes > room - header_bytes:
            raise Refused(f"declares {declared.nbytes} bytes of data for its entry {name!r}, which holds at most "
                          f"{max(room - header_bytes, 0)} bytes")
        return declared


def _exactly(member: IO[bytes], count: int, name: str) -> bytes:
    data = member.read(count)
    if len(data) != count:
        raise Refused(f"has a truncated entry {name!r}")
    return data


def decoded_config(text: str) -> dict[str, Any]:
    """The config entry's JSON object, refused if it is not one or nests too deeply."""
    try:
        config = json.loads(text)
    except RecursionError:  # json's parser recurses once per level
        raise Refused("has a damaged config (nested too deeply)") from None
    except ValueError as error:
        raise Refused(f"has a damaged config ({described(error)})") from None
    if not isinstance(config, dict):
        raise Refused("has a damaged config (not an object)")
    if _depth(config) > MAX_CONFIG_DEPTH:
        raise Refused(f"has a damaged config (nested more than {MAX_CONFIG_DEPTH} levels deep)")
    return config


def _depth(value: Any) -> int:
    """How deep lists and objects nest in a JSON value (without recursion), up to just past
    MAX_CONFIG_DEPTH."""
    deepest, pending = 0, [(value, 1)]
    while pending and deepest <= MAX_CONFIG_DEPTH:
        item, depth = pending.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def checked_model(config: dict[str, Any], kinds: Container[str]) -> tuple[Network, np.dtype]:
    """The model and dtype of a config, after checking what every learner's config holds: a
    kind among `kinds`, a dtype, and a model of at most MAX_LAYERS layers."""
    kind = config.get("kind")
    if not isinstance(kind, str) or kind not in kinds:
        raise Refused(f"holds an unknown learner kind {shown(kind)}")
    dtype = config.get("dtype")
    if not isinstance(dtype, str) or dtype not in ("float32", "float64"):
        raise Refused(f"has a damaged config (dtype {shown(dtype)})")
    model = config.get("model")
    convolutional = isinstance(model, dict) and model.get("type") == "ConvNet"
    layers = model.get("channels" if convolutional else "sizes") if isinstance(model, dict) else None
    if not isinstance(layers, list) or not (1 if convolutional else 2) <= len(layers) <= MAX_LAYERS + 1:
        raise Refused(f"has a damaged config (the model must list 1 to {MAX_LAYERS} blocks' channels or 2 to "
                      f"{MAX_LAYERS + 1} layer widths)")
    try:
        network = network_from_config(model)  # type: ignore[arg-type]  # a dict: checked above
    except (TypeError, ValueError) as error:
        raise Refused(f"has a damaged config (model: {described(error)})") from None
    try:  # one row's pass: an architecture whose activations cannot fit is refused here
        _memory.check(network._impl.workspace_bytes(1, np.dtype(dtype).itemsize), "one row's pass of its model")
    except ValueError as error:
        raise Refused(f"is too large to load: {error}") from None
    return network, np.dtype(dtype)


def checked_state(archive: Archive, model: Network, dtype: np.dtype,
                  learner_bytes: Callable[[int, int], int]) -> dict[str, np.ndarray]:
    """The learner's state entries, read once their headers agree with the model and with
    each other, and the load fits in memory: the arrays, then the learner built from them,
    which keeps ``learner_bytes(parameters, alpha_vectors)`` bytes (the core's sizes)."""
    declared = {name: archive.declared(name) for name in STATE if name not in OPTIONAL or name in archive}
    parameters, architecture = declared["theta"].size, model.num_params
    # theta is the network's parameters, then for a policy one log standard deviation per output.
    if not architecture <= parameters <= architecture + model.output_width:
        raise Refused(f"has {parameters} values in theta, but its model {shown(model)} has "
                      f"{architecture} parameters")
    alphas = declared["alpha"].size if "alpha" in declared else 0
    if alphas % parameters or alphas > MAX_ALPHA_VECTORS * parameters:  # one alpha vector, or one per inner step
        raise Refused(f"has {alphas} values in alpha and {parameters} in theta")
    moments = declared["optimizer_m"].size, declared["optimizer_v"].size
    if moments[0] != moments[1] or moments[0] > parameters + alphas:  # at most a moment per theta and alpha entry
        raise Refused(f"has an optimizer state of {moments[0]} and {moments[1]} values for {parameters} parameters")
    iteration = int(archive.read("iteration", declared["iteration"])[()])
    if declared["history"].size != iteration:
        raise Refused(f"has a history of {declared['history'].size} values for {iteration} meta-iterations")
    needed = sum(entry.nbytes for entry in declared.values()) + learner_bytes(parameters, alphas // parameters)
    try:
        _memory.check(needed, "the learner it holds")
    except ValueError as error:
        raise Refused(f"is too large to load: {error}") from None
    return {name: archive.read(name, entry) for name, entry in declared.items()}

