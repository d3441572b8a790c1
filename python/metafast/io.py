"""Saving and loading learners: one .npz file, written atomically.

Format (version 1): a NumPy ``.npz`` archive, read without pickle, holding
``format`` ("metafast"), ``format_version`` (1), ``config`` (a JSON string: the learner's
class, its model's architecture and its hyperparameters) and the learner's state arrays
(``theta``; ``alpha`` for Meta-SGD and Meta-SGD for RL; ``optimizer_m``, ``optimizer_v``,
``optimizer_step`` (Meta-SGD, MAML and the RL learner: the meta-optimizer; Reptile: the
inner Adam state carried across tasks); ``iteration``, ``history``).

This module knows the format, not the learners: :func:`load` finds the class of a file's
``kind`` among the learners that registered themselves (``metafast._registry``).

A pickled learner is this format too: its payload is the bytes ``save`` would write, read back
through the same checks as a file (:func:`unpickled_learner`). Still, unpickling runs whatever
code a payload names: accept pickles only from where you would accept code, and model files
(``save``/``load``) from anyone, as NumPy advises for ``allow_pickle``.
"""

from __future__ import annotations

import io
import json
import os
import stat
from typing import IO, Any

import numpy as np

from . import _archive_checks as checks, _validation
from ._atomic_file import PathLike, write_atomically
from ._registry import LEARNERS

FORMAT = "metafast"
FORMAT_VERSION = 1


def write_archive(path: PathLike, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Writes a metafast file, atomically.

    The archive goes to a temporary file beside ``path``, is synced, and is renamed over
    ``path``: readers see the old file or the new one, never a partial one. Only a regular
    file (or a symbolic link to one, written through) is replaced, keeping its mode; see
    ``metafast._atomic_file`` for the whole contract.

    Parameters
    ----------
    path : str or path-like
        The file to write (replaced if it exists).
    config : dict
        The learner's configuration (JSON values), stored as the entry ``config``.
    arrays : dict of str to numpy.ndarray
        The learner's state, one entry each.

    Raises
    ------
    ValueError
        If ``path`` exists and is not a regular file.
    OSError
        If the file cannot be written, naming ``path``.
    """
    write_atomically(path, lambda file: _write(file, config, arrays))


def archive_bytes(config: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    """The bytes :func:`write_archive` would write: what a learner pickles as."""
    buffer = io.BytesIO()
    _write(buffer, config, arrays)
    return buffer.getvalue()


def _write(file: IO[bytes], config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    payload = {"format": np.array(FORMAT), "format_version": np.array(FORMAT_VERSION),
               "config": np.array(json.dumps(config)), **arrays}
    np.savez(file, **payload)


def read_archive(path: PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Reads a metafast file.

    Parameters
    ----------
    path : str or path-like
        The file.

    Returns
    -------
    config : dict
        The decoded ``config`` entry.
    arrays : dict of str to numpy.ndarray
        The learner's state entries.

    Raises
    ------
    ValueError
        Naming the file, for anything but a readable metafast file of this format version whose
        config, array headers and data agree and fit in memory. Every size the file declares is
        checked before anything is allocated for it (``metafast._archive_checks``).
    """
    name = os.fspath(path)
    # A device or pipe would be read without end (/dev/zero) or block: refuse it before opening.
    if os.path.exists(name) and not stat.S_ISREG(os.stat(name).st_mode):
        raise ValueError(f"{name} is not a regular file")
    with open(path, "rb") as file:  # opened here so that a failed read never leaks the handle
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):  # replaced since the check above
            raise ValueError(f"{name} is not a regular file")
        return _read(file, name)


def _read(file: IO[bytes], name: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """:func:`read_archive` on an open file (or a pickle's payload), named ``name`` in errors."""
    try:
        with checks.Archive(file) as archive:
            if "format" not in archive or str(archive.read("format")[()]) != FORMAT:
                raise checks.Refused("is not a metafast model file")
            if "format_version" not in archive:
                raise checks.Refused("has no readable format version")
            version = int(archive.read("format_version")[()])
            if version != FORMAT_VERSION:
                raise checks.Refused(f"has format version {version}; this metafast reads version {FORMAT_VERSION}")
            if "config" not in archive:
                raise checks.Refused("has no config")
            config = checks.decoded_config(str(archive.read("config")[()]))
            model, dtype = checks.checked_model(config, LEARNERS)
            learner = LEARNERS[config["kind"]]
            return config, checks.checked_state(archive, model, dtype,
                                                lambda n, alphas: learner._learner_bytes(n, alphas, dtype))
    except checks.Refused as refusal:
        raise ValueError(f"{name} {refusal}") from None
    except MemoryError:
        raise MemoryError(f"not enough memory to read {name}") from None
    except checks.DAMAGE as error:
        raise ValueError(f"{name} is not a readable metafast model file ({checks.described(error)})") from None


def load(path: PathLike, num_threads: int | None = None) -> Any:
    """Loads a learner saved with ``learner.save(path)``.

    Parameters
    ----------
    path : str or path-like
        The file.
    num_threads : int or None
        Threads for the loaded learner (None: all cores); not stored in the file.

    Returns
    -------
    MetaSGD, Reptile or metafast.rl.MetaSGDRL
        The learner, exactly as it was saved: parameters, optimizer state, iteration count,
        history and (for the supervised learners) the task family of its last ``fit``.

    Raises
    ------
    ValueError
        If the file is not a metafast model file, has another format version, or is damaged
        (the message names the file); a hostile file is refused so too, in bounded time and
        memory (:func:`metafast.io.read_archive`).
    """
    _validation.num_threads(num_threads)  # the caller's mistake, not the file's
    return _learner(*read_archive(path), num_threads, os.fspath(path))


def unpickled_learner(payload: bytes, tasks: Any, num_threads: int | None) -> Any:
    """The learner a pickle holds (what ``Learner.__reduce__`` gives pickle to call).

    Parameters
    ----------
    payload : bytes
        What :func:`write_archive` would write for the learner; read through the same checks
        as a file, so a tampered payload is refused as a damaged file would be.
    tasks : TaskFamily, GymTasks or None
        What the payload describes but does not hold: the family of a supervised learner's
        last ``fit`` (a data-set family's data), or an RL learner's Python environments.
    num_threads : int or None
        The learner's thread count.
    """
    if not isinstance(payload, bytes):
        raise TypeError(f"a pickled learner's payload must be bytes, got {type(payload).__name__}")
    name = "the pickled learner"
    _validation.num_threads(num_threads)
    return _learner(*_read(io.BytesIO(payload), name), num_threads, name, tasks)


def _learner(config: dict[str, Any], arrays: dict[str, np.ndarray], num_threads: int | None, name: str,
             tasks: Any = None) -> Any:
    """The learner of a checked config and state (and a pickle's ``tasks``); ``name`` names the
    source in errors."""
    try:
        return LEARNERS[config["kind"]]._rebuilt(config, arrays, num_threads, tasks)
    except checks.Refused as refusal:
        raise ValueError(f"{name} {refusal}") from None
    except KeyError as error:
        raise ValueError(f"{name} lacks the entry {checks.described(error)}") from None
    except MemoryError:
        raise MemoryError(f"not enough memory to load {name}") from None
    except checks.DAMAGE as error:  # what a config the checks let through can still do to a constructor
        raise ValueError(f"{name} has a damaged config or state ({checks.described(error)})") from None
