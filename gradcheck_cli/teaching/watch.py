"""A running submission's processes and files, seen from outside: every process it started (by its
sandbox's PID namespace, or by its session and the token in its environment), the memory they hold,
and the bytes of the files in its folder. Read from /proc; nothing here asks the submission."""

from __future__ import annotations

import os

def _children(pid: int) -> list:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            return [int(c) for c in f.read().split()]
    except (OSError, ValueError):
        return []


def processes_of(leader: int, sandboxed: bool, token: bytes = b"") -> list:
    """The submission's processes: in a sandbox, every process of its PID namespace (none can leave
    it); without one, those of its session, and any carrying its token in their environment (one
    that starts a session of its own and clears its environment is not found: only the sandbox
    closes that door)."""
    if sandboxed:
        inside = _children(leader)  # bwrap's child: the namespace's first process
        try:
            namespace = os.readlink(f"/proc/{inside[0]}/ns/pid") if inside else None
        except OSError:
            namespace = None
        if namespace is None:
            return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            if sandboxed:
                if os.readlink(f"/proc/{pid}/ns/pid") == namespace:
                    found.append(pid)
            else:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
                if int(fields[3]) == leader:  # its session
                    found.append(pid)
                elif token and pid != os.getpid():
                    with open(f"/proc/{pid}/environ", "rb") as f:
                        if token in f.read(1 << 16):
                            found.append(pid)
        except (OSError, ValueError, IndexError):
            continue
    return found


def folder_bytes(folder: str, most: int = 100_000, most_bytes: int = 1 << 40) -> int:
    """The bytes of the files under `folder` (no recursion: however deep it goes); past `most`
    entries, counted as more than `most_bytes`."""
    total, stack, seen = 0, [folder], 0
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    seen += 1
                    if seen > most:
                        return most_bytes + 1
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue
    return total


def resident_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """The CPU time a process has used, with that of its children it has waited for."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return sum(int(v) for v in fields[11:15]) / TICKS
    except (OSError, ValueError, IndexError):
        return 0.0
