"""Issuing: the hierarchy verifies with openssl; bad or unauthorised requests are refused."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from smtestbed.proto import topics
from smtestbed.services.ca.access import Requester
from smtestbed.services.ca.authority import Authority
from smtestbed.services.ca.errors import CaError, InvalidRequestError, RefusedError
from smtestbed.services.ca.profiles import PROFILES

from tests.unit.ca.ca_helpers import (
    PASSPHRASE,
    EventLog,
    issue_with_token,
    make_csr,
    make_key,
    new_authority,
    openssl_verify,
    write_pem,
)

END_ENTITY = [p for p in PROFILES.values() if p.end_entity]
GATEWAY = "gw0001.smgw.test.example"


@pytest.fixture
def authority(tmp_path: Path) -> Iterator[Authority]:
    """A fresh brainpool CA directory."""
    ca = new_authority(tmp_path / "ca")
    yield ca
    ca.close()


def _events(authority: Authority) -> EventLog:
    assert isinstance(authority.events, EventLog)
    return authority.events


@pytest.mark.parametrize("family", ["brainpool", "nist"])
def test_every_profile_verifies_with_openssl_crl_check_all(tmp_path: Path, family: str) -> None:
    """Each end-entity profile's certificate passes `openssl verify -x509_strict -crl_check_all`."""
    authority = new_authority(tmp_path / "ca", family=family)
    for profile in END_ENTITY:
        name = f"{profile.name}.test.example"
        issued = issue_with_token(authority, profile.name, name)
        result = openssl_verify(
            tmp_path / "ca", issued.issuer, write_pem(tmp_path / "leaf.pem", issued.certificate)
        )
        assert result.stdout.strip().endswith(": OK"), (profile.name, result.stdout, result.stderr)
    authority.close()


def test_hierarchy_uses_brainpool_p384_root_and_p256_sub_cas(authority: Authority) -> None:
    """Root on brainpoolP384r1, sub-CAs smgw and emt on brainpoolP256r1, signed by the root."""
    curves = {name: issuer.key.curve.name for name, issuer in authority.issuers.items()}
    assert curves == {
        "root": "brainpoolP384r1",
        "smgw": "brainpoolP256r1",
        "emt": "brainpoolP256r1",
    }
    root = authority.issuers["root"].certificate
    for name in ("smgw", "emt"):
        authority.issuers[name].certificate.verify_directly_issued_by(root)


def test_issued_certificate_is_recorded_and_reported(authority: Authority) -> None:
    """Issuing stores serial, subject, profile, not_after and status, and emits ca.cert_issued."""
    issued = issue_with_token(authority, "smgw-tls", GATEWAY)
    record = authority.store.certificate(issued.serial)
    assert record is not None
    assert (record.subject, record.profile, record.issuer, record.status) == (
        GATEWAY,
        "smgw-tls",
        "smgw",
        "valid",
    )
    assert record.not_after == issued.certificate.not_valid_after_utc
    kind, body = _events(authority).events[-1]
    assert kind == topics.CA_CERT_ISSUED
    assert body["serial"] == f"{issued.serial:x}"
    assert body["profile"] == "smgw-tls"


def test_subject_and_extensions_come_from_the_profile_not_the_csr(authority: Authority) -> None:
    """Extra subject attributes and requested extensions in a CSR are not copied."""
    key = make_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Somebody Else"),
                    x509.NameAttribute(NameOID.COMMON_NAME, GATEWAY),
                ]
            )
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    token = authority.create_token(profile="smgw-sig", subject=GATEWAY)
    issued = authority.issue(
        csr.public_bytes(serialization.Encoding.PEM), "smgw-sig", Requester(token=token)
    )
    cert = issued.certificate
    assert (
        cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
        == "smtestbed test SM-PKI"
    )
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def _tampered_csr() -> bytes:
    der = bytearray(
        x509.load_pem_x509_csr(make_csr(GATEWAY)).public_bytes(serialization.Encoding.DER)
    )
    der[-5] ^= 0x01  # inside the ECDSA signature's last INTEGER
    return bytes(der)


def test_csr_with_bad_signature_is_refused_and_token_kept(authority: Authority) -> None:
    """A CSR whose signature does not verify is refused on field csr; the token stays usable."""
    token = authority.create_token(profile="smgw-tls", subject=GATEWAY)
    with pytest.raises(InvalidRequestError) as info:
        authority.issue(_tampered_csr(), "smgw-tls", Requester(token=token))
    assert info.value.field == "csr"
    assert authority.store.counts()["valid"] == 2  # the two sub-CAs only
    kind, body = _events(authority).events[-1]
    assert (kind, body["field"], body["action"]) == (topics.CA_REQUEST_REFUSED, "csr", "issue")
    issued = authority.issue(make_csr(GATEWAY), "smgw-tls", Requester(token=token))
    assert issued.subject == GATEWAY


