"""counter-rollback through the pytest plugin: passes; its control (check skipped) fails."""

from __future__ import annotations

from collections.abc import Callable

from smtestbed.services.controller.pytest_plugin import ScenarioOutcome


def test_counter_rollback_passes(smtb_scenario: Callable[..., ScenarioOutcome]) -> None:
    """A counter set back: refused as counter_backwards, logged, nothing lower stored."""
    outcome = smtb_scenario("counter-rollback")
    outcome.expect_passed()
    whats = [c.what for c in outcome.result.checks]
    assert any(w.endswith("rejected as counter going backwards") for w in whats)
    assert "latest stored total between the restored and the farm's counter" in whats


def test_counter_rollback_control_fails(smtb_scenario: Callable[..., ScenarioOutcome]) -> None:
    """With unsafe_skip_checks = ["counter_backwards"] the scenario must fail."""
    outcome = smtb_scenario("counter-rollback", control=True)
    outcome.expect_failed()
    assert "counter going backwards" in outcome.result.message
