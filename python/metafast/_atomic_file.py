"""Writing a file atomically without harming what is at its path.

The contract (the README's "Saving and loading" states it for users):

- Only a regular file is replaced. A path that names a directory, a FIFO, a device node or
  a socket is refused with a ValueError, before anything is written.
- A symbolic link is written through: its target file is replaced (atomically, in the
  target's folder) and the link is kept. A link to anything but a regular file is refused,
  and so is a dangling link (whose target save would have to create wherever it points).
- The new file keeps an existing file's mode (and its owner where the process may set it);
  a new file gets ``0o666 & ~umask``, as ``open(path, "w")`` gives.
- Atomicity comes first: the file is written under a temporary name in the same folder,
  synced, renamed over the path and the folder synced, so readers see the old file or the
  new one. A path with several hard links therefore gets a new inode: the other links keep
  the old content.
- The temporary file is removed on any exception (KeyboardInterrupt included) and on
  SIGTERM or SIGHUP; one left by a kill is recognised by its name,
  ``.NAME.metafast-tmp-<pid>-<random>``, and removed by the next save of NAME once its
  process is gone (or after an hour).
- Errors name the path the caller gave, never the temporary one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import signal
import stat
import threading
import time
from typing import IO, Any, Callable, Iterator, Optional, Tuple, Union

PathLike = Union[str, "os.PathLike[str]"]

MARK = ".metafast-tmp-"
STALE_SECONDS = 3600.0  # a temporary file this old is left over, whatever its pid says
_PID_DIGITS = 10        # room kept in the name for any pid, so that a name's stem never depends on it
_RANDOM_DIGITS = 16
_TEMPORARY = re.compile(rf"\.(?P<stem>.+){re.escape(MARK)}(?P<pid>[0-9]+)-[0-9a-f]{{{_RANDOM_DIGITS}}}", re.DOTALL)

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))


def write_atomically(path: PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Replaces the regular file at ``path`` (or creates it) with what ``write(file)`` writes.

    Raises
    ------
    ValueError
        If ``path`` exists and is not a regular file or a symbolic link to one.
    OSError
        If the file cannot be written (missing folder, permissions, name too long, disk
        full), with ``path`` as the file name.
    """
    shown = _shown(path, "path")
    try:
        target, existing = _destination(path, shown)
        folder, name = os.path.split(target)
        folder = folder or "."
        _remove_stale_temporaries(folder, name)
        with _termination_raises():
            temporary, handle = _create_temporary(folder, name)
            try:
                with os.fdopen(handle, "wb") as file:
                    if existing is not None:
                        _copy_owner_and_mode(file.fileno(), existing)
                    write(file)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temporary, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        _sync_folder(folder)
    except OSError as error:
        raise _naming(error, shown) from None


def check_destination(path: Any, name: str) -> None:
    """Checks, before long work that ends in a save, that a file can be saved at ``path``.

    Refuses what :func:`write_atomically` would refuse, and a folder that is missing or not
    writable, or a name too long, by creating and removing a temporary file where the save
    would.

    Raises
    ------
    TypeError
        If ``path`` is not a path.
    ValueError
        Naming the argument ``name``, if no file can be saved at ``path``.
    """
    shown = _shown(path, name)
    try:
        target, _ = _destination(path, shown)
        folder, base = os.path.split(target)
        temporary, handle = _create_temporary(folder or ".", base)
        os.close(handle)
        os.unlink(temporary)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None
    except OSError as error:
        raise ValueError(f"{name}: cannot write {shown}: {error.strerror or error}") from None


def _shown(path: Any, name: str) -> str:
    """``path`` as the messages show it."""
    try:
        return os.fsdecode(os.fspath(path))
    except TypeError:
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(path).__name__}") from None


