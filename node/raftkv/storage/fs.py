"""The few filesystem primitives durability depends on.

A file's data is durable after fdatasync, but its *name* is durable only after the
directory holding it is fsynced: a created, renamed or deleted file can otherwise reappear
or vanish after a power loss even though its contents were synced.
"""

from __future__ import annotations

import os


def fsync_dir(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """os.write may write less than asked (signals, huge buffers); a WAL group must be
    written whole or the handle fails."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def make_dirs(path: str | os.PathLike[str]) -> None:
    """Create `path` and make its name durable in the parent directory."""
    path = os.path.abspath(os.fspath(path))
    missing: list[str] = []
    while not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for new in reversed(missing):
        os.makedirs(new, exist_ok=True)
        fsync_dir(os.path.dirname(new))
