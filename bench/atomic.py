"""Atomic file writes: a reader, or a process killed at any moment, sees the old file or the new
one, never a part of either.

Every write goes to a temporary file in the target's folder (so the rename cannot cross file
systems), is flushed and fsynced, renamed over the target with :func:`os.replace`, and the folder
is fsynced so that the rename itself survives a crash of the machine. A write that fails
removes its temporary file and leaves the target as it was. Temporary files are named
``.<target name>.<random>.tmp``: hidden from the readers of records, and the pattern the runner
sweeps after killed processes.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_json", "atomic_write_text"]


def _umask() -> int:
    """The process umask, read without changing it (os.umask would race other threads)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any], *,
                 previous: str | Path | None = None) -> Path:
    """Replace ``path`` atomically by what ``write(fh)`` writes to a binary file object.

    previous: where the content ``path`` has (if any) is kept, renamed there once the new
        content is on disk, just before it takes its place: at every moment ``path`` holds a
        complete file, the old one or the new one.

    The new file gets the mode a plain ``open`` would give it (0666 less the umask, not
    mkstemp's 0600, which would hide records from the other users of a shared cluster).
    Returns ``path``; any exception of ``write`` or of the file system propagates, with the
    temporary file removed and ``path`` (and ``previous``) untouched.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~_umask())
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if previous is not None and path.exists():
            os.replace(path, previous)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Replace ``path`` atomically by ``data``."""
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | Path, text: str, *, encoding: str = "utf-8") -> Path:
    """Replace ``path`` atomically by ``text``."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | Path, obj: Any, **dump_kwargs: Any) -> Path:
    """Replace ``path`` atomically by ``obj`` as JSON (``dump_kwargs`` go to :func:`json.dumps`).

    The object is serialised before the file is opened, so an object that JSON cannot hold
    raises without touching the disk.
    """
    return atomic_write_text(path, json.dumps(obj, **dump_kwargs))
