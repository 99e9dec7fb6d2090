"""Files that appear whole or not at all, and removing the temporary files a killed process left.

A writer creates ``<dir>/<prefix><random>``, holds an exclusive ``flock`` on it while writing, flushes
it to disk and moves it onto its destination with ``os.replace`` (atomic on POSIX): a reader sees the
old file or the new one, never half of one. A process killed mid-write leaves its temporary file
behind, but its lock dies with it: ``remove_orphaned_temp_files`` removes the files whose lock is
free and leaves alone those another process (a training run saving while an evaluation starts on
the same folder) is still writing. Where ``flock`` is missing (no ``fcntl``, a filesystem without
locks), only files untouched for a day count as orphans.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from typing import BinaryIO, Callable, Iterator, List, Optional, Tuple

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None

logger = logging.getLogger(__name__)

CHECKPOINT_TEMP_PREFIX = ".tmp-"
_UNLOCKED_ORPHAN_AGE_S = 24 * 3600.0


def _try_lock(fd: int, blocking: bool) -> Optional[bool]:
    """Take an exclusive lock on ``fd``: True when taken, False when ``blocking`` is off and another
    process holds it, None where the platform or filesystem has no ``flock`` (Lustre without
    ``-o flock``, for one): writing goes on without a lock, never fails for want of one."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    except OSError:  # ENOSYS, ENOLCK, EOPNOTSUPP ...
        return None
    return True


def _still_named(fd: int, path: str) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (a cleaner may have removed it)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _open_for_writing(fd: int) -> BinaryIO:
    return os.fdopen(fd, "wb")


@contextlib.contextmanager
def locked_temp_file(directory: str, prefix: str) -> Iterator[Tuple[BinaryIO, str]]:
    """``(file, path)`` of a new temporary file in ``directory``, locked until the block ends; the
    file is removed at the end unless the block moved it away."""
    while True:
        fd, temp_path = tempfile.mkstemp(dir=directory, prefix=prefix)
        _try_lock(fd, blocking=True)  # a cleaner that locked it first (orphan check) releases it at once
        if _still_named(fd, temp_path):
            break
        os.close(fd)  # that cleaner removed it: take another name
    file = _open_for_writing(fd)
    try:
        yield file, temp_path
    finally:
        file.close()
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp_path)


class _ErrorRecordingFile:
    """Forwards writes to ``file`` and remembers the first ``OSError`` one raised: ``torch.save``
    reports a failed write as a ``RuntimeError`` that no longer says why."""

    def __init__(self, file: BinaryIO):
        self._file = file
        self.os_error: Optional[OSError] = None

    def write(self, data) -> int:
        try:
            return self._file.write(data)
        except OSError as error:
            self.os_error = self.os_error or error
            raise

    def flush(self) -> None:
        self._file.flush()


def write_atomically(
    path: str, write: Callable[[BinaryIO], object], verify: Optional[Callable[[str], None]] = None
) -> None:
    """Make ``path`` hold what ``write(file)`` writes, or leave it as it was.

    ``verify(temp_path)``, when given, checks the complete temporary file before it replaces
    ``path`` and raises to abandon it. A failed write (disk full, quota, I/O error) raises
    ``OSError`` with the cause's errno and message and ``filename`` = ``path``; nothing is left behind.
    """
    directory = os.path.dirname(path) or "."
    try:
        with locked_temp_file(directory, CHECKPOINT_TEMP_PREFIX) as (file, temp_path):
            recorder = _ErrorRecordingFile(file)
            try:
                write(recorder)
            except Exception as error:
                if recorder.os_error is None or error is recorder.os_error:
                    raise
                raise recorder.os_error from error
            file.flush()
            os.fsync(file.fileno())  # a full disk may only say so here (delayed allocation, NFS)
            if verify is not None:
                verify(temp_path)
            os.replace(temp_path, path)
    except OSError as error:
        raise OSError(error.errno, error.strerror or str(error), path) from error


def remove_orphaned_temp_files(directory: str, prefix: str = CHECKPOINT_TEMP_PREFIX) -> List[str]:
    """Remove the ``<prefix>*`` files in ``directory`` that no live process is writing (left by a
    kill); returns their paths. A missing ``directory`` has none."""
    try:
        names = sorted(name for name in os.listdir(directory) if name.startswith(prefix))
    except OSError:  # missing, not a folder, unreadable: nothing to clean here
        return []
    removed = []
    for name in names:
        path = os.path.join(directory, name)
        if _remove_if_orphaned(path):
            removed.append(path)
    if removed:
        logger.info("Removed %d temporary file(s) left by an interrupted write in %s: %s",
                    len(removed), directory, ", ".join(os.path.basename(p) for p in removed))
    return removed


def _remove_if_orphaned(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDWR)  # NFS emulates flock with POSIX locks: exclusive needs write access
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return False
    try:
        locked = _try_lock(fd, blocking=False)
        if locked is False:
            return False  # being written
        if locked is None and time.time() - os.fstat(fd).st_mtime < _UNLOCKED_ORPHAN_AGE_S:
            return False  # no lock to tell: only old files count as orphans
        if not _still_named(fd, path):
            return False  # already moved or removed
        os.remove(path)
        return True
    except OSError as error:
        logger.warning("could not remove the temporary file %s: %s", path, error)
        return False
    finally:
        os.close(fd)
