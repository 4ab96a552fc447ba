"""``smtb demo``'s parts that need no testbed: choosing scenarios, clearing old output."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from smtestbed.services.controller import scenarios
from smtestbed.services.controller.demo import RUN_OUTPUTS, choose, clear, command


def test_unknown_scenario_is_refused_naming_it_and_the_known_ones(tmp_path: Path) -> None:
    """--scenario with an unknown name: exit 1, one line naming it; no run, no folder."""
    result = CliRunner().invoke(command, ["--scenario", "no-such", "--report", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "scenario: no scenario 'no-such'" in result.output
    for name in scenarios.discover():
        assert name in result.output
    assert not (tmp_path / "r").exists()


def test_choose_keeps_registry_order_and_defaults_to_all() -> None:
    """No names: every scenario; names: only those, in the registry's order."""
    known = list(scenarios.discover())
    assert [s.name for s in choose(())] == known
    assert [s.name for s in choose(tuple(reversed(known[:2])))] == known[:2]


def test_clear_removes_only_what_a_run_writes(tmp_path: Path) -> None:
    """Old results, events and run folders go; the user's own files stay."""
    for name in RUN_OUTPUTS:
        if "." in name:
            (tmp_path / name).write_text("old")
        else:
            (tmp_path / name / "x").mkdir(parents=True)
    (tmp_path / "notes.txt").write_text("mine")
    clear(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
