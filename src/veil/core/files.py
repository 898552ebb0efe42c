"""Files written whole or not at all, and their sha256s."""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from pathlib import Path


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a part:
    a temporary file beside it, fsynced, then renamed over it. When the write fails (the disk
    full, a quota), the temporary file is removed, the old file is left as it was and the
    error names the file: `OSError` with the system's errno."""
    path = Path(path)
    data = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OSError(e.errno, f"could not write {path} ({e.strerror or e}); "
                               "any previous version of it is unchanged") from e


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """A file's digest (any hashlib algorithm), read in 1 MiB pieces."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_of(path: str | os.PathLike) -> str:
    return file_digest(path, "sha256")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_bounded(path: str | os.PathLike, limit: int) -> bytes:
    """A small file's bytes: anything but a regular file (a FIFO that would block, a device
    such as /dev/zero that never ends) or a file over `limit` bytes is a ValueError saying
    which, raised before it is read; OSError as the system gives it (no such file, ...)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens without waiting for a writer
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        if info.st_size > limit:
            raise ValueError(f"{info.st_size:,} bytes, more than the {limit:,} it may have")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:  # it grew since
            raise ValueError(f"more than the {limit:,} bytes it may have")
        return data
    finally:
        os.close(fd)


def recorded_path(path: str | os.PathLike) -> str:
    """A path as a result file records it: relative to the working directory when it lies under
    the directory above it (the repository, or a data folder beside it: `../shared/data/...`),
    so results read the same on every machine; as given otherwise."""
    text = os.fspath(path)
    if "://" in text or not os.path.isabs(text):
        return text
    relative = os.path.relpath(text, os.getcwd())
    return relative if not relative.startswith(os.path.join("..", "..")) else text
