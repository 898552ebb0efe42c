"""Which `torch.export` programs (`.pt2`) veil loads: only those whose sha256 is pinned.

A `.pt2` is code, not data: its loader evaluates the symbolic expressions stored in the file
(`sympy.sympify`, an `eval`), and its graph may call any operator, file-mapping ones included,
at load and on every inference. So veil loads one only when its exact bytes were pinned:
  * by the user, once per file: `veil trust PROGRAM.pt2` (kept in the trust list in veil's
    cache, `$VEIL_CACHE/trusted-programs`), or for one process: $VEIL_TRUSTED_PROGRAMS
    (sha256 digests, comma-separated);
  * by veil itself, for a program it exported on this machine (a trained obfuscator's
    `classifier.pt2`): `export_classifier` pins what it writes.
A changed file has another digest and is refused again. Everything else veil reads from a user
is data (checkpoints with `weights_only=True`, the restricted unpickler, ONNX through
onnxruntime).
"""

from __future__ import annotations

import os
from pathlib import Path

from . import env
from .files import atomic_write, read_bounded, sha256_of

TRUST_FILE = "trusted-programs"
TRUST_FILE_LIMIT = 1 << 20
_HEX = set("0123456789abcdef")


class UntrustedProgram(ValueError):
    """A `.pt2` whose sha256 nobody pinned."""


def trust_file() -> Path:
    return env.cache_dir() / TRUST_FILE


def pinned() -> set[str]:
    """Every pinned digest: the trust list's and $VEIL_TRUSTED_PROGRAMS'."""
    digests = {d.strip().lower() for d in env.trusted_programs().split(",") if d.strip()}
    path = trust_file()
    if path.exists():
        text = read_bounded(path, TRUST_FILE_LIMIT).decode("utf-8", "replace")
        digests |= {line.split()[0].lower() for line in text.splitlines() if line.split()}
    return {d for d in digests if is_digest(d)}


def is_digest(text: str) -> bool:
    return len(text) == 64 and set(text) <= _HEX


def pin(path: str | os.PathLike) -> str:
    """Add the file's sha256 to the trust list (once); returns it."""
    digest = sha256_of(path)
    if digest not in pinned():
        store = trust_file()
        store.parent.mkdir(parents=True, exist_ok=True)
        held = read_bounded(store, TRUST_FILE_LIMIT).decode() if store.exists() else ""
        name = " ".join(str(Path(path).resolve()).split())  # one line, whatever the name holds
        atomic_write(store, f"{held}{digest}  {name}\n")
    return digest


def check_trusted(path: str | os.PathLike) -> str:
    """The program's sha256 if it is pinned; else UntrustedProgram, in one line, saying how to
    pin it. Call it before anything reads the program."""
    digest = sha256_of(path)
    if digest not in pinned():
        raise UntrustedProgram(
            f"{path}: refusing to load a torch.export program nobody trusted: a .pt2 is code "
            f"(loading it evaluates expressions stored in the file); if you trust it, pin its "
            f"sha256 {digest} with `veil trust {path}` (or $VEIL_TRUSTED_PROGRAMS)")
    return digest
