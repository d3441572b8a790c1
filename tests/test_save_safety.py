"""Saving never destroys what is at the path: only a regular file is replaced (a symbolic link
is written through), modes and owners are kept or follow the umask, no temporary file
outlives a save, and errors name the path the caller gave."""

from __future__ import annotations

import errno
import os
import socket
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

import metafast as mf


def learner(seed=1):
    return mf.MetaSGD(mf.MLP([1, 8, 1]), seed=seed)


def assert_holds(path, saved):
    np.testing.assert_array_equal(mf.load(path).theta, saved.theta)


def temporaries(folder):
    """What a save may leave beside its file: hidden names (the file's own names are not hidden)."""
    return sorted(name for name in os.listdir(folder) if name.startswith("."))


@pytest.fixture
def umask():
    """Sets the umask for one test and restores it."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


def make_fifo(path):
    os.mkfifo(path)


def make_device(path):  # a character device like /dev/null's, inside the test's folder
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs root")


def make_directory(path):
    os.mkdir(path)
    (path / "inside").write_text("kept")


def make_socket(path):
    with socket.socket(socket.AF_UNIX) as server:
        try:
            server.bind(str(path))  # the socket file stays after closing
        except OSError:
            pytest.skip("the temporary folder's path is too long for a socket")


@pytest.mark.parametrize("make, kind", [(make_fifo, stat.S_ISFIFO), (make_device, stat.S_ISCHR),
                                        (make_directory, stat.S_ISDIR), (make_socket, stat.S_ISSOCK)],
                         ids=["fifo", "device", "directory", "socket"])
def test_save_refuses_what_is_not_a_regular_file(tmp_path, make, kind):
    path = tmp_path / "m.npz"
    make(path)
    before = os.lstat(path)
    with pytest.raises(ValueError, match=str(path)):
        learner().save(path)
    after = os.lstat(path)
    assert kind(after.st_mode) and (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    assert temporaries(tmp_path) == []
    if kind is stat.S_ISDIR:
        assert os.listdir(path) == ["inside"]


def test_save_writes_through_a_symbolic_link(tmp_path):
    (tmp_path / "runs").mkdir()
    target, link = tmp_path / "runs" / "m.npz", tmp_path / "latest.npz"
    learner(seed=1).save(target)
    link.symlink_to(os.path.join("runs", "m.npz"))
    saved = learner(seed=2)
    saved.save(link)
    assert os.readlink(link) == os.path.join("runs", "m.npz")
    assert_holds(target, saved)
    assert temporaries(tmp_path) == [] and temporaries(tmp_path / "runs") == []


@pytest.mark.parametrize("target", ["dangling", "directory", "fifo"])
def test_save_refuses_a_link_to_no_regular_file(tmp_path, target):
    pointed, link = tmp_path / "target", tmp_path / "m.npz"
    if target == "directory":
        pointed.mkdir()
    elif target == "fifo":
        os.mkfifo(pointed)
    link.symlink_to(pointed)
    with pytest.raises(ValueError, match=str(link)):
        learner().save(link)
    assert os.readlink(link) == str(pointed) and os.path.lexists(pointed) == (target != "dangling")
    if target == "fifo":
        assert stat.S_ISFIFO(os.lstat(pointed).st_mode)


def test_save_gives_a_hard_linked_path_a_new_inode(tmp_path, umask):
    """Atomicity first: the path gets the new file, the other links keep the old one."""
    path, other = tmp_path / "m.npz", tmp_path / "other.npz"
    old = learner(seed=1)
    old.save(path)
    os.chmod(path, 0o644)
    os.link(path, other)
    new = learner(seed=2)
    new.save(path)
    assert_holds(path, new)
    assert_holds(other, old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert os.stat(path).st_nlink == 1 and os.stat(other).st_nlink == 1


@pytest.mark.parametrize("mode", [0o644, 0o604])
def test_save_keeps_an_existing_files_mode(tmp_path, umask, mode):
    path = tmp_path / "m.npz"
    path.write_bytes(b"")
    os.chmod(path, mode)
    learner().save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_save_as_root_keeps_an_existing_files_owner(tmp_path):
    path = tmp_path / "m.npz"
    path.write_bytes(b"")
    os.chown(path, 12345, 23456)
    learner().save(path)
    assert (os.stat(path).st_uid, os.stat(path).st_gid) == (12345, 23456)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664)])
def test_a_new_file_honours_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    learner().save(tmp_path / "m.npz")
    assert stat.S_IMODE(os.stat(tmp_path / "m.npz").st_mode) == mode


def test_errors_name_the_users_path(tmp_path):
    missing = tmp_path / "missing" / "m.npz"
    with pytest.raises(FileNotFoundError) as error:
        learner().save(missing)
    assert error.value.filename == str(missing)
    too_long = tmp_path / ("m" * 296 + ".npz")
    with pytest.raises(OSError) as error:
        learner().save(too_long)
    assert (error.value.errno, error.value.filename) == (errno.ENAMETOOLONG, str(too_long))
    with pytest.raises(ValueError, match="names no file"):
        learner().save("")
    assert temporaries(tmp_path) == []


def test_a_name_near_the_length_limit_saves(tmp_path):
    """The temporary name is shortened, not the user's."""
    path = tmp_path / ("m" * 251 + ".npz")
    saved = learner()
    saved.save(path)
    assert_holds(path, saved)
    assert temporaries(tmp_path) == []


