"""replay-attack through the pytest plugin: passes; its control (replay check off) fails."""

from __future__ import annotations

from collections.abc import Callable

from smtestbed.services.controller.pytest_plugin import ScenarioOutcome


def test_replay_attack_passes(smtb_scenario: Callable[..., ScenarioOutcome]) -> None:
    """A telegram replayed on the radio is refused as replay, logged and not stored twice."""
    outcome = smtb_scenario("replay-attack")
    outcome.expect_passed()
    whats = [c.what for c in outcome.result.checks]
    assert "telegrams the farm replayed" in whats
    assert "readings with the replayed access number" in whats


def test_replay_attack_control_fails(smtb_scenario: Callable[..., ScenarioOutcome]) -> None:
    """With unsafe_skip_checks = ["replay"] the copy is not refused: the scenario fails."""
    outcome = smtb_scenario("replay-attack", control=True)
    outcome.expect_failed()
    assert "rejected as replay" in outcome.result.message
