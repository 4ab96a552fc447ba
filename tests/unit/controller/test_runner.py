"""Runner report files: results.json in the agreed format, JUnit XML, control outcomes."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.cli import cli
from smtestbed.services.controller.client import Check, Controller
from smtestbed.services.controller.report_data import load_results
from smtestbed.services.controller.runner import (
    ScenarioResult,
    plan,
    run_all,
    summary,
    write_junit,
    write_results,
)
from smtestbed.services.controller.scenario import RunResult, Scenario
from smtestbed.services.controller.state import TestbedState


async def _run(ctl: Controller) -> None:
    """A scenario body that is never run here."""


def result(name: str, main: str, control: str | None) -> ScenarioResult:
    """Return a scenario result with the given main and control outcomes."""
    scenario = Scenario(name=name, description=f"about {name}", state=TestbedState(), run=_run)
    checks = [Check(what="x", ok=main == "passed", detail="d")]
    return ScenarioResult(
        scenario=scenario,
        main=RunResult(
            outcome=main, duration_s=1.5, message="" if main == "passed" else "no", checks=checks
        ),
        control=RunResult(outcome=control, duration_s=2.0) if control else None,
    )


RESULTS = [
    result("good", "passed", "failed"),
    result("blind", "passed", "passed"),
    result("broken", "failed", "failed"),
    result("unchecked", "passed", None),
]


def test_results_json_has_the_agreed_format(tmp_path: Path) -> None:
    """Top-level keys, one entry per scenario, control outcomes and the summary."""
    write_results(tmp_path, RESULTS, started=datetime(2026, 1, 1, tzinfo=UTC), duration_s=7.0)
    body = json.loads((tmp_path / "results.json").read_text())
    assert set(body) == {"testbed", "version", "started", "duration_s", "scenarios", "summary"}
    assert body["testbed"] == "smtestbed"
    controls = {s["name"]: s["control"]["outcome"] for s in body["scenarios"]}
    assert controls == {
        "good": "failed-as-expected",
        "blind": "passed-unexpectedly",
        "broken": "failed-as-expected",
        "unchecked": "not-run",
    }
    blind = body["scenarios"][1]
    assert blind["control"]["message"] == "passed without detecting anything"
    assert blind["events_file"] == "scenarios/blind/events.jsonl"
    assert body["summary"] == {
        "passed": 3,
        "failed": 1,
        "error": 0,
        "controls_ok": 2,
        "controls_bad": 1,
    }
    assert summary(RESULTS) == body["summary"]
    assert [r.ok for r in RESULTS] == [True, False, False, True]
    assert len(load_results(tmp_path).scenarios) == 4  # the HTML report reads it


def test_junit_has_a_case_per_scenario_and_control(tmp_path: Path) -> None:
    """testsuites/testsuite/testcase; a failed scenario and a passing control are failures."""
    write_junit(tmp_path / "junit.xml", RESULTS)
    root = ET.parse(tmp_path / "junit.xml").getroot()
    assert root.tag == "testsuites"
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == 7
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failed == {"blind [control]", "broken"}
    assert root.get("tests") == "7"
    assert root.get("failures") == "2"


def test_plan_lists_each_main_run_then_its_control_in_scenario_order() -> None:
    """Runs come in report order; without controls only the main runs."""
    todo = [r.scenario for r in RESULTS[:2]]
    assert [r.label for r in plan(todo)] == [
        "good: run",
        "good: control",
        "blind: run",
        "blind: control",
    ]
    assert [r.label for r in plan(todo, controls=False)] == ["good: run", "blind: run"]


def test_run_all_refuses_zero_jobs_naming_the_field(tmp_path: Path) -> None:
    """jobs < 1 is a ConfigError naming jobs; nothing is run or written."""
    with pytest.raises(ConfigError, match="jobs"):
        run_all([RESULTS[0].scenario], tmp_path / "r", jobs=0)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", [["scenario", "run", "--all"], ["demo"]])
def test_jobs_option_refuses_zero_naming_it(command: list[str], tmp_path: Path) -> None:
    """--jobs 0 on smtb scenario run and smtb demo: a usage error naming --jobs, no report."""
    result = CliRunner().invoke(cli, [*command, "--jobs", "0", "--report", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "Invalid value for '--jobs'" in result.output
    assert not (tmp_path / "r").exists()
