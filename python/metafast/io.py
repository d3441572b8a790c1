"""Saving and loading learners: one .npz file, written atomically.

Format (version 1): a NumPy ``.npz`` archive, read without pickle, holding
``format`` ("metafast"), ``format_version`` (1), ``config`` (a JSON string: the learner's
class, its model's architecture and its hyperparameters) and the learner's state arrays
(``theta``; ``alpha`` for Meta-SGD; ``optimizer_m``, ``optimizer_v``, ``optimizer_step``
(Meta-SGD: the meta-optimizer; Reptile: the inner Adam state carried across tasks);
``iteration``, ``history``).

This module knows the format, not the learners: :func:`load` finds the class of a file's
``kind`` among the learners that registered themselves (``metafast._registry``).
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any

import numpy as np

from ._atomic_file import PathLike, write_atomically
from ._registry import LEARNERS

FORMAT = "metafast"
FORMAT_VERSION = 1


def write_archive(path: PathLike, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Writes a metafast file, atomically.

    The archive goes to a temporary file beside ``path``, is synced, and is renamed over
    ``path``: readers see the old file or the new one, never a partial one. Only a regular
    file (or a symbolic link to one, written through) is replaced, keeping its mode; see
    :mod:`metafast._atomic_file` for the whole contract.

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
    payload = {"format": np.array(FORMAT), "format_version": np.array(FORMAT_VERSION),
               "config": np.array(json.dumps(config)), **arrays}
    write_atomically(path, lambda file: np.savez(file, **payload))


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
        The other entries but ``format`` and ``format_version``.

    Raises
    ------
    ValueError
        For anything but a readable metafast file of this format version.
    """
    with open(path, "rb") as file:  # opened here so that a failed read never leaks the handle
        try:
            archive = np.load(file, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            with archive:
                arrays = {name: archive[name] for name in archive.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise ValueError(f"{os.fspath(path)} is not a readable metafast model file ({error})") from None
    if str(arrays.get("format", "")) != FORMAT:
        raise ValueError(f"{os.fspath(path)} is not a metafast model file")
    try:
        version = int(arrays.pop("format_version"))
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{os.fspath(path)} has no readable format version") from None
    if version != FORMAT_VERSION:
        raise ValueError(f"{os.fspath(path)} has format version {version}; this metafast reads version "
                         f"{FORMAT_VERSION}")
    try:
        config = json.loads(str(arrays.pop("config")))
    except (KeyError, json.JSONDecodeError) as error:
        raise ValueError(f"{os.fspath(path)} has a damaged config ({error})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{os.fspath(path)} has a damaged config (not an object)")
    arrays.pop("format")
    return config, arrays


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
        If the file is not a metafast model file, has another format version, or is damaged.
    """
    config, arrays = read_archive(path)
    kind = config.get("kind")
    if not isinstance(kind, str) or kind not in LEARNERS:
        raise ValueError(f"{os.fspath(path)} holds an unknown learner kind {kind!r}")
    try:
        return LEARNERS[kind]._from_saved(config, arrays, num_threads)
    except KeyError as error:
        raise ValueError(f"{os.fspath(path)} lacks the entry {error}") from None
    except (TypeError, AttributeError) as error:
        raise ValueError(f"{os.fspath(path)} has a damaged config ({error})") from None
