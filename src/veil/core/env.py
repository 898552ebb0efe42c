"""Every environment variable veil reads, read here and nowhere else (stdlib only: the edge
uses it too). Library code gets these values as arguments from the entry points."""

from __future__ import annotations

import os
from pathlib import Path

DATA = "VEIL_DATA"  # the default data source
CACHE = "VEIL_CACHE"  # where decoded datasets are cached
QUIET = "VEIL_QUIET"  # no progress bars
MALLOC = "VEIL_MALLOC"  # "system": leave glibc's malloc thresholds alone
TOKEN = "VEIL_TOKEN"  # the server's bearer token
SERVER = "VEIL_SERVER"  # `veil classify`'s default server
OBFUSCATOR = "VEIL_OBFUSCATOR"  # `veil classify`'s default obfuscator
TRUSTED_PROGRAMS = "VEIL_TRUSTED_PROGRAMS"  # sha256 pins of .pt2 programs (core.trust)


def data_source() -> str:
    return os.environ.get(DATA, "cifar10")


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE, Path.home() / ".cache" / "veil"))


def trusted_programs() -> str:
    return os.environ.get(TRUSTED_PROGRAMS, "")


def quiet() -> bool:
    return bool(os.environ.get(QUIET))


def system_malloc() -> bool:
    return os.environ.get(MALLOC) == "system"


def token() -> str | None:
    return os.environ.get(TOKEN) or None


def read_token(token_file: Path | None) -> str | None:
    """The bearer token: the file's (which must not be empty), else $VEIL_TOKEN."""
    if token_file is not None:
        value = Path(token_file).read_text().strip()
        if not value:
            raise ValueError(f"{token_file}: the token file is empty")
        return value
    return token()


def available_memory() -> int:
    """Bytes of memory this process could still take (Linux's MemAvailable, else all RAM)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def get(name: str) -> str | None:
    """One of the variables above by name (for CLI defaults such as VEIL_SERVER)."""
    return os.environ.get(name)


def distributed() -> tuple[int, int]:
    """(rank, world size) as torchrun sets them; (0, 1) for a single process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
