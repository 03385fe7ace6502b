"""Writing a report or a picture to `-o FILE`: whole or not at all, never replacing what it should write to.

- A regular file (or a path not there yet) is written atomically: the data goes to an unnamed file in
  the target's directory (Linux's O_TMPFILE: a process killed mid-write leaves nothing behind),
  which is then renamed over the target. A symlink is followed: the file it points to is replaced,
  the link stays.
- Anything else — a device (`/dev/stdout`, `/dev/full`), a pipe — is written directly.
- Never over an input of the run (the same file by any name: a symlink, a hard link), and never over
  a file with other hard links (they would keep the old content): both are refused. A file that is
  replaced keeps its permissions (a private 0600 report stays private).
- Any failure (a missing or read-only directory, a full disk) is a UsageError: exit 2.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import tempfile

from .errors import UsageError


def write_file(path: str, data, inputs=()) -> None:
    """Write `data` (text or bytes) to `path` as described above; `inputs`: the files this run reads."""
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else bytes(data)
    try:
        try:
            info = os.stat(path)
        except FileNotFoundError:
            info = None
        if info is not None and not stat.S_ISREG(info.st_mode):
            _write_directly(path, raw)
            return
        why = refusal(path, inputs)
        if why:
            raise UsageError(why)
        _write_atomically(os.path.realpath(path), raw, stat.S_IMODE(info.st_mode) if info is not None else _mode())
    except OSError as err:
        raise UsageError(f"cannot write {path}: {err.strerror or err}") from None


def refusal(path: str, inputs=()) -> str | None:
    """Why `-o path` must not be written — it is one of `inputs` by some name, or a regular file with
    other hard links — or None. Checked before the work starts, and again when writing."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    for source in inputs:
        if source and str(source) != "-" and _same_file(info, source):
            return f"-o {path} is {source}, an input of this run: the report would replace it; write it elsewhere"
    if info.st_nlink > 1:
        return f"-o {path} has {info.st_nlink - 1} other hard link(s), which would keep the old content; write it elsewhere"
    return None


def _same_file(info: os.stat_result, path) -> bool:
    try:
        other = os.stat(path)
    except OSError:
        return False
    return (other.st_dev, other.st_ino) == (info.st_dev, info.st_ino)


def _write_directly(path: str, raw: bytes) -> None:
    # opened without waiting (a FIFO nobody reads is "cannot write", never a hang), then written as blocking
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.set_blocking(fd, True)
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)  # no fsync: a terminal or a pipe cannot be synced


def _mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _write_atomically(target: str, raw: bytes, mode: int) -> None:
    directory = os.path.dirname(target) or "."
    fd = None
    if hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd"):
        try:
            fd = os.open(directory, os.O_TMPFILE | os.O_WRONLY, mode)
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
    if fd is None:
        return _write_with_a_named_temporary(directory, target, raw, mode)
    try:
        os.fchmod(fd, mode)  # the umask narrowed it at open: the target's own mode is wanted
        _write_all(fd, raw)
        name = os.path.join(directory, f".gradcheck-{secrets.token_hex(6)}.tmp")
        try:
            os.link(f"/proc/self/fd/{fd}", name, follow_symlinks=True)
        except OSError:  # some kernels and sandboxes refuse to link /proc's magic links
            return _write_with_a_named_temporary(directory, target, raw, mode)
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


def _write_with_a_named_temporary(directory: str, target: str, raw: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".gradcheck-", suffix=".tmp")
    try:
        try:
            _write_all(fd, raw)
        finally:
            os.close(fd)
        os.chmod(tmp, mode)  # mkstemp makes 0600: the target's mode, or the usual one for a new file
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
