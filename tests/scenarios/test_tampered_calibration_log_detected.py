"""tampered-calibration-log-detected via the pytest plugin: passes; its control fails."""

from __future__ import annotations

from collections.abc import Callable

from smtestbed.services.controller.pytest_plugin import ScenarioOutcome

NAME = "tampered-calibration-log-detected"


def test_tampered_calibration_log_detected_passes(
    smtb_scenario: Callable[..., ScenarioOutcome],
) -> None:
    """The forged time_deviation entry is reported and named; the system log still verifies."""
    outcome = smtb_scenario(NAME)
    outcome.expect_passed()
    named = [c for c in outcome.result.checks if c.what == "verification names the changed entry"]
    assert [c.detail for c in named] == ["expected 1, saw 1"]


def test_tampered_calibration_log_detected_control_fails(
    smtb_scenario: Callable[..., ScenarioOutcome],
) -> None:
    """With unsafe_skip_checks = ["log_chain"] the forged log is called intact: the run fails."""
    outcome = smtb_scenario(NAME, control=True)
    outcome.expect_failed()
    assert "tampered calibration log reported not intact" in outcome.result.message
