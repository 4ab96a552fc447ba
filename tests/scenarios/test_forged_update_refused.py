"""forged-update-refused via the pytest plugin: passes; its control (signature check off) fails."""

from __future__ import annotations

from collections.abc import Callable

from smtestbed.services.controller.pytest_plugin import ScenarioOutcome


def test_forged_update_refused_passes(smtb_scenario: Callable[..., ScenarioOutcome]) -> None:
    """A foreign-signed, an older and an equal bundle are refused; a newer signed one installs."""
    outcome = smtb_scenario("forged-update-refused")
    outcome.expect_passed()
    reasons = [c.detail for c in outcome.result.checks if c.what.startswith("reason for ")]
    assert (
        reasons
        == ["expected 'bad_signature', saw 'bad_signature'"]
        + ["expected 'not_newer', saw 'not_newer'"] * 2
    )


def test_forged_update_refused_control_fails(
    smtb_scenario: Callable[..., ScenarioOutcome],
) -> None:
    """With unsafe_skip_checks = ["update_signature"] the forged 2.0.0 installs: the run fails."""
    outcome = smtb_scenario("forged-update-refused", control=True)
    outcome.expect_failed()
    assert "2.0.0 signed by foreign refused" in outcome.result.message
