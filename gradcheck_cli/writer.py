"""Writing a report or a picture to `-o FILE`: whole or not at all, never replacing what it should write to.

- A regular file (or a path not there yet) is written atomically: the data goes to an unnamed file in
  the target's directory (Linux's O_TMPFILE: a process killed mid-write leaves nothing behind),
  which is then renamed over the target. A symlink is followed: the file it points to is replaced,
  the link stays.
- Anything else — a device (`/dev/stdout`, `/dev/full`), a pipe — is written directly.
- Any failure (a missing or read-only directory, a full disk) is a UsageError: exit 2.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import tempfile

from .errors import UsageError


def write_file(path: str, data) -> None:
    """Write `data` (text or bytes) to `path` as described above."""
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else bytes(data)
    try:
        try:
            info = os.stat(path)
        except FileNotFoundError:
            info = None
        if info is not None and not stat.S_ISREG(info.st_mode):
            _write_directly(path, raw)
        else:
            _write_atomically(os.path.realpath(path), raw)
    except OSError as err:
        raise UsageError(f"cannot write {path}: {err.strerror or err}") from None


def _write_directly(path: str, raw: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)  # no fsync: a terminal or a pipe cannot be synced


def _mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _write_atomically(target: str, raw: bytes) -> None:
    directory = os.path.dirname(target) or "."
    fd = None
    if hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd"):
        try:
            fd = os.open(directory, os.O_TMPFILE | os.O_WRONLY, _mode())
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
    if fd is None:
        return _write_with_a_named_temporary(directory, target, raw)
    try:
        _write_all(fd, raw)
        name = os.path.join(directory, f".gradcheck-{secrets.token_hex(6)}.tmp")
        try:
            os.link(f"/proc/self/fd/{fd}", name, follow_symlinks=True)
        except OSError:  # some kernels and sandboxes refuse to link /proc's magic links
            return _write_with_a_named_temporary(directory, target, raw)
        try:
            os.replace(name, target)
        except BaseException:
            os.unlink(name)
            raise
    finally:
        os.close(fd)


def _write_all(fd: int, raw: bytes) -> None:
    view = memoryview(raw)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)


def _write_with_a_named_temporary(directory: str, target: str, raw: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".gradcheck-", suffix=".tmp")
    try:
        try:
            _write_all(fd, raw)
        finally:
            os.close(fd)
        os.chmod(tmp, _mode())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
