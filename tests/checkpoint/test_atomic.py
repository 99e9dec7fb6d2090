"""Atomic writes: the destination holds the old bytes or the new ones; temporary files left by a
killed process are removed, those a live process is writing are not."""
import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from maskrcnn_multi.checkpoint import atomic
from maskrcnn_multi.checkpoint.atomic import locked_temp_file, remove_orphaned_temp_files, write_atomically

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class FullDisk:
    """A file on a disk with ``capacity`` bytes left: writes what fits, then fails with ENOSPC."""

    def __init__(self, file, capacity):
        self._file, self._left = file, capacity

    def write(self, data):
        if len(data) > self._left:
            self._file.write(bytes(data[: self._left]))
            self._left = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._left -= len(data)
        return self._file.write(data)

    def __getattr__(self, name):  # flush, fileno, close
        return getattr(self._file, name)


def fill_disk_after(monkeypatch, capacity):
    """Every temporary file written from now on sits on a disk that is full after ``capacity`` bytes."""
    real_open = atomic._open_for_writing
    monkeypatch.setattr(atomic, "_open_for_writing", lambda fd: FullDisk(real_open(fd), capacity))


def _names(directory):
    return sorted(os.listdir(directory))


def test_write_atomically_replaces_the_file_whole(tmp_path):
    path = tmp_path / "record"
    path.write_bytes(b"old")
    write_atomically(str(path), lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new" and _names(tmp_path) == ["record"]


def test_failed_verification_leaves_the_old_file(tmp_path):
    path = tmp_path / "record"
    path.write_bytes(b"old")

    def refuse(temp_path):
        assert open(temp_path, "rb").read() == b"new"  # complete and on disk when verified
        raise TypeError("not acceptable")

    with pytest.raises(TypeError, match="not acceptable"):
        write_atomically(str(path), lambda f: f.write(b"new"), verify=refuse)
    assert path.read_bytes() == b"old" and _names(tmp_path) == ["record"]


def test_disk_full_inside_torch_save_is_an_oserror_naming_the_file(tmp_path, monkeypatch):
    path = tmp_path / "model.pth"
    path.write_bytes(b"previous checkpoint")
    fill_disk_after(monkeypatch, 4096)
    with pytest.raises(OSError) as info:  # torch.save itself raises RuntimeError("... unexpected pos ...")
        write_atomically(str(path), lambda f: torch.save({"w": torch.zeros(10000)}, f))
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert path.read_bytes() == b"previous checkpoint" and _names(tmp_path) == ["model.pth"]


def test_live_temp_files_are_kept_and_orphans_removed(tmp_path):
    orphan = tmp_path / ".tmp-orphan"
    orphan.write_bytes(b"half a checkpoint")
    (tmp_path / "model_0000009.pth").write_bytes(b"complete")
    with locked_temp_file(str(tmp_path), ".tmp-") as (file, live_path):
        file.write(b"being written")
        assert remove_orphaned_temp_files(str(tmp_path)) == [str(orphan)]
        assert os.path.exists(live_path)
    assert _names(tmp_path) == ["model_0000009.pth"]
    assert remove_orphaned_temp_files(str(tmp_path / "missing")) == []


def test_temp_file_of_a_killed_process_is_an_orphan(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal
        from maskrcnn_multi.checkpoint.atomic import locked_temp_file
        with locked_temp_file({str(tmp_path)!r}, ".tmp-") as (file, path):
            file.write(b"x" * 100000)
            file.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    result = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)))
    assert result.returncode == -signal.SIGKILL
    (left,) = _names(tmp_path)
    assert left.startswith(".tmp-")
    assert remove_orphaned_temp_files(str(tmp_path)) == [str(tmp_path / left)]
    assert _names(tmp_path) == []


def test_writer_takes_another_name_when_a_cleaner_removed_its_new_file(tmp_path, monkeypatch):
    # the cleaner can lock a brand-new temp file in the instant before its writer does
    real_lock, calls = atomic._try_lock, []

    def lock_after_a_cleaner(fd, blocking):
        calls.append(fd)
        if len(calls) == 1:
            remove_orphaned_temp_files(str(tmp_path))
        return real_lock(fd, blocking)

    monkeypatch.setattr(atomic, "_try_lock", lock_after_a_cleaner)
    write_atomically(str(tmp_path / "record"), lambda f: f.write(b"new"))
    assert (tmp_path / "record").read_bytes() == b"new" and _names(tmp_path) == ["record"]
    assert len(calls) == 3  # the writer, the cleaner (wins, removes it), the writer on a new file


def test_without_flock_saving_works_and_only_old_temp_files_are_orphans(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_try_lock", lambda fd, blocking: None)  # e.g. Lustre without -o flock
    write_atomically(str(tmp_path / "record"), lambda f: f.write(b"new"))
    fresh, old = tmp_path / ".tmp-fresh", tmp_path / ".tmp-old"
    fresh.write_bytes(b"maybe being written")
    old.write_bytes(b"left by a kill")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (two_days_ago, two_days_ago))
    assert remove_orphaned_temp_files(str(tmp_path)) == [str(old)]
    assert _names(tmp_path) == [".tmp-fresh", "record"]