def _destination(path: PathLike, shown: str) -> Tuple[str, Optional[os.stat_result]]:
    """The file a save of ``path`` replaces (a symbolic link's target) and its status, or None
    if there is none yet."""
    link = os.path.islink(path)
    try:
        existing: Optional[os.stat_result] = os.stat(path)  # through links
    except FileNotFoundError:
        if link:
            raise ValueError(f"{shown} is a dangling symbolic link (to {os.readlink(path)}); save does not create "
                             "a link's target") from None
        existing = None
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        kind = next((kind for test, kind in _KINDS if test(existing.st_mode)), "not a regular file")
        what = f"a symbolic link to {kind}" if link else kind
        raise ValueError(f"{shown} is {what}; save replaces only a regular file")
    target = os.path.realpath(path) if link else os.fspath(path)
    if not os.path.basename(target):
        raise ValueError(f"{shown!r} names no file")
    return os.fsdecode(target), existing


def _stem(folder: str, name: str) -> str:
    """As much of ``name`` as a temporary name in ``folder`` has room for."""
    try:
        room = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        room = 255
    room -= 1 + len(MARK) + _PID_DIGITS + 1 + _RANDOM_DIGITS
    while len(os.fsencode(name)) > room and len(name) > 1:
        name = name[:-1]
    return name


def _create_temporary(folder: str, name: str) -> Tuple[str, int]:
    """A new empty temporary file for ``name`` in ``folder``: its path and an open handle.
    Created as ``open`` creates a file, so that the umask (and a default ACL) applies."""
    random = secrets.token_hex(_RANDOM_DIGITS // 2)
    temporary = os.path.join(folder, f".{_stem(folder, name)}{MARK}{os.getpid()}-{random}")
    return temporary, os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)


def _copy_owner_and_mode(handle: int, existing: os.stat_result) -> None:
    """Gives the new file the replaced one's owner (where allowed) and mode."""
    current = os.fstat(handle)
    if (current.st_uid, current.st_gid) != (existing.st_uid, existing.st_gid):
        with contextlib.suppress(PermissionError):  # only root may give a file away
            os.fchown(handle, existing.st_uid, existing.st_gid)
    os.fchmod(handle, stat.S_IMODE(existing.st_mode))  # after fchown, which clears set-id bits


def _remove_stale_temporaries(folder: str, name: str) -> None:
    """Removes the temporary files of earlier saves of ``name`` whose process is gone."""
    stem = _stem(folder, name)
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            match = _TEMPORARY.fullmatch(entry.name)
            if match is None or match["stem"] != stem:
                continue
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False) and (
                        not _running(int(match["pid"]))
                        or time.time() - entry.stat(follow_symlinks=False).st_mtime > STALE_SECONDS):
                    os.unlink(entry.path)


def _running(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # someone else's
        return True
    return True


def _sync_folder(folder: str) -> None:
    """Makes the rename durable; some file systems cannot sync a folder, which is no error."""
    try:
        handle = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except PermissionError:  # a folder one may write but not read
        return
    try:
        os.fsync(handle)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(handle)


def _naming(error: OSError, shown: str) -> OSError:
    """``error`` about the user's path ``shown`` instead of the file it was raised for."""
    if error.errno is None:
        return error
    return type(error)(error.errno, error.strerror, shown)


class _Terminated(BaseException):
    """A terminating signal, raised so that the temporary file is removed before dying of it."""

    def __init__(self, number: int) -> None:
        super().__init__(number)
        self.number = number


@contextlib.contextmanager
def _termination_raises() -> Iterator[None]:
    """While the temporary file exists, SIGTERM and SIGHUP (where they would kill the process
    and this is the main thread) raise, and the process dies of them once it is removed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def terminated(number: int, frame: Any) -> None:
        raise _Terminated(number)

    for number in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(number) is signal.SIG_DFL:
            previous[number] = signal.signal(number, terminated)
    try:
        yield
    except _Terminated as termination:
        for number, handler in previous.items():
            signal.signal(number, handler)
        signal.raise_signal(termination.number)  # the default action: the process ends here
        raise
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
