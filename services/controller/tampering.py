"""An attacker's edits of a gateway log file on the gateway's disk.

A log file is JSON lines, one entry each, in the format the gateway documents
(``smtestbed.services.gateway.logchain``): ``seq``, ``t_sim``, ``t_wall``, ``kind``,
``fields``, ``prev``, ``hash`` (SHA-256 of the canonical JSON of the first six) and
``sig``. The attacker can recompute a hash but cannot sign, so a changed entry gets
a correct hash and keeps its old signature. The file is rewritten in place (same
inode), as an editor with write access would, while the gateway holds it open for
appending.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smtestbed.services._runtime.errors import RequestError

_LOG_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,80}\Z")
_HASHED = ("fields", "kind", "prev", "seq", "t_sim", "t_wall")


@dataclass(frozen=True, slots=True, kw_only=True)
class Tampering:
    """What the attacker did to one log file."""

    log: str
    path: Path
    entry: int
    how: str
    line: int  # 1-based line of the entry before the edit
    before: dict[str, Any]
    after: dict[str, Any] | None  # the changed entry (change), else None

    def to_map(self) -> dict[str, Any]:
        """Return the edit as the operation's answer."""
        return {
            "log": self.log,
            "path": str(self.path),
            "entry": self.entry,
            "how": self.how,
            "line": self.line,
            "before": self.before,
            "after": self.after,
        }


def log_path(instance_folder: Path, log: str) -> Path:
    """Return the file of log ``log`` (``system``, ``calibration``, ``consumer-<id>``)."""
    path = instance_folder / "logs" / f"{log}.jsonl"
    if not _LOG_NAME.match(log) or not path.is_file():
        logs = sorted(p.stem for p in (instance_folder / "logs").glob("*.jsonl"))
        raise RequestError(f"no log {log!r} on disk ({', '.join(logs)})", field="log")
    return path


def canonical(value: object) -> bytes:
    """Encode JSON the way the gateway's logs are written (sorted keys, no spaces, UTF-8)."""
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode()


def changed(entry: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """Return ``entry`` with ``fields`` set and its hash recomputed (signature kept)."""
    out = {**entry, "fields": {**entry["fields"], **fields}}
    out["hash"] = hashlib.sha256(canonical({k: out[k] for k in _HASHED})).hexdigest()
    return out


def tamper(path: Path, entry: int, how: str, fields: dict[str, Any]) -> Tampering:
    """Edit entry ``entry`` of the log file at ``path``; return what was done.

    Raises:
        RequestError: no such entry (``entry``), nothing to swap it with, or a change
            that changes nothing (``fields``).
    """
    lines = path.read_bytes().splitlines(keepends=True)
    index = _find(lines, entry)
    before = json.loads(lines[index])
    after = None
    if how == "change":
        after = changed(before, fields)
        if after == before:
            raise RequestError("give fields that differ from the entry's", field="fields")
        lines[index] = canonical(after) + b"\n"
    elif how == "delete":
        del lines[index]
    else:
        if index + 1 >= len(lines):
            raise RequestError(f"entry {entry} is the last: nothing to swap with", field="entry")
        lines[index], lines[index + 1] = lines[index + 1], lines[index]
    with path.open("r+b") as file:
        file.write(b"".join(lines))
        file.truncate()
    log = path.stem
    return Tampering(
        log=log, path=path, entry=entry, how=how, line=index + 1, before=before, after=after
    )


def _find(lines: list[bytes], entry: int) -> int:
    for index, raw in enumerate(lines):
        try:
            if json.loads(raw).get("seq") == entry:
                return index
        except (ValueError, AttributeError):
            continue
    raise RequestError(f"no entry {entry} in the log ({len(lines)} lines)", field="entry")
