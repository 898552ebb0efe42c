"""OUT/attacks.partial.json: the defenses a `veil attack` run has finished so far.

An attack run at a converged budget takes hours; a killed one should lose at most the defense it
was attacking. Every finished defense is written here at once (atomically); `--resume` reuses
the finished ones when the run's settings (budget, attacks, data, seed, classifier) are the same,
and the file is removed once the complete result is written. `--resume` on a folder holding a
complete result (OUT/attacks.json) reuses its defenses the same way: a defense added to a
finished run is the only one attacked.

Each finished row carries `check`, a sha256 over the row and the run's settings: a row edited
by hand (an SSIM made smaller) or copied from another run is refused on resume instead of
being printed as a result. It guards against accidents and casual edits, not against someone
who computes the hash again: whoever can write OUT owns its results anyway.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..core.files import atomic_write, sha256_bytes
from .defenses import Defense

PARTIAL = "attacks.partial.json"
COMPLETE = "attacks.json"


def _plain(value: Any) -> Any:
    """`value` as it reads back from JSON (tuples become lists), so that settings compare."""
    return json.loads(json.dumps(value))


def row_check(header: dict[str, Any], row: dict[str, Any]) -> str:
    """The hash that binds a finished row to the settings of the run that made it."""
    body = {k: v for k, v in row.items() if k != "check"}
    return sha256_bytes(json.dumps({"header": header, "row": body}, sort_keys=True).encode())


def row_problem(row: dict[str, Any]) -> str | None:
    """What a finished row lacks that the result and `veil report` read, or None: a row whose
    check was computed again over a broken body is refused here rather than as a traceback."""
    parts = {"attacks": dict, "eavesdropper": dict, "strongest": dict, "examples": dict}
    missing = [k for k, kind in parts.items() if not isinstance(row.get(k), kind)]
    if missing or "accuracy" not in row:
        return f"has no {(missing or ['accuracy'])[0]!r}"
    accuracy = row["accuracy"]
    if accuracy is not None and not (_number(accuracy) and 0 <= accuracy <= 1):
        return f"has accuracy {str(accuracy)[:20]}, not a share from 0 to 1"
    for name, scores in {"eavesdropper": row["eavesdropper"], **row["attacks"]}.items():
        if not all(isinstance(scores, dict) and isinstance(scores.get(k), dict)
                   and _number(scores[k].get("mean")) for k in ("psnr", "ssim")):
            return f"has no mean PSNR and SSIM for {str(name)[:40]!r}"
    strongest, examples = row["strongest"], row["examples"]
    if not (isinstance(strongest.get("attack"), str) and _number(strongest.get("ssim"))
            and _number(strongest.get("psnr"))):
        return "has no strongest attack with its SSIM and PSNR"
    if not (isinstance(examples.get("indices"), list) and isinstance(examples.get("labels"), list)
            and isinstance(examples.get("rows"), dict)):
        return "has no examples (indices, labels and rows)"
    return None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _from_complete(result: Any) -> dict[str, Any]:
    """A finished `veil attack` result as a partial one: its settings and its rows."""
    if not isinstance(result, dict):
        raise ValueError("not a JSON object")
    try:
        classifier = result.get("classifier") or {}
        return {"header": {"budget": result["attacker_budget"],
                           "attacks": [a["name"] for a in result["attacks"]],
                           "data": result["data"], "seed": result["seed"],
                           "classifier": classifier.get("sha256")},
                "rows": result["defenses"]}
    except (KeyError, TypeError) as e:
        raise ValueError(f"not a veil attack result (no {e})") from None


def _read(path: Path, complete: bool) -> dict[str, Any]:
    """The header and rows stored at path, or a one-line ValueError saying what is wrong."""
    try:
        stored = json.loads(path.read_text())
        if complete:
            stored = _from_complete(stored)
        if not isinstance(stored, dict) or not isinstance(stored.get("header"), dict):
            raise ValueError("no header of settings")
        rows = stored.get("rows")
        if not isinstance(rows, list) or not all(
                isinstance(r, dict) and isinstance(r.get("name"), str) for r in rows):
            raise ValueError("its rows are not a list of named defenses")
        for row in rows:
            problem = row_problem(row)
            if problem:
                raise ValueError(f"the row of {row['name'][:40]!r} {problem}")
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot resume from {path}: {e}; delete it to start over") from None
    return stored


class PartialResult:
    """The finished rows of one attack run, keyed by defense name, kept on disk as they come."""

    def __init__(self, path: Path, header: dict[str, Any], rows: dict[str, dict[str, Any]]
                 ) -> None:
        self.path, self.header, self.rows = path, header, rows

    @classmethod
    def open(cls, out: str | Path, header: dict[str, Any], resume: bool) -> PartialResult:
        partial, complete, header = Path(out) / PARTIAL, Path(out) / COMPLETE, _plain(header)
        if partial.exists():
            source, stored = partial, _read(partial, complete=False)
            if not resume:
                raise ValueError(f"{partial} holds an unfinished attack run "
                                 f"({len(stored['rows'])} defenses done): pass --resume to "
                                 "continue it, or delete the file to start over")
            start_over = "delete the file to start over"
        elif resume and complete.exists():
            source, stored = complete, _read(complete, complete=True)
            start_over = "run without --resume to start over"
        else:
            return cls(partial, header, {})
        for key, value in header.items():
            if stored["header"].get(key) != value:
                raise ValueError(f"cannot resume {source}: it was run with another {key} "
                                 f"({stored['header'].get(key)!r}, now {value!r}); {start_over}")
        for row in stored["rows"]:
            if row.get("check") != row_check(header, row):
                raise ValueError(f"cannot resume {source}: the row of {row['name']!r} does not "
                                 "match its check (edited, or written by another run); "
                                 f"{start_over}")
        return cls(partial, header, {row["name"]: row for row in stored["rows"]})

    def finished(self, defense: Defense) -> dict[str, Any] | None:
        """The stored row for `defense`, if it was attacked as it is now."""
        row = self.rows.get(defense.name)
        summary = _plain(defense.summary())
        if row is None or any(row.get(k) != v for k, v in summary.items()):
            return None
        return row

    def add(self, row: dict[str, Any]) -> dict[str, Any]:
        """Keep a finished row on disk; returns it with its check."""
        row = {**_plain(row), "check": None}
        row["check"] = row_check(self.header, row)
        self.rows[row["name"]] = row
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps({"header": self.header,
                                            "rows": list(self.rows.values())}) + "\n")
        return row

    def close(self) -> None:
        """The complete result is written: the partial one is no longer needed."""
        self.path.unlink(missing_ok=True)
