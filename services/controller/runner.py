"""Run scenarios and their negative controls; write results.json, junit.xml and event logs.

Report folder layout (the HTML report is built from exactly these files)::

    results.json                      {"testbed", "version", "started", "duration_s",
                                       "scenarios": [...], "summary": {...}}
    junit.xml                         one testcase per scenario and per control
    report.html                       results table and plots (controller.report)
    scenarios/<name>/events.jsonl     the main run's bus events, one JSON object per line
    runs/<name>/, runs/<name>-control/  run folders (configs, service logs)
"""

from __future__ import annotations

import json
import queue
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from smtestbed.services._runtime.errors import ConfigError
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """One testbed run of the suite: a scenario's main run or its control."""

    scenario: Scenario
    control: bool

    @property
    def label(self) -> str:
        """Return how progress names the run (``NAME: run`` or ``NAME: control``)."""
        return f"{self.scenario.name}: {'control' if self.control else 'run'}"

    def execute(self, report: Path) -> RunResult:
        """Run it on a fresh testbed in its own run folder (the main run records events)."""
        name = self.scenario.name
        if self.control:
            folder = report / "runs" / f"{name}-control"
            return run_once(self.scenario.control_state(), self.scenario.run, folder)
        events = report / "scenarios" / name / "events.jsonl"
        return run_once(
            self.scenario.state, self.scenario.run, report / "runs" / name, events_file=events
        )


class Listener(Protocol):
    """What the runner tells while it works, always on the thread that called it."""

    def started(self, run: Run) -> None:
        """A run begins."""

    def finished(self, run: Run, result: RunResult) -> None:
        """A run ended."""

    def done(self, result: ScenarioResult) -> None:
        """A scenario's main run and control (if any) both ended."""


def plan(scenarios: Sequence[Scenario], *, controls: bool = True) -> list[Run]:
    """Return the runs of ``scenarios`` in report order: each main run, then its control."""
    return [Run(scenario=s, control=c) for s in scenarios for c in (False, True)[: 1 + controls]]


def run_all(
    scenarios: Sequence[Scenario],
    report: Path,
    *,
    controls: bool = True,
    jobs: int = 1,
    listener: Listener | None = None,
) -> list[ScenarioResult]:
    """Run every scenario (``jobs`` testbeds at a time); write the report; return the results.

    Each run has its own run folder, ports and data directories, so runs are independent;
    results come in the scenarios' order whatever order the runs end in. The report
    folder gets ``results.json``, ``junit.xml`` and ``report.html``.
    """
    if jobs < 1:
        raise ConfigError(f"must be at least 1, got {jobs}", key="jobs")
    report.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    t0 = time.monotonic()
    runs = plan(scenarios, controls=controls)
    ended = _execute(runs, report, jobs, listener or _Silent())
    results = [_scenario_result(runs, ended, s) for s in scenarios]
    write_results(report, results, started=started, duration_s=time.monotonic() - t0)
    write_junit(report / "junit.xml", results)
    from smtestbed.services.controller.report import write_html_report  # matplotlib: load late

    write_html_report(report)
    return results


def _execute(runs: list[Run], report: Path, jobs: int, listener: Listener) -> dict[int, RunResult]:
    """Run ``runs`` on ``jobs`` worker threads; tell ``listener`` from this thread."""
    news: queue.SimpleQueue[tuple[int, RunResult | None]] = queue.SimpleQueue()

    def work(index: int) -> None:
        news.put((index, None))
        try:
            result = runs[index].execute(report)
        except Exception as exc:  # run_once reports scenario bugs itself: this is the runner's
            result = RunResult(outcome=ERROR, duration_s=0.0, message=f"runner: {exc!r}")
        news.put((index, result))

    ended: dict[int, RunResult] = {}
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="smtb-run") as pool:
        futures = [pool.submit(work, i) for i in range(len(runs))]
        try:
            while len(ended) < len(runs):
                index, result = news.get()
                run = runs[index]
                if result is None:
                    listener.started(run)
                    continue
                ended[index] = result
                listener.finished(run, result)
                if all(i in ended for i, r in enumerate(runs) if r.scenario is run.scenario):
                    listener.done(_scenario_result(runs, ended, run.scenario))
        except BaseException:
            for future in futures:  # runs not begun are dropped; running ones end and stop
                future.cancel()
            raise
    return ended


def _scenario_result(
    runs: list[Run], ended: dict[int, RunResult], scenario: Scenario
) -> ScenarioResult:
    mine = {r.control: ended[i] for i, r in enumerate(runs) if r.scenario is scenario}
    return ScenarioResult(scenario=scenario, main=mine[False], control=mine.get(True))


class _Silent:
    """A listener that ignores everything."""

    def started(self, run: Run) -> None:
        """Ignore a start."""

    def finished(self, run: Run, result: RunResult) -> None:
        """Ignore an end."""

    def done(self, result: ScenarioResult) -> None:
        """Ignore a finished scenario."""


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
