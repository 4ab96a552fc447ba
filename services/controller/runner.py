"""Run scenarios and their negative controls; write results.json, junit.xml and event logs.

Report folder layout (the HTML report is built from exactly these files)::

    results.json                      {"testbed", "version", "started", "duration_s",
                                       "scenarios": [...], "summary": {...}}
    junit.xml                         one testcase per scenario and per control
    scenarios/<name>/events.jsonl     the main run's bus events, one JSON object per line
    runs/<name>/, runs/<name>-control/  run folders (configs, service logs)
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from smtestbed.services._runtime.version import VERSION
from smtestbed.services.controller.scenario import (
    ERROR,
    FAILED,
    PASSED,
    RunResult,
    Scenario,
    run_once,
)

CONTROL_OK, CONTROL_BAD, NOT_RUN = "failed-as-expected", "passed-unexpectedly", "not-run"
Progress = Callable[[str], None]


@dataclass(slots=True, kw_only=True)
class ScenarioResult:
    """A scenario's main run and its control."""

    scenario: Scenario
    main: RunResult
    control: RunResult | None

    @property
    def control_outcome(self) -> str:
        """Return the control's outcome as reported."""
        if self.control is None:
            return NOT_RUN
        if self.control.outcome == FAILED:
            return CONTROL_OK
        if self.control.outcome == PASSED:
            return CONTROL_BAD
        return ERROR

    @property
    def ok(self) -> bool:
        """Return True when the scenario passed and its control (if run) failed."""
        return self.main.outcome == PASSED and self.control_outcome in (CONTROL_OK, NOT_RUN)

    def to_map(self) -> dict[str, Any]:
        """Return the entry of ``results.json``."""
        control = self.control
        message = control.message if control else ""
        if self.control_outcome == CONTROL_BAD:
            message = "passed without detecting anything"
        return {
            "name": self.scenario.name,
            "description": self.scenario.description,
            "outcome": self.main.outcome,
            "duration_s": self.main.duration_s,
            "message": self.main.message,
            "checks": [c.to_map() for c in self.main.checks],
            "control": {
                "outcome": self.control_outcome,
                "duration_s": control.duration_s if control else 0.0,
                "message": message,
            },
            "events_file": f"scenarios/{self.scenario.name}/events.jsonl",
        }


def run_scenario(
    scenario: Scenario, report: Path, *, controls: bool = True, progress: Progress | None = None
) -> ScenarioResult:
    """Run one scenario (fresh testbed) and, unless told not to, its control."""
    say = progress or (lambda _: None)
    say(f"{scenario.name}: run")
    events = report / "scenarios" / scenario.name / "events.jsonl"
    main = run_once(
        scenario.state, scenario.run, report / "runs" / scenario.name, events_file=events
    )
    control = None
    if controls:
        say(f"{scenario.name}: control")
        folder = report / "runs" / f"{scenario.name}-control"
        control = run_once(scenario.control_state(), scenario.run, folder)
    return ScenarioResult(scenario=scenario, main=main, control=control)


def run_all(
    scenarios: Sequence[Scenario],
    report: Path,
    *,
    controls: bool = True,
    progress: Progress | None = None,
    done: Callable[[ScenarioResult], None] | None = None,
) -> list[ScenarioResult]:
    """Run every scenario in turn; write the report files; return the results."""
    report.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    t0 = time.monotonic()
    results = []
    for scenario in scenarios:
        results.append(run_scenario(scenario, report, controls=controls, progress=progress))
        if done is not None:
            done(results[-1])
    write_results(report, results, started=started, duration_s=time.monotonic() - t0)
    write_junit(report / "junit.xml", results)
    return results


def summary(results: Sequence[ScenarioResult]) -> dict[str, int]:
    """Return the counts of ``results.json``'s summary."""
    outcomes = [r.main.outcome for r in results]
    controls = [r.control_outcome for r in results]
    return {
        "passed": outcomes.count(PASSED),
        "failed": outcomes.count(FAILED),
        "error": outcomes.count(ERROR),
        "controls_ok": controls.count(CONTROL_OK),
        "controls_bad": sum(1 for c in controls if c in (CONTROL_BAD, ERROR)),
    }


def write_results(
    report: Path, results: Sequence[ScenarioResult], *, started: datetime, duration_s: float
) -> Path:
    """Write ``results.json``."""
    body = {
        "testbed": "smtestbed",
        "version": VERSION,
        "started": started.isoformat(),
        "duration_s": round(duration_s, 3),
        "scenarios": [r.to_map() for r in results],
        "summary": summary(results),
    }
    path = report / "results.json"
    path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    return path


def write_junit(path: Path, results: Sequence[ScenarioResult]) -> None:
    """Write JUnit XML: testsuites/testsuite/testcase, failure or error per bad case."""
    suites = ET.Element("testsuites", name="smtestbed scenarios")
    suite = ET.SubElement(suites, "testsuite", name="scenarios")
    cases = failures = errors = 0
    total = 0.0
    for r in results:
        rows = [(r.scenario.name, r.main, r.main.outcome == PASSED)]
        if r.control is not None:
            rows.append((f"{r.scenario.name} [control]", r.control, r.control.outcome == FAILED))
        for name, run, ok in rows:
            cases += 1
            total += run.duration_s
            case = ET.SubElement(
                suite, "testcase", classname="scenarios", name=name, time=f"{run.duration_s:.3f}"
            )
            if ok:
                continue
            if run.outcome == ERROR:
                errors += 1
                ET.SubElement(case, "error", message=run.message[:500]).text = run.message
            else:
                failures += 1
                text = run.message or "control passed without detecting anything"
                ET.SubElement(case, "failure", message=text[:500]).text = text
    for element in (suites, suite):
        element.set("tests", str(cases))
        element.set("failures", str(failures))
        element.set("errors", str(errors))
        element.set("time", f"{total:.3f}")
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
