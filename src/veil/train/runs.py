"""A run folder per training run: resolved config, JSON-lines metrics, checkpoints."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ..core.files import atomic_write
from ..core.imagefit import check_image_size
from ..core.runtime import environment
from ..core.settings import check_types, upgrade_names

C = TypeVar("C")


@dataclass
class RunConfig:
    """The settings every training run has; each trainer's config adds its own."""

    data: str | None = None
    out: str = "runs/run"
    epochs: int = 1
    batch_size: int = 128
    lr: float = 1e-3
    crop_padding: int = 4
    flip: bool = True
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = True
    train_subset: int | None = None
    test_subset: int | None = None
    threads: int | None = None
    image_size: int | None = None  # fit every image to NxN (core.imagefit); None: as stored

    def __post_init__(self) -> None:
        check_types(self)
        at_least(self, epochs=0, batch_size=1, crop_padding=0)
        at_least(self, train_subset=1, test_subset=1, threads=1)
        positive(self, "lr")
        one_of(self, "precision", ("fp32", "bf16", "fp16"))
        if self.image_size is not None:
            check_image_size(self.image_size, "setting image_size")


def at_least(config: Any, **bounds: float) -> None:
    """Raise naming the first setting below its bound (None, an unset optional, passes)."""
    for name, bound in bounds.items():
        value = getattr(config, name)
        if value is not None and value < bound:
            raise ValueError(f"setting {name} = {value!r}: must be at least {bound:g}")


def positive(config: Any, *names: str) -> None:
    for name in names:
        if getattr(config, name) <= 0:
            raise ValueError(f"setting {name} = {getattr(config, name)!r}: must be above 0")


def one_of(config: Any, name: str, choices: tuple[str, ...]) -> None:
    if getattr(config, name) not in choices:
        raise ValueError(f"setting {name} = {getattr(config, name)!r}: choose one of "
                         f"{', '.join(choices)}")


def build_config(cls: type[C], defaults: dict[str, Any], overrides: dict[str, Any]) -> C:
    """cls from defaults, then overrides on top (None means 'keep the default')."""
    return cls(**{**defaults, **{k: v for k, v in overrides.items() if v is not None}})


def run_payload(kind: str, config: Any, metrics: dict[str, Any], ds, **content: Any
                ) -> dict[str, Any]:
    """A trained run's checkpoint: its networks (`content`) and what they came from."""
    return {"kind": kind, **content, "classes": list(ds.classes),
            "image_size": list(ds.image_size), "config": asdict(config),
            "metrics": metrics, "data": {"name": ds.name, "sha256": ds.source_sha256},
            "environment": environment()}


class RunDirError(RuntimeError):
    pass


WARM_START_PREFIX = "warm-start-"  # a warm-start stage's resumable state: warm-start-<stage>.pt


def prepare_run_dir(path: str | os.PathLike, resume: bool) -> Path:
    """Create (or, with resume, reuse) a run folder; fails clearly if it is not writable."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise RunDirError(f"output folder {path} is not writable: {e.strerror or e}") from e
    held = [p.name for p in [path / "last.pt", *sorted(path.glob(f"{WARM_START_PREFIX}*.pt"))]
            if p.exists()]
    if not resume and held:
        raise RunDirError(f"{path} already holds a run ({held[0]}); pass --resume to continue it "
                          f"or choose another --out")
    return path


def write_config(path: Path, config: Any) -> None:
    data = asdict(config) if is_dataclass(config) else dict(config)
    atomic_write(path / "config.yaml", yaml.safe_dump(data, sort_keys=False))


def config_from_dict(cls: type, data: dict[str, Any], source: str = "a saved config") -> Any:
    """A config from a checkpoint's record: old names upgraded, keys it no longer has dropped."""
    data = upgrade_names(cls, data, source)
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


class MetricsLog:
    """Appends one JSON object per line; truncates entries beyond `keep_epochs` on resume."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def truncate_after(self, epoch: int) -> None:
        if not self.path.exists():
            return
        rows = [r for r in self.read() if r.get("epoch", 0) <= epoch]
        atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in rows))

    def append(self, row: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
