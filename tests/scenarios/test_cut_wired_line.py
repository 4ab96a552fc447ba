"""cut-wired-line through the pytest plugin: passes; its control (missing unreported) fails."""

from __future__ import annotations

from collections.abc import Callable

from smtestbed.services.controller.pytest_plugin import ScenarioOutcome


def test_cut_wired_line_passes(smtb_scenario: Callable[..., ScenarioOutcome]) -> None:
    """Relay open: meter missing reported and logged, nothing stored; closed: readings resume."""
    outcome = smtb_scenario("cut-wired-line")
    outcome.expect_passed()
    whats = [c.what for c in outcome.result.checks]
    assert "readings stored while the relay is open" in whats
    assert "readings resume once the relay closes: value = farm counter" in whats


def test_cut_wired_line_control_fails(smtb_scenario: Callable[..., ScenarioOutcome]) -> None:
    """With unsafe_skip_checks = ["meter_missing"] the outage goes unreported: it fails."""
    outcome = smtb_scenario("cut-wired-line", control=True)
    outcome.expect_failed()
    assert "missing" in outcome.result.message
