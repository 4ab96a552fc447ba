"""collision-storm through the pytest plugin: passes, and its control (CRC check off) fails."""

from __future__ import annotations

from collections.abc import Callable

from smtestbed.services.controller.pytest_plugin import ScenarioOutcome


def test_collision_storm_passes(smtb_scenario: Callable[..., ScenarioOutcome]) -> None:
    """Losses seen by the gateway equal the channel's; every stored reading is the farm's."""
    outcome = smtb_scenario("collision-storm")
    outcome.expect_passed()
    checks = {c.what: c for c in outcome.result.checks}
    assert checks["meters' losses (sent - stored) = channel's"].ok
    assert (
        len([w for w in checks if w.endswith("every stored reading is what the farm sent")]) == 120
    )


def test_collision_storm_control_fails(smtb_scenario: Callable[..., ScenarioOutcome]) -> None:
    """With the CRC check off corrupted frames are stored: the gateway's counts stop matching."""
    outcome = smtb_scenario("collision-storm", control=True)
    outcome.expect_failed()
    failed = next(c for c in outcome.result.checks if not c.ok)
    assert failed.what.startswith("gw0: ")
