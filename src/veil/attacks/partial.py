"""OUT/attacks.partial.json: the defenses a `veil attack` run has finished so far.

An attack run at a converged budget takes hours; a killed one should lose at most the defense it
was attacking. Every finished defense is written here at once (atomically); `--resume` reuses
the finished ones when the run's settings (budget, attacks, data, seed, classifier) are the same,
and the file is removed once the complete result is written. `--resume` on a folder holding a
complete result (OUT/attacks.json) reuses its defenses the same way: a defense added to a
finished run is the only one attacked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.files import atomic_write
from .defenses import Defense

PARTIAL = "attacks.partial.json"
COMPLETE = "attacks.json"


def _plain(value: Any) -> Any:
    """`value` as it reads back from JSON (tuples become lists), so that settings compare."""
    return json.loads(json.dumps(value))


def _from_complete(result: dict[str, Any]) -> dict[str, Any]:
    """A finished `veil attack` result as a partial one: its settings and its rows."""
    classifier = result.get("classifier") or {}
    return {"header": {"budget": result["attacker_budget"],
                       "attacks": [a["name"] for a in result["attacks"]],
                       "data": result["data"], "seed": result["seed"],
                       "classifier": classifier.get("sha256")},
            "rows": result["defenses"]}


class PartialResult:
    """The finished rows of one attack run, keyed by defense name, kept on disk as they come."""

    def __init__(self, path: Path, header: dict[str, Any], rows: dict[str, dict[str, Any]]
                 ) -> None:
        self.path, self.header, self.rows = path, header, rows

    @classmethod
    def open(cls, out: str | Path, header: dict[str, Any], resume: bool) -> PartialResult:
        partial, complete, header = Path(out) / PARTIAL, Path(out) / COMPLETE, _plain(header)
        if partial.exists():
            source, stored = partial, json.loads(partial.read_text())
            if not resume:
                raise ValueError(f"{partial} holds an unfinished attack run "
                                 f"({len(stored['rows'])} defenses done): pass --resume to "
                                 "continue it, or delete the file to start over")
            start_over = "delete the file to start over"
        elif resume and complete.exists():
            source, stored = complete, _from_complete(json.loads(complete.read_text()))
            start_over = "run without --resume to start over"
        else:
            return cls(partial, header, {})
        for key, value in header.items():
            if stored["header"].get(key) != value:
                raise ValueError(f"cannot resume {source}: it was run with another {key} "
                                 f"({stored['header'].get(key)!r}, now {value!r}); {start_over}")
        return cls(partial, header, {row["name"]: row for row in stored["rows"]})

    def finished(self, defense: Defense) -> dict[str, Any] | None:
        """The stored row for `defense`, if it was attacked as it is now."""
        row = self.rows.get(defense.name)
        summary = _plain(defense.summary())
        if row is None or any(row.get(k) != v for k, v in summary.items()):
            return None
        return row

    def add(self, row: dict[str, Any]) -> None:
        self.rows[row["name"]] = row
        atomic_write(self.path, json.dumps({"header": self.header,
                                            "rows": list(self.rows.values())}) + "\n")

    def close(self) -> None:
        """The complete result is written: the partial one is no longer needed."""
        self.path.unlink(missing_ok=True)
