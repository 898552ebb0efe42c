"""Checkpoints written atomically with config, metrics and a sha256 that is checked on load."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import torch


class CheckpointError(RuntimeError):
    pass


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> str:
    """Write payload to path atomically, plus `<path>.sha256`; returns the sha256."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    _atomic_write(path, data)
    _atomic_write(path.with_name(path.name + ".sha256"), f"{digest}  {path.name}\n".encode())
    return digest


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    verify: bool = True) -> dict[str, Any]:
    """Load a checkpoint written by save_checkpoint, verifying its sha256 when present."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    data = path.read_bytes()
    sidecar = path.with_name(path.name + ".sha256")
    if verify and sidecar.exists():
        words = sidecar.read_text(errors="replace").split()
        if not words or len(words[0]) != 64:
            raise CheckpointError(f"{sidecar}: empty or not a sha256 line; delete it to load "
                                  f"{path.name} unverified, or restore it")
        expected = words[0]
        got = hashlib.sha256(data).hexdigest()
        if got != expected:
            raise CheckpointError(f"{path}: sha256 mismatch (file {got[:12]}..., recorded "
                                  f"{expected[:12]}...): the checkpoint is corrupt or was modified")
    try:
        payload = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable veil checkpoint ({e})") from e
    if not isinstance(payload, dict) or "kind" not in payload:
        raise CheckpointError(f"{path}: not a veil checkpoint (no 'kind' entry)")
    return payload


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