def _csr_with_point_off_the_curve() -> bytes:
    csr = x509.load_pem_x509_csr(make_csr(GATEWAY))
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    point = csr.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    at = bytes(der).index(point)
    der[at + len(point) - 1] ^= 0x01  # last byte of y: the point leaves the curve
    return bytes(der)


def _csr_with_an_unknown_curve() -> bytes:
    der = bytearray(
        x509.load_pem_x509_csr(make_csr(GATEWAY)).public_bytes(serialization.Encoding.DER)
    )
    oid = bytes.fromhex("06092b2403030208010107")  # brainpoolP256r1
    at = bytes(der).index(oid)
    der[at + len(oid) - 1] ^= 0x06  # 1.3.36.3.3.2.8.1.1.1: a curve nobody implements
    return bytes(der)


def test_csr_with_an_unknown_curve_is_refused_on_field_csr_key(authority: Authority) -> None:
    """A CSR whose key names an unsupported curve is refused with a clear error, not a crash."""
    token = authority.create_token(profile="smgw-tls", subject=GATEWAY)
    with pytest.raises(InvalidRequestError) as info:
        authority.issue(_csr_with_an_unknown_curve(), "smgw-tls", Requester(token=token))
    assert info.value.field == "csr.key"


def test_csr_with_a_public_key_off_its_curve_is_refused_on_field_csr_key(
    authority: Authority,
) -> None:
    """A CSR whose EC point is not on the curve is refused with a clear error, not a crash."""
    token = authority.create_token(profile="smgw-tls", subject=GATEWAY)
    with pytest.raises(InvalidRequestError) as info:
        authority.issue(_csr_with_point_off_the_curve(), "smgw-tls", Requester(token=token))
    assert info.value.field == "csr.key"
    assert authority.store.counts()["valid"] == 2  # the two sub-CAs only


@pytest.mark.parametrize("profile", ["no-such-profile", "sub-ca", "root-ca"])
def test_unknown_or_ca_profile_is_refused_on_field_profile(
    authority: Authority, profile: str
) -> None:
    """Only end-entity profiles can be requested from a CSR."""
    with pytest.raises(InvalidRequestError) as info:
        authority.issue(make_csr(GATEWAY), profile, Requester(admin=True))
    assert info.value.field == "profile"


@pytest.mark.parametrize("curve", [ec.SECP521R1(), ec.BrainpoolP512R1(), ec.SECP256K1()])
def test_key_on_a_curve_the_profile_does_not_allow_is_refused(
    authority: Authority, curve: ec.EllipticCurve
) -> None:
    """P-521, brainpoolP512r1 and secp256k1 keys are refused on field csr.key."""
    with pytest.raises(InvalidRequestError) as info:
        authority.issue(make_csr(GATEWAY, make_key(curve)), "smgw-tls", Requester(admin=True))
    assert info.value.field == "csr.key"


@pytest.mark.parametrize("name", ["localhost", "GW1.Example.Test", "gw_1.test.example", ""])
def test_subject_that_is_not_a_dotted_host_name_is_refused(authority: Authority, name: str) -> None:
    """The CN must be a lower-case dotted host name (pkilint rejects bare localhost)."""
    with pytest.raises(InvalidRequestError) as info:
        authority.issue(
            make_csr(name) if name else _csr_without_cn(), "smgw-tls", Requester(admin=True)
        )
    assert info.value.field == "csr.subject"


def _csr_without_cn() -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nobody")]))
        .sign(
            make_key(),
            hashes.SHA256(),
        )
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def test_request_without_token_or_certificate_is_refused(authority: Authority) -> None:
    """Nobody gets a certificate without credentials."""
    with pytest.raises(RefusedError) as info:
        authority.issue(make_csr(GATEWAY), "smgw-tls", Requester())
    assert info.value.field == "token"


@pytest.mark.parametrize(
    ("profile", "subject"), [("smgw-sig", GATEWAY), ("smgw-tls", "gw0002.smgw.test.example")]
)
def test_token_bound_to_other_profile_or_subject_is_refused(
    authority: Authority, profile: str, subject: str
) -> None:
    """A token for smgw-tls/gw0001 does not buy smgw-sig or another gateway's certificate."""
    token = authority.create_token(profile="smgw-tls", subject=GATEWAY)
    with pytest.raises(RefusedError) as info:
        authority.issue(make_csr(subject), profile, Requester(token=token))
    assert info.value.field == "token"


