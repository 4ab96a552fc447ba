"""Locate the shared test vectors (read-only files kept outside the project).

Tests read the vector folder from ``SMTB_VECTORS`` when set, else from
``../shared/vectors`` relative to the project root. When neither exists, tests
that need vectors skip with :data:`skip_reason`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[3]
_DEFAULT = _ROOT.parent / "shared" / "vectors"

skip_reason = (
    "shared test vectors not found: set SMTB_VECTORS to the vectors folder "
    f"or place it at {_DEFAULT}"
)


def vectors_dir() -> Path | None:
    """Return the vector folder, or None when it is absent."""
    configured = os.environ.get("SMTB_VECTORS")
    candidate = Path(configured) if configured else _DEFAULT
    return candidate if candidate.is_dir() else None


def load_jsonl(name: str) -> list[dict[str, Any]]:
    """Return the rows of one JSON-lines vector file, or [] when it is absent.

    Args:
        name: file name inside the vector folder, e.g. ``"mbus_vectors.jsonl"``.
    """
    folder = vectors_dir()
    if folder is None or not (folder / name).is_file():
        return []
    rows: list[dict[str, Any]] = []
    with (folder / name).open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                rows.append(json.loads(line))
    return rows
