"""The runner with several jobs on real testbeds: runs overlap, each in its own folder and
ports, results and report in the scenarios' order, report.html written by the runner."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from smtestbed.services.controller.client import Controller
from smtestbed.services.controller.runner import Run, ScenarioResult, run_all
from smtestbed.services.controller.scenario import RunResult, Scenario
from smtestbed.services.controller.state import state_from_dict

pytestmark = pytest.mark.timeout(240)

STATE = {"seed": 11, "population": {"count": 2, "interval_s": 300.0}, "clock": {"window_s": 300.0}}


async def _two_meters(ctl: Controller) -> None:
    """Pass when the farm and the run agree on two meters (the control asks for three)."""
    farm = await ctl.call("counters", service="sensorfarm")
    ctl.expect_equal("meters in the farm", farm["meters"], 2)


def _scenario(name: str) -> Scenario:
    return Scenario(
        name=name,
        description=f"{name}: two meters",
        state=state_from_dict(STATE),
        run=_two_meters,
        control={"population": {"count": 3}},
    )


class Recorder:
    """A listener keeping what it was told, in order."""

    def __init__(self) -> None:
        self.news: list[tuple[str, str]] = []
        self.ended: list[str] = []

    def started(self, run: Run) -> None:
        self.news.append(("started", run.label))

    def finished(self, run: Run, result: RunResult) -> None:
        self.news.append(("finished", run.label))

    def done(self, result: ScenarioResult) -> None:
        self.ended.append(result.scenario.name)


def _ports(config: Path) -> set[str]:
    """Return every 127.0.0.1 port a run folder's testbed.toml names."""
    text = json.dumps(tomllib.loads(config.read_text()))
    return {p.split('"')[0] for p in text.split("127.0.0.1:")[1:]}


def test_two_jobs_overlap_runs_and_keep_results_in_order(tmp_path: Path) -> None:
    """Two jobs: the second run starts before the first ends; results.json, junit.xml and
    report.html list the scenarios in their order; no port or folder is shared."""
    todo = [_scenario("zeta"), _scenario("alpha")]
    recorder = Recorder()
    results = run_all(todo, tmp_path, controls=True, jobs=2, listener=recorder)
    assert [r.scenario.name for r in results] == ["zeta", "alpha"]
    assert [(r.main.outcome, r.control_outcome) for r in results] == [
        ("passed", "failed-as-expected")
    ] * 2
    first_end = [kind for kind, _ in recorder.news].index("finished")
    assert [kind for kind, _ in recorder.news[:first_end]] == ["started", "started"]
    assert sorted(recorder.ended) == ["alpha", "zeta"]
    body = json.loads((tmp_path / "results.json").read_text())
    assert [s["name"] for s in body["scenarios"]] == ["zeta", "alpha"]
    assert "zeta" in (tmp_path / "junit.xml").read_text()
    page = (tmp_path / "report.html").read_text()
    assert page.index("zeta") < page.index("alpha")
    folders = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert folders == ["alpha", "alpha-control", "zeta", "zeta-control"]
    ports = [_ports(tmp_path / "runs" / f / "testbed.toml") for f in folders]
    assert all(ports)
    assert sum(len(p) for p in ports) == len(set().union(*ports))
