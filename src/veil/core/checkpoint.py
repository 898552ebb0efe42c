"""Checkpoints written atomically, with two sha256s that are checked on load.

`<path>.sha256` hashes the file's bytes; `content_sha256` inside the payload hashes what was
saved (every tensor's dtype, shape and bytes, every other value), so a file that lost its
sidecar is still checked. A file with neither is refused unless `verify=False`."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import torch

from .files import atomic_write, read_bounded, sha256_bytes

CONTENT_KEY = "content_sha256"


class CheckpointError(RuntimeError):
    pass


def content_sha256(payload: Any) -> str:
    """A hash of a checkpoint payload's content, independent of how torch laid out the file."""
    h = hashlib.sha256()
    _hash_into(h, payload)
    return h.hexdigest()


def _hash_into(h: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(value.shape)}:".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        h.update(f"D{len(value)}:".encode())
        for key in sorted(value, key=repr):
            _hash_into(h, key)
            _hash_into(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"{type(value).__name__[0]}{len(value)}:".encode())
        for item in value:
            _hash_into(h, item)
    else:
        text = repr(value).encode()
        h.update(f"{type(value).__name__}{len(text)}:".encode() + text)


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> str:
    """Write payload to path atomically, plus `<path>.sha256`; returns the sha256."""
    path = Path(path)
    payload = {k: v for k, v in payload.items() if k != CONTENT_KEY}
    payload[CONTENT_KEY] = content_sha256(payload)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    digest = sha256_bytes(data)
    sidecar = path.with_name(path.name + ".sha256")
    # Two files cannot be replaced in one step: drop the old hash first, so that a process
    # killed in between leaves a file without a sidecar (still checked by its content hash),
    # never a new file beside the old file's hash (refused as corrupt, and resume would fail).
    sidecar.unlink(missing_ok=True)
    atomic_write(path, data)
    atomic_write(sidecar, f"{digest}  {path.name}\n")
    return digest


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    verify: bool = True) -> dict[str, Any]:
    """Load a checkpoint written by save_checkpoint, verifying both of its hashes."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():  # a FIFO would block, a device such as /dev/zero never end
        raise CheckpointError(f"{path}: not a regular file, so not a checkpoint")
    data = path.read_bytes()
    sidecar = path.with_name(path.name + ".sha256")
    if verify and (sidecar.exists() or sidecar.is_symlink()):
        words = _sidecar_words(sidecar)
        if not words or len(words[0]) != 64:
            raise CheckpointError(f"{sidecar}: empty or not a sha256 line; delete it to load "
                                  f"{path.name} unverified, or restore it")
        expected = words[0]
        got = sha256_bytes(data)
        if got != expected:
            raise CheckpointError(f"{path}: sha256 mismatch (file {got[:12]}..., recorded "
                                  f"{expected[:12]}...): {_CORRUPT}")
    try:
        payload = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable veil checkpoint ({e})") from e
    if not isinstance(payload, dict) or "kind" not in payload:
        raise CheckpointError(f"{path}: not a veil checkpoint (no 'kind' entry)")
    recorded = payload.pop(CONTENT_KEY, None)
    if verify and recorded is not None and content_sha256(payload) != recorded:
        raise CheckpointError(f"{path}: content sha256 mismatch: {_CORRUPT}")
    if verify and recorded is None and not sidecar.exists():
        raise CheckpointError(f"{path}: neither a {sidecar.name} sidecar nor a content hash, so "
                              f"it cannot be verified; restore the sidecar, or load it with "
                              f"verify=False (--no-verify) if you trust the file")
    return payload


_CORRUPT = "the checkpoint is corrupt or was modified"
SIDECAR_LIMIT = 4096  # one sha256 line and a file name


def _sidecar_words(sidecar: Path) -> list[str]:
    """The words of a `.sha256` sidecar, read only if it is a small regular file."""
    try:
        return read_bounded(sidecar, SIDECAR_LIMIT).decode(errors="replace").split()
    except (ValueError, OSError) as e:
        raise CheckpointError(f"{sidecar}: not a sha256 line ({e}); delete it to load the "
                              f"checkpoint unverified, or restore it") from None