def test_a_failed_or_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    old = learner(seed=1)
    old.save(path)
    for failure in (KeyboardInterrupt(), OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))):
        def failing_savez(file, **arrays):
            file.write(b"partial")
            raise failure

        monkeypatch.setattr(np, "savez", failing_savez)
        with pytest.raises(type(failure)) as raised:
            learner(seed=2).save(path)
        if isinstance(failure, OSError):
            assert raised.value.filename == str(path)
        monkeypatch.undo()
        assert_holds(path, old)
        assert temporaries(tmp_path) == []


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGHUP"])
def test_a_terminating_signal_during_save_leaves_no_temporary(tmp_path, signal_name):
    """The process still dies of the signal, after removing its temporary file."""
    path = tmp_path / "m.npz"
    old = learner(seed=1)
    old.save(path)
    script = (
        "import os, signal, sys, numpy as np, metafast as mf\n"
        f"signal.signal(signal.{signal_name}, signal.SIG_DFL)\n"  # as it kills (not under nohup)
        "def savez(file, **arrays):\n"
        "    file.write(b'partial')\n"
        f"    os.kill(os.getpid(), signal.{signal_name})\n"
        "np.savez = savez\n"
        "mf.MetaSGD(mf.MLP([1, 8, 1]), seed=2).save(sys.argv[1])\n")
    done = subprocess.run([sys.executable, "-c", script, str(path)], timeout=60)
    assert done.returncode == -getattr(__import__("signal"), signal_name)
    assert_holds(path, old)
    assert temporaries(tmp_path) == []


def test_kill_during_save_leaves_a_loadable_file_and_the_next_save_removes_the_temporary(tmp_path):
    path = tmp_path / "m.npz"
    script = ("import sys, metafast as mf\n"
              "learner = mf.MetaSGD(mf.MLP([1, 1024, 1024, 1]), seed=0)\n"  # 25 MB: a save takes a while
              "learner.save(sys.argv[1]); print('saved', flush=True)\n"
              "while True: learner.save(sys.argv[1])\n")
    rng = np.random.default_rng(0)
    strays: set[str] = set()
    started = time.monotonic()
    for trial in range(8):  # until some kills have landed mid-write
        child = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE)
        assert child.stdout.readline() == b"saved\n"
        time.sleep(rng.uniform(0.0, 0.1))
        child.kill()
        child.wait()
        child.stdout.close()
        assert mf.load(path).theta.size > 10**6
        strays.update(temporaries(tmp_path))
        # Enough, or some after a few seconds (a loaded machine, a sanitized build: slow starts).
        if (len(strays) >= 2 and trial >= 2) or (strays and time.monotonic() - started > 4):
            break
    assert strays, "no kill landed during a save"
    in_progress = strays.pop().rsplit("-", 2)[0] + f"-{os.getpid()}-{'0' * 16}"  # a live process's save
    (tmp_path / in_progress).write_bytes(b"")
    saved = learner()
    saved.save(path)
    assert_holds(path, saved)
    assert temporaries(tmp_path) == [in_progress]


def test_check_destination_refuses_early_what_save_would_refuse(tmp_path):
    from metafast._atomic_file import check_destination

    check_destination(tmp_path / "m.npz", "checkpoint")
    assert os.listdir(tmp_path) == []
    os.mkfifo(tmp_path / "fifo")
    for path, reason in [(tmp_path / "fifo", "is a FIFO"), (tmp_path / "missing" / "m.npz", "No such file"),
                         (tmp_path / ("m" * 300), "too long"), (tmp_path / "fifo" / "m.npz", "Not a directory")]:
        with pytest.raises(ValueError, match=f"^--save: .*{reason}") as error:
            check_destination(path, "--save")
        assert str(path) in str(error.value)
    with pytest.raises(TypeError, match="checkpoint must be a path"):
        check_destination(3, "checkpoint")
    assert os.listdir(tmp_path) == ["fifo"]


def test_fit_checks_its_checkpoint_destination_before_training(tmp_path):
    learner = mf.MetaSGD(mf.MLP([1, 8, 1]))
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for destination in (tmp_path / "missing" / "m.npz", fifo):
        with pytest.raises(ValueError, match="checkpoint"):
            learner.fit(mf.tasks.Sinusoid(), iterations=5, meta_batch=2, progress=False, checkpoint=destination,
                        checkpoint_every=1)
        assert learner.iteration == 0
