"""Revocation and CRLs: numbers, reasons, openssl's and pkilint's view, refresh before expiry."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from smtestbed.proto import topics
from smtestbed.services.ca.access import Requester
from smtestbed.services.ca.authority import Authority
from smtestbed.services.ca.errors import InvalidRequestError, NotFoundError, RefusedError

from tests.unit.ca.ca_helpers import (
    PASSPHRASE,
    EventLog,
    FakeTime,
    issue_with_token,
    new_authority,
    openssl_verify,
    pkilint_crl,
    write_pem,
)

GATEWAY = "gw0001.smgw.test.example"
ADMIN = Requester(admin=True)


@pytest.fixture
def clock() -> FakeTime:
    """The authority's clock."""
    return FakeTime()


@pytest.fixture
def authority(tmp_path: Path, clock: FakeTime) -> Iterator[Authority]:
    """A fresh CA directory on a settable clock."""
    ca = new_authority(tmp_path / "ca", clock=clock)
    yield ca
    ca.close()


def _crl(authority: Authority, name: str) -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(authority.current_crl(name).der)


def test_revocation_appears_in_the_next_crl_with_a_higher_number(authority: Authority) -> None:
    """Revoking publishes the issuer's CRL with number + 1, the serial, its time and reason."""
    issued = issue_with_token(authority, "smgw-tls", GATEWAY)
    before = _crl(authority, "smgw").extensions.get_extension_for_class(x509.CRLNumber).value
    authority.revoke(issued.serial, "keyCompromise", ADMIN)
    crl = _crl(authority, "smgw")
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == (
        before.crl_number + 1
    )
    entry = crl.get_revoked_certificate_by_serial_number(issued.serial)
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.key_compromise
    assert crl.is_signature_valid(authority.issuers["smgw"].key.public_key())
    assert _crl(authority, "emt").get_revoked_certificate_by_serial_number(issued.serial) is None


def test_crl_carries_aki_this_update_and_next_update(authority: Authority, clock: FakeTime) -> None:
    """thisUpdate is the issuing time, nextUpdate one CRL validity later, AKI the CA's SKI."""
    record = authority.publish_crl("emt")
    crl = x509.load_der_x509_crl(record.der)
    assert crl.last_update_utc == clock.now
    assert crl.next_update_utc == clock.now + authority.policy.crl_validity
    ski = (
        authority.issuers["emt"]
        .certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        .value.digest
    )
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski


def test_openssl_rejects_the_revoked_certificate(tmp_path: Path, authority: Authority) -> None:
    """After revocation `openssl verify -crl_check_all` answers error 23, certificate revoked."""
    issued = issue_with_token(authority, "gwa-tls", "gwa.test.example")
    leaf = write_pem(tmp_path / "gwa.pem", issued.certificate)
    assert openssl_verify(authority.store.folder, "emt", leaf).stdout.strip().endswith("OK")
    authority.revoke(issued.serial, "superseded", ADMIN)
    result = openssl_verify(authority.store.folder, "emt", leaf)
    assert result.returncode != 0
    assert "error 23" in result.stdout + result.stderr


def test_revoked_sub_ca_is_listed_on_the_root_crl(tmp_path: Path, authority: Authority) -> None:
    """Revoking the smgw sub-CA makes openssl refuse the gateway certificates below it."""
    issued = issue_with_token(authority, "smgw-sig", GATEWAY)
    sub = authority.issuers["smgw"].certificate
    authority.revoke(sub.serial_number, "cACompromise", ADMIN)
    assert _crl(authority, "root").get_revoked_certificate_by_serial_number(sub.serial_number)
    result = openssl_verify(
        authority.store.folder, "smgw", write_pem(tmp_path / "gw.pem", issued.certificate)
    )
    assert "error 23" in result.stdout + result.stderr


def test_crls_pass_pkilint_without_error(authority: Authority) -> None:
    """Every CA's CRL, with entries of several reasons, lints clean at ERROR."""
    for profile, reason in (("smgw-tls", "keyCompromise"), ("smgw-enc", "unspecified")):
        authority.revoke(issue_with_token(authority, profile, GATEWAY).serial, reason, ADMIN)
    authority.revoke(
        issue_with_token(authority, "emt-sig", "emt.test.example").serial,
        "cessationOfOperation",
        ADMIN,
    )
    for name in ("root", "smgw", "emt"):
        result = pkilint_crl(authority.store.folder / "crl" / f"{name}.crl.pem")
        assert (result.returncode, result.stdout.strip()) == (0, ""), (name, result.stdout)


