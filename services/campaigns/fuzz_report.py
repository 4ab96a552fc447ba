"""The report of one fuzz campaign: JSON on disk and a rich table on the terminal.

JSON layout (``fuzz-<target>.json``)::

    {"target": "wmbus", "engine": "atheris" | "mutator", "seed": 1, "seconds": 5.0,
     "inputs": 120000, "exec_per_s": 24000.0, "corpus": 402, "unique_crashes": 0,
     "crashes": [{"kind", "frame", "message", "input_file", "input_hex", "count"}, ...],
     "hangs": 0, "hang_inputs": [...], "ok": true, "gateway": {...} | null}

``gateway`` holds the proof of a service target: always ``unchanged`` and ``alive``;
``gateway-lmn`` adds ``digest_before``, ``digest_after``, ``logs_before``, ``logs_after``,
``batches`` and ``frames``; ``ca-http`` the answers by status and ``GET /status`` before and
after; ``gwa`` the replies and the store digest and meter count before and after;
``mbus-master`` the poll rounds and the line counters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from smtestbed.services.campaigns.crashes import Crash


@dataclass(slots=True, kw_only=True)
class FuzzReport:
    """What one campaign did and found."""

    target: str
    engine: str
    seed: int
    seconds: float
    inputs: int
    corpus: int
    crashes: list[Crash] = field(default_factory=list)
    hangs: list[Crash] = field(default_factory=list)
    gateway: dict[str, Any] | None = None

    @property
    def exec_per_s(self) -> float:
        """Return inputs tried per second of campaign time."""
        return self.inputs / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        """Tell whether the campaign found nothing: no crash, no hang, gateway unchanged."""
        unchanged = self.gateway is None or bool(self.gateway.get("unchanged"))
        alive = self.gateway is None or bool(self.gateway.get("alive"))
        return not self.crashes and not self.hangs and unchanged and alive

    def to_json(self) -> dict[str, Any]:
        """Return the report as the JSON object of the module docstring."""
        return {
            "target": self.target,
            "engine": self.engine,
            "seed": self.seed,
            "seconds": round(self.seconds, 3),
            "inputs": self.inputs,
            "exec_per_s": round(self.exec_per_s, 1),
            "corpus": self.corpus,
            "unique_crashes": len(self.crashes),
            "crashes": [c.to_json() for c in self.crashes],
            "hangs": sum(h.count for h in self.hangs),
            "hang_inputs": [h.to_json() for h in self.hangs],
            "ok": self.ok,
            "gateway": self.gateway,
        }

    def write(self, folder: Path) -> Path:
        """Write ``fuzz-<target>.json`` into ``folder``; return its path."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"fuzz-{self.target}.json"
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return path


def summary_table(reports: list[FuzzReport]) -> Table:
    """Return one row per campaign: inputs, exec/s, crashes, hangs, gateway digests."""
    table = Table(title="fuzz campaigns")
    for name, justify in (
        ("target", "left"),
        ("engine", "left"),
        ("inputs", "right"),
        ("exec/s", "right"),
        ("crashes", "right"),
        ("hangs", "right"),
        ("store", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in reports:
        data = r.to_json()
        store = "" if r.gateway is None else _store_cell(r.gateway)
        table.add_row(
            r.target,
            r.engine,
            f"{r.inputs:,}",
            f"{r.exec_per_s:,.0f}",
            str(data["unique_crashes"]),
            str(data["hangs"]),
            store,
        )
    return table


def _store_cell(gateway: dict[str, Any]) -> str:
    before = str(gateway.get("digest_before", ""))[:12]
    state = "unchanged" if gateway.get("unchanged") else "CHANGED"
    return f"{before}… {state}, alive={gateway.get('alive')}"


def print_report(report: FuzzReport, console: Console) -> None:
    """Print the table and each crash with its saved input."""
    console.print(summary_table([report]))
    for crash in [*report.crashes, *report.hangs]:
        console.print(
            f"[red]{crash.kind}[/red] at {crash.frame} x{crash.count}: {crash.message}"
            f" -> {crash.input_file}"
        )
