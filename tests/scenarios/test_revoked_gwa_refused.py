"""revoked-gwa-refused via the pytest plugin: the GWA is refused once the CRL names it."""

from __future__ import annotations

from collections.abc import Callable

from smtestbed.services.controller.pytest_plugin import ScenarioOutcome


def test_revoked_gwa_refused_passes(smtb_scenario: Callable[..., ScenarioOutcome]) -> None:
    """The GWA is served, revoked at the CA, and refused as revoked after the next CRL fetch."""
    outcome = smtb_scenario("revoked-gwa-refused")
    outcome.expect_passed()
    whats = [c.what for c in outcome.result.checks]
    assert "CA reports the GWA revoked" in whats
    assert "wan.tls_refused revoked" in whats


def test_revoked_gwa_refused_control_fails(smtb_scenario: Callable[..., ScenarioOutcome]) -> None:
    """With unsafe_skip_checks = ["crl"] the revoked GWA is served: the run must fail."""
    outcome = smtb_scenario("revoked-gwa-refused", control=True)
    outcome.expect_failed()
    assert "revoked GWA's session refused" in outcome.result.message
