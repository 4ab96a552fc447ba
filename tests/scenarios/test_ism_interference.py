"""ism-interference through the pytest plugin: passes, and its control (CRC check off) fails."""

from __future__ import annotations

from collections.abc import Callable

from smtestbed.services.controller.pytest_plugin import ScenarioOutcome


def test_ism_interference_passes(smtb_scenario: Callable[..., ScenarioOutcome]) -> None:
    """The emitter corrupts gw0's frames as predicted; gw1 is unaffected; counts match."""
    outcome = smtb_scenario("ism-interference")
    outcome.expect_passed()
    checks = {c.what: c for c in outcome.result.checks}
    assert checks["gw0: corrupted share as the channel predicts"].ok
    assert checks["gw1: no corrupted frame"].ok
    assert checks["gw0: rejected = channel corrupted"].ok


def test_ism_interference_control_fails(smtb_scenario: Callable[..., ScenarioOutcome]) -> None:
    """With the CRC check off frames the emitter corrupted are stored: the scenario fails."""
    outcome = smtb_scenario("ism-interference", control=True)
    outcome.expect_failed()
    failed = next(c for c in outcome.result.checks if not c.ok)
    assert failed.what.startswith("gw0: ")
