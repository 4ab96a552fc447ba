"""Read a scenario run's report folder: ``results.json`` and the recorded events.

``results.json`` (written by the runner)::

    {"testbed": "smtestbed", "version", "started" (ISO 8601), "duration_s",
     "scenarios": [{"name", "description", "outcome": "passed" | "failed" | "error",
                    "duration_s", "message", "checks": [{"what", "ok", "detail"}],
                    "control": {"outcome": "failed-as-expected" | "passed-unexpectedly"
                                           | "error" | "not-run", "duration_s", "message"},
                    "events_file": "scenarios/<name>/events.jsonl"}],
     "summary": {...}}

An events file holds one bus event per line: ``{"kind", "src", "seq", "t_sim", "t_wall",
"body"}``. Every fault found names the file (and the line or field): a report is never
built from a guess.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smtestbed.services._runtime.errors import TestbedError

RESULTS_FILE = "results.json"
OUTCOMES = ("passed", "failed", "error")
CONTROL_OUTCOMES = ("failed-as-expected", "passed-unexpectedly", "error", "not-run")
_GOOD_CONTROLS = ("failed-as-expected", "not-run")


class ReportError(TestbedError):
    """A file of the report folder is missing or malformed; the message names the file."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """One assertion of a scenario: what was checked, whether it held, and the evidence."""

    what: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Control:
    """The negative control of a scenario: the same scenario with its fault left out."""

    outcome: str
    duration_s: float
    message: str

    @property
    def ok(self) -> bool:
        """Tell whether the control did its job (failed as expected) or was not run."""
        return self.outcome in _GOOD_CONTROLS


NOT_RUN = Control(outcome="not-run", duration_s=0.0, message="")


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioResult:
    """One scenario's result as the runner wrote it."""

    name: str
    description: str
    outcome: str
    duration_s: float
    message: str
    checks: tuple[Check, ...]
    control: Control
    events_file: str

    @property
    def ok(self) -> bool:
        """Tell whether the scenario passed and its control did not pass."""
        return self.outcome == "passed" and self.control.ok


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResults:
    """A whole run: the testbed's version, when it started, and every scenario."""

    testbed: str
    version: str
    started: str
    duration_s: float
    scenarios: tuple[ScenarioResult, ...]

    @property
    def ok(self) -> bool:
        """Tell whether every scenario passed and no control passed."""
        return all(s.ok for s in self.scenarios)

    def summary(self) -> dict[str, int]:
        """Return the counts of outcomes and of good and bad controls."""
        counts = {o: sum(s.outcome == o for s in self.scenarios) for o in OUTCOMES}
        ran = [s.control for s in self.scenarios if s.control.outcome != "not-run"]
        counts["controls_ok"] = sum(c.ok for c in ran)
        counts["controls_bad"] = sum(not c.ok for c in ran)
        return counts


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedEvent:
    """One bus event of an events file (``src`` and ``seq`` are kept for the reader)."""

    kind: str
    src: str
    t_sim: float
    body: Any


class _Fields:
    """Typed reads of one JSON object; a fault names the file and the field's path."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, Mapping):
            raise ReportError(f"{where}: must be a JSON object")
        self.data = data
        self.where = where

    def _get(self, key: str, default: Any) -> Any:
        if key in self.data and self.data[key] is not None:
            return self.data[key]
        if default is None:
            raise ReportError(f"{self.where}.{key}: missing")
        return default

    def text(self, key: str, default: str | None = None) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            raise ReportError(f"{self.where}.{key}: must be a string, not {value!r}")
        return value

    def number(self, key: str, default: float | None = None) -> float:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ReportError(f"{self.where}.{key}: must be a number, not {value!r}")
        return float(value)

    def flag(self, key: str) -> bool:
        value = self._get(key, None)
        if not isinstance(value, bool):
            raise ReportError(f"{self.where}.{key}: must be true or false, not {value!r}")
        return value

    def choice(self, key: str, allowed: tuple[str, ...], default: str | None = None) -> str:
        value = self.text(key, default)
        if value not in allowed:
            raise ReportError(f"{self.where}.{key}: {value!r} is not one of {', '.join(allowed)}")
        return value

    def items(self, key: str) -> list[Any]:
        value = self._get(key, [])
        if not isinstance(value, list):
            raise ReportError(f"{self.where}.{key}: must be a list")
        return value

    def child(self, key: str) -> _Fields | None:
        if self.data.get(key) is None:
            return None
        return _Fields(self.data[key], f"{self.where}.{key}")


def _check(data: Any, where: str) -> Check:
    f = _Fields(data, where)
    return Check(what=f.text("what"), ok=f.flag("ok"), detail=f.text("detail", ""))


def _control(f: _Fields | None) -> Control:
    if f is None:
        return NOT_RUN
    return Control(
        outcome=f.choice("outcome", CONTROL_OUTCOMES),
        duration_s=f.number("duration_s", 0.0),
        message=f.text("message", ""),
    )


def _scenario(data: Any, where: str) -> ScenarioResult:
    f = _Fields(data, where)
    return ScenarioResult(
        name=f.text("name"),
        description=f.text("description", ""),
        outcome=f.choice("outcome", OUTCOMES),
        duration_s=f.number("duration_s", 0.0),
        message=f.text("message", ""),
        checks=tuple(_check(c, f"{where}.checks[{i}]") for i, c in enumerate(f.items("checks"))),
        control=_control(f.child("control")),
        events_file=f.text("events_file", ""),
    )


def _json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ReportError(f"{path}: not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: cannot be read: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not JSON: {exc}") from exc


def load_results(report_dir: Path) -> RunResults:
    """Return the run described by ``report_dir/results.json``.

    Raises:
        ReportError: the file is missing, not JSON, or a field is missing or of the wrong
            type; the message names the file and the field.
    """
    path = report_dir / RESULTS_FILE
    f = _Fields(_json(path), str(path))
    scenarios = tuple(
        _scenario(s, f"{path}: scenarios[{i}]") for i, s in enumerate(f.items("scenarios"))
    )
    names = [s.name for s in scenarios]
    for name in names:
        if names.count(name) > 1:
            raise ReportError(f"{path}: scenarios: {name!r} is listed twice")
    return RunResults(
        testbed=f.text("testbed", "smtestbed"),
        version=f.text("version", "unknown"),
        started=f.text("started", ""),
        duration_s=f.number("duration_s", 0.0),
        scenarios=scenarios,
    )


def _event(line: str, where: str) -> RecordedEvent:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{where}: not JSON: {exc}") from exc
    f = _Fields(data, f"{where}: event")
    return RecordedEvent(
        kind=f.text("kind"),
        src=f.text("src", ""),
        t_sim=f.number("t_sim"),
        body=data.get("body"),
    )


def read_events(path: Path) -> list[RecordedEvent]:
    """Return the events of one events file, in file order.

    Raises:
        ReportError: the file cannot be read or a line is not an event; the message names
            the file and the line number.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: cannot be read: {exc}") from exc
    return [_event(line, f"{path}:{n}") for n, line in enumerate(lines, 1) if line.strip()]


def scenario_events(report_dir: Path, scenario: ScenarioResult) -> list[RecordedEvent] | None:
    """Return a scenario's recorded events, or None when it has no events file.

    A scenario that ended before anything was recorded (an error at set-up) names no file
    or a file that was never written: both mean "no events recorded".
    """
    if not scenario.events_file:
        return None
    path = report_dir / scenario.events_file
    if not path.exists():
        return None
    return read_events(path)