def test_token_is_good_for_one_certificate_only(authority: Authority) -> None:
    """The second use of an enrolment token is refused."""
    token = authority.create_token(profile="smgw-tls", subject=GATEWAY)
    authority.issue(make_csr(GATEWAY), "smgw-tls", Requester(token=token))
    with pytest.raises(RefusedError, match="already used"):
        authority.issue(make_csr(GATEWAY), "smgw-tls", Requester(token=token))


def test_gwa_client_certificate_may_request_gateway_certificates(authority: Authority) -> None:
    """A GWA's TLS certificate authorises requests for any gateway's certificates."""
    gwa = issue_with_token(authority, "gwa-tls", "gwa.test.example").certificate
    issued = authority.issue(make_csr(GATEWAY), "smgw-enc", Requester(client_certificate=gwa))
    assert (issued.profile, issued.issuer) == ("smgw-enc", "smgw")


def test_emt_client_certificate_may_not_request_gateway_certificates(authority: Authority) -> None:
    """An EMT is not a gateway administrator."""
    emt = issue_with_token(authority, "emt-tls", "emt.test.example").certificate
    with pytest.raises(RefusedError) as info:
        authority.issue(make_csr(GATEWAY), "smgw-tls", Requester(client_certificate=emt))
    assert info.value.field == "client_certificate"


def test_client_certificate_renews_only_its_own_subject(authority: Authority) -> None:
    """An EMT may renew its own certificates, not another EMT's."""
    emt = issue_with_token(authority, "emt-tls", "emt.test.example").certificate
    own = authority.issue(
        make_csr("emt.test.example"), "emt-sig", Requester(client_certificate=emt)
    )
    assert own.subject == "emt.test.example"
    with pytest.raises(RefusedError, match="own subject"):
        authority.issue(
            make_csr("other-emt.test.example"), "emt-sig", Requester(client_certificate=emt)
        )


def test_revoked_client_certificate_authorises_nothing(authority: Authority) -> None:
    """After its revocation a GWA certificate no longer authorises requests."""
    gwa = issue_with_token(authority, "gwa-tls", "gwa.test.example").certificate
    authority.revoke(gwa.serial_number, "keyCompromise", Requester(admin=True))
    with pytest.raises(RefusedError, match="revoked"):
        authority.issue(make_csr(GATEWAY), "smgw-tls", Requester(client_certificate=gwa))


def test_foreign_client_certificate_is_refused(tmp_path: Path, authority: Authority) -> None:
    """A GWA certificate from another CA directory is not one of ours."""
    other = new_authority(tmp_path / "other")
    foreign = issue_with_token(other, "gwa-tls", "gwa.test.example").certificate
    other.close()
    with pytest.raises(RefusedError, match="not issued by this CA"):
        authority.issue(make_csr(GATEWAY), "smgw-tls", Requester(client_certificate=foreign))


def test_key_files_are_mode_0600_and_encrypted(authority: Authority) -> None:
    """Each CA key is encrypted PKCS#8, owner-only, and does not load without the passphrase."""
    for name in ("root", "smgw", "emt"):
        path = authority.store.key_path(name)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        pem = path.read_bytes()
        assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        with pytest.raises(TypeError):
            serialization.load_pem_private_key(pem, password=None)
        with pytest.raises(ValueError, match=r"(?i)decrypt|password|deserializ"):
            serialization.load_pem_private_key(pem, password=b"wrong")
    assert stat.S_IMODE((authority.store.folder / "private").stat().st_mode) == 0o700
    assert stat.S_IMODE((authority.store.folder / "ca.sqlite3").stat().st_mode) == 0o600


def test_wrong_passphrase_does_not_open_the_ca(authority: Authority) -> None:
    """Opening a CA directory with the wrong passphrase is a CaError naming the variable."""
    with pytest.raises(CaError, match="SMTB_CA_PASSPHRASE"):
        Authority.open(authority.store.folder, b"not the passphrase")


def test_key_file_readable_by_others_is_refused(authority: Authority) -> None:
    """A CA key whose mode was widened is not used."""
    authority.store.key_path("smgw").chmod(0o644)
    with pytest.raises(CaError, match="mode 0644"):
        Authority.open(authority.store.folder, PASSPHRASE)


def test_reopened_ca_issues_with_the_same_keys(authority: Authority) -> None:
    """State and keys survive a reopen: a new certificate chains to the same sub-CA."""
    folder = authority.store.folder
    sub = authority.issuers["smgw"].certificate
    authority.close()
    again = Authority.open(folder, PASSPHRASE)
    issued = issue_with_token(again, "smgw-tls", GATEWAY)
    issued.certificate.verify_directly_issued_by(sub)
    again.close()
