"""DIR/progress.json: what a `veil reproduce` run has done, so that `--resume` skips it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.files import atomic_write
from ..report.kinds.reproduce import SCHEMA

PROGRESS = "progress.json"


class Progress:
    """DIR/progress.json: the run's settings and every phase's record, written atomically."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path, self.data = path, data

    @classmethod
    def open(cls, out: Path, header: dict[str, Any], resume: bool) -> Progress:
        path = out / PROGRESS
        if not path.exists():
            progress = cls(path, {"schema": SCHEMA, **header, "invocations": [], "plans": {},
                                  "phases": {}})
            progress.save()
            return progress
        if not resume:
            raise ValueError(f"{out} already holds a reproduce run ({PROGRESS}); pass --resume "
                             f"to continue it or choose another --out")
        data = json.loads(path.read_text())
        for key in ("scale", "data_sha256"):
            if data.get(key) != header[key]:
                raise ValueError(f"{path}: the run was started with {key} "
                                 f"{data.get(key)!r}, not {header[key]!r}; resume it with the "
                                 f"same --scale and --data or choose another --out")
        return cls(path, data)

    def save(self) -> None:
        atomic_write(self.path, json.dumps(self.data, indent=1) + "\n")

    def phase(self, name: str) -> dict[str, Any]:
        return self.data["phases"].get(name, {})

    def update(self, name: str, **values: Any) -> None:
        self.data["phases"].setdefault(name, {}).update(values)
        self.save()
