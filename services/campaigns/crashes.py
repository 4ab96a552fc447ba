"""Crashes of a fuzz campaign: deduplicated by exception type and top frame, inputs saved.

Imports the standard library and the error tree only, so the atheris driver can load it
before it instruments the code under test.
"""

from __future__ import annotations

import hashlib
import json
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from smtestbed.services._runtime.errors import TestbedError

HANG = "Hang"


class CampaignError(TestbedError):
    """A campaign could not run: its engine or the service under test failed to start."""


@dataclass(slots=True, kw_only=True)
class Crash:
    """One unique crash: the first input that showed it and how often it recurred.

    Attributes:
        kind: the exception's type name, or ``Hang`` for an input over the time limit.
        frame: the innermost frame, ``file:line:function``.
        message: the exception's message (cut to 300 characters).
        input_file: where the first such input was saved.
        input_hex: that input, hex (cut to 512 bytes).
        count: inputs that ended the same way.
    """

    kind: str
    frame: str
    message: str
    input_file: str
    input_hex: str
    count: int = 1

    @property
    def key(self) -> tuple[str, str]:
        """Return what deduplicates crashes: the exception type and the top frame."""
        return (self.kind, self.frame)

    def to_json(self) -> dict[str, Any]:
        """Return the crash as a JSON object."""
        return asdict(self)


def top_frame(exc: BaseException) -> str:
    """Return ``file:line:function`` of the frame where ``exc`` was raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{Path(last.filename).name}:{last.lineno}:{last.name}"


class CrashBook:
    """Collect crashes of one target, save each new one's input under ``folder``.

    Args:
        target: the target's name (prefix of the saved files).
        folder: where inputs are saved; None keeps them in memory only.
        journal: a JSON-lines file each new crash is appended to (survives the process
            ending without returning, as libFuzzer does), or None.
    """

    def __init__(self, target: str, folder: Path | None, journal: Path | None = None) -> None:
        self.target = target
        self.folder = folder
        self.journal = journal
        self.crashes: dict[tuple[str, str], Crash] = {}

    def record(self, kind: str, frame: str, message: str, data: bytes) -> Crash:
        """Count one crashing input; save it when its (kind, frame) is new."""
        known = self.crashes.get((kind, frame))
        if known is not None:
            known.count += 1
            return known
        crash = Crash(
            kind=kind,
            frame=frame,
            message=message[:300],
            input_file=self._save(data),
            input_hex=data[:512].hex(),
        )
        self.crashes[crash.key] = crash
        if self.journal is not None:
            with self.journal.open("a", encoding="utf-8") as out:
                out.write(json.dumps(crash.to_json()) + "\n")
        return crash

    def exception(self, exc: BaseException, data: bytes) -> Crash:
        """Record an unexpected exception raised by the target on ``data``."""
        return self.record(type(exc).__name__, top_frame(exc), str(exc), data)

    def _save(self, data: bytes) -> str:
        if self.folder is None:
            return ""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{self.target}-{hashlib.sha1(data).hexdigest()[:16]}.bin"
        path.write_bytes(data)
        return str(path)

    @property
    def hangs(self) -> int:
        """Return the number of inputs that ran over the time limit."""
        return sum(c.count for c in self.crashes.values() if c.kind == HANG)

    def unique(self) -> list[Crash]:
        """Return the unique crashes other than hangs, first found first."""
        return [c for c in self.crashes.values() if c.kind != HANG]


def read_journal(path: Path) -> list[Crash]:
    """Return the crashes a journal holds (written by :meth:`CrashBook.record`)."""
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [Crash(**row) for row in rows]
