"""billing-day through the pytest plugin: passes, and its control (billing day 2) fails."""

from __future__ import annotations

from collections.abc import Callable

from smtestbed.services.controller.pytest_plugin import ScenarioOutcome


def test_billing_day_passes(smtb_scenario: Callable[..., ScenarioOutcome]) -> None:
    """TAF1 values at 2026-12-01 00:00 equal the farm's counters then."""
    outcome = smtb_scenario("billing-day")
    outcome.expect_passed()
    compared = [c for c in outcome.result.checks if c.what.endswith("= farm counter")]
    assert len(compared) == 4


def test_billing_day_control_fails(smtb_scenario: Callable[..., ScenarioOutcome]) -> None:
    """With the gateway's billing day on the 2nd, no value for the 1st: the scenario fails."""
    smtb_scenario("billing-day", control=True).expect_failed()
