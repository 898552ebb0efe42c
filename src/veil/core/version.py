"""veil's version, in one place below every part that reports it (kept equal to pyproject's)."""

VERSION = "0.1.0"
