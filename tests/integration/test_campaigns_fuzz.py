"""``smtb fuzz --quick`` on every in-process target: a bounded campaign that finds nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from smtestbed.services.campaigns import atheris_engine
from smtestbed.services.campaigns.fuzz_cli import command
from smtestbed.services.campaigns.mutation_engine import Budget, fuzz_in_process
from smtestbed.services.campaigns.targets import IN_PROCESS

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("target", IN_PROCESS)
def test_quick_campaign_tries_inputs_and_finds_no_crash(target: str, tmp_path: Path) -> None:
    """A quick campaign runs thousands of inputs, finds no crash or hang and writes its report."""
    result = CliRunner().invoke(command, [target, "--quick", "--out", str(tmp_path)])
    report = json.loads((tmp_path / f"fuzz-{target}.json").read_text())
    assert result.exit_code == 0, result.output
    assert report["target"] == target
    assert report["engine"] == ("atheris" if atheris_engine.available() else "mutator")
    assert report["inputs"] > 1000
    assert report["exec_per_s"] > 100
    assert report["unique_crashes"] == 0
    assert report["crashes"] == []
    assert report["hangs"] == 0
    assert report["ok"] is True
    assert "exec/s" in result.output


def test_mutator_engine_runs_exactly_the_runs_asked_for(tmp_path: Path) -> None:
    """With --runs the seeded mutator stops after that many inputs, seeds included."""
    report = fuzz_in_process("mbus", Budget(seconds=30.0, runs=3000), seed=3, out=tmp_path)
    assert report.inputs == 3000
    assert report.engine == "mutator"
    assert report.crashes == []
