"""wrong-key through the pytest plugin: passes, and its control (MAC check skipped) fails."""

from __future__ import annotations

from collections.abc import Callable

from smtestbed.services.controller.pytest_plugin import ScenarioOutcome


def test_wrong_key_passes(smtb_scenario: Callable[..., ScenarioOutcome]) -> None:
    """A key changed at the meter only: rejected, logged, nothing stored, others unaffected."""
    outcome = smtb_scenario("wrong-key")
    outcome.expect_passed()
    assert any(c.what == "rejected as wrong key or bad MAC" for c in outcome.result.checks)


def test_wrong_key_control_fails(smtb_scenario: Callable[..., ScenarioOutcome]) -> None:
    """With unsafe_skip_checks = ["mac"] the scenario must detect the missing check."""
    smtb_scenario("wrong-key", control=True).expect_failed()
