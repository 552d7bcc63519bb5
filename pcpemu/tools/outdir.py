"""Output paths pcpemu writes: checked before any work, replaced in one atomic step.

A report directory is written whole into a hidden temporary directory beside
its destination, then swapped into place with one ``renameat2(RENAME_EXCHANGE)``
(or renamed, when nothing is there yet), so a kill at any moment leaves the old
report or the new one at the path, never neither. The temporary directories
carry the writer's pid; the next run removes those of dead processes. Only a
directory pcpemu wrote (it holds the marker file, e.g. report.json) or an empty
one is ever replaced. Everything written follows the umask.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import tempfile
from typing import Callable

from ..errors import OutputPathError

__all__ = ["check_file", "check_output_dir", "clean_stale", "replace_dir", "umask", "write_bytes_atomic",
           "write_text_atomic"]

TMP_PREFIX = ".pcpemu-report-"
_TMP_NAME = re.compile(re.escape(TMP_PREFIX) + r"(\d+)-")
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def umask() -> int:
    """The process umask, read without changing it (Linux 4.7+), else by setting it back."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _parent(path: str) -> str:
    return os.path.dirname(os.path.abspath(path)) or "."


def _check_parent(path: str, what: str) -> str:
    parent = _parent(path)
    if not os.path.isdir(parent):
        raise OutputPathError(f"{what} {path}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"{what} {path}: cannot write in {parent} (permission denied)")
    return parent


def check_output_dir(path: str, marker: str = "report.json", what: str = "output") -> None:
    """Refuse, before any work, a path pcpemu may not write a directory to.

    Allowed: a new name in a writable directory, an empty directory, or a
    directory pcpemu wrote before (it holds ``marker``).

    :raises OutputPathError: naming the path and why.
    """
    _check_parent(path, what)
    if os.path.islink(path):
        raise OutputPathError(f"{what} {path}: is a symbolic link; name a directory pcpemu may replace")
    if not os.path.lexists(path):
        return
    if not os.path.isdir(path):
        raise OutputPathError(f"{what} {path}: exists and is not a directory; pcpemu will not replace it")
    if os.listdir(path) and not os.path.isfile(os.path.join(path, marker)):
        raise OutputPathError(f"{what} {path}: is a directory pcpemu did not write (no {marker}); "
                              "remove it or choose another path")


def check_file(path: str, what: str = "output") -> None:
    """Refuse, before any work, a path a file cannot be written to (a directory,
    a missing or unwritable parent, an unwritable file).

    :raises OutputPathError: naming the path and why.
    """
    _check_parent(path, what)
    if os.path.isdir(path):
        raise OutputPathError(f"{what} {path}: is a directory; name a file")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise OutputPathError(f"{what} {path}: is not writable (permission denied)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(parent: str) -> list[str]:
    """Remove the temporary directories that killed writers left in ``parent``.

    :return: the paths removed.
    """
    removed = []
    for name in os.listdir(parent):
        m = _TMP_NAME.match(name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
            removed.append(os.path.join(parent, name))
    return removed


def _exchange(a: str, b: str) -> bool:
    # renameat2(RENAME_EXCHANGE): swap two paths in one step. False where the
    # C library or the filesystem lacks it.
    fn = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), b)


def _new_tmp(parent: str) -> str:
    tmp = tempfile.mkdtemp(dir=parent, prefix=f"{TMP_PREFIX}{os.getpid()}-")
    os.chmod(tmp, 0o777 & ~umask())          # mkdtemp makes it 0700
    return tmp


def replace_dir(path: str, fill: Callable[[str], None], marker: str = "report.json") -> None:
    """Write a directory with ``fill(tmpdir)`` and put it at ``path`` in one step.

    :raises OutputPathError: for a path check_output_dir refuses (nothing written).
    """
    check_output_dir(path, marker)
    parent = _parent(path)
    clean_stale(parent)
    tmp = _new_tmp(parent)
    try:
        fill(tmp)
        if not os.path.lexists(path):
            os.rename(tmp, path)
            return
        if not _exchange(tmp, path):
            # No RENAME_EXCHANGE here: two renames, with a window where the
            # path is empty; the old report then survives in a stale tmp dir.
            old = _new_tmp(parent)
            os.rename(path, os.path.join(old, "r"))
            os.rename(tmp, path)
            tmp = old
        shutil.rmtree(tmp)                   # now the old report
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text_atomic(path: str, text: str) -> str:
    """Write a text file through a temporary file and a rename, with the umask's mode."""
    return write_bytes_atomic(path, text.encode())


def write_bytes_atomic(path: str, data: bytes) -> str:
    """Write a file through a temporary file and a rename, with the umask's mode."""
    fd, tmp = tempfile.mkstemp(dir=_parent(path), prefix=f".{os.path.basename(path)}.")
    try:
        os.fchmod(fd, 0o666 & ~umask())      # mkstemp makes it 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path