def test_unspecified_reason_is_written_without_reason_extension(authority: Authority) -> None:
    """RFC 5280 §5.3.1: reasonCode unspecified SHOULD be absent."""
    issued = issue_with_token(authority, "smgw-tls", GATEWAY)
    authority.revoke(issued.serial, "unspecified", ADMIN)
    entry = _crl(authority, "smgw").get_revoked_certificate_by_serial_number(issued.serial)
    assert entry is not None
    assert len(entry.extensions) == 0


def test_revocation_is_recorded_and_reported(authority: Authority, clock: FakeTime) -> None:
    """The record gets status, time and reason; ca.cert_revoked then ca.crl_published follow."""
    issued = issue_with_token(authority, "smgw-tls", GATEWAY)
    record = authority.revoke(issued.serial, "affiliationChanged", ADMIN)
    assert (record.status, record.reason, record.revoked_at) == (
        "revoked",
        "affiliationChanged",
        clock.now,
    )
    log = authority.events
    assert isinstance(log, EventLog)
    assert log.kinds()[-2:] == [topics.CA_CERT_REVOKED, topics.CA_CRL_PUBLISHED]
    assert log.events[-1][1]["ca"] == "smgw"


def test_second_revocation_and_unknown_serial_are_refused(authority: Authority) -> None:
    """Revoking twice is a bad request, an unknown serial is not found; neither adds a CRL."""
    issued = issue_with_token(authority, "smgw-tls", GATEWAY)
    authority.revoke(issued.serial, "superseded", ADMIN)
    number = authority.current_crl("smgw").number
    with pytest.raises(InvalidRequestError, match="already revoked"):
        authority.revoke(issued.serial, "superseded", ADMIN)
    with pytest.raises(NotFoundError) as info:
        authority.revoke(0x1234, "superseded", ADMIN)
    assert info.value.field == "serial"
    assert authority.current_crl("smgw").number == number


def test_unknown_reason_is_refused_on_field_reason(authority: Authority) -> None:
    """certificateHold and made-up reasons are not accepted."""
    issued = issue_with_token(authority, "smgw-tls", GATEWAY)
    for reason in ("certificateHold", "tired"):
        with pytest.raises(InvalidRequestError) as info:
            authority.revoke(issued.serial, reason, ADMIN)
        assert info.value.field == "reason"
    assert authority.store.certificate(issued.serial).status == "valid"  # type: ignore[union-attr]


def test_revocation_needs_a_matching_revoke_token(authority: Authority) -> None:
    """Without admin rights only a revoke token for that profile and subject revokes."""
    issued = issue_with_token(authority, "smgw-tls", GATEWAY)
    enrol = authority.create_token(profile="smgw-tls", subject=GATEWAY)
    with pytest.raises(RefusedError, match="for issue"):
        authority.revoke(issued.serial, "superseded", Requester(token=enrol))
    token = authority.create_token(profile="smgw-tls", subject=GATEWAY, purpose="revoke")
    assert authority.revoke(issued.serial, "superseded", Requester(token=token)).status == "revoked"


def test_refresh_publishes_only_crls_about_to_expire(authority: Authority, clock: FakeTime) -> None:
    """A CRL is renewed once now + margin reaches its nextUpdate, not before."""
    margin = timedelta(hours=1)
    assert authority.refresh_crls(margin) == []
    clock.advance((authority.policy.crl_validity - margin).total_seconds() - 1)
    assert authority.refresh_crls(margin) == []
    clock.advance(1)
    published = authority.refresh_crls(margin)
    assert sorted(r.issuer for r in published) == ["emt", "root", "smgw"]
    assert {r.number for r in published} == {2}


def test_crl_numbers_keep_growing_across_a_reopen(authority: Authority) -> None:
    """The CRL number is state: a reopened CA continues where it stopped."""
    folder = authority.store.folder
    authority.publish_crl("smgw")
    authority.close()
    again = Authority.open(folder, PASSPHRASE)
    assert again.publish_crl("smgw").number == 3
    again.close()
