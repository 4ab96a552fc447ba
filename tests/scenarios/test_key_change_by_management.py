"""key-change-by-management through the pytest plugin: passes; its control (MAC off) fails."""

from __future__ import annotations

from collections.abc import Callable

from smtestbed.services.controller.pytest_plugin import ScenarioOutcome


def test_key_change_by_management_passes(smtb_scenario: Callable[..., ScenarioOutcome]) -> None:
    """Old-key frames between the two changes refused; new-key frames stored within an interval."""
    outcome = smtb_scenario("key-change-by-management")
    outcome.expect_passed()
    whats = [c.what for c in outcome.result.checks]
    assert "rejected as wrong key or bad MAC" in whats
    assert "first new-key reading within one interval" in whats


def test_key_change_by_management_control_fails(
    smtb_scenario: Callable[..., ScenarioOutcome],
) -> None:
    """With unsafe_skip_checks = ["mac"] the old-key frames are not refused: it fails."""
    smtb_scenario("key-change-by-management", control=True).expect_failed()
