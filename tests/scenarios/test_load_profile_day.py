"""load-profile-day through the pytest plugin: passes, and its control (receiver down) fails."""

from __future__ import annotations

from collections.abc import Callable

from smtestbed.services.controller.pytest_plugin import ScenarioOutcome


def test_load_profile_day_passes(smtb_scenario: Callable[..., ScenarioOutcome]) -> None:
    """Every meter's 96 TAF7 intervals match the farm's counters and sum to the day's use."""
    outcome = smtb_scenario("load-profile-day")
    outcome.expect_passed()
    sums = [c for c in outcome.result.checks if c.what.endswith("= farm counter difference")]
    boundaries = [c for c in outcome.result.checks if " boundary " in c.what]
    assert len(sums) == 3
    assert len(boundaries) == 3 * 97


def test_load_profile_day_control_fails(smtb_scenario: Callable[..., ScenarioOutcome]) -> None:
    """With the receiver down no profile is formed: the scenario fails at the first meter."""
    outcome = smtb_scenario("load-profile-day", control=True)
    outcome.expect_failed()
    failed = [c for c in outcome.result.checks if not c.ok]
    assert [c.what for c in failed] == [failed[0].what]
    assert "has the day's 96 intervals" in failed[0].what
