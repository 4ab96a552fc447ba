"""Certificate profiles: extensions per role, naming, and pkilint's verdict on each."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from smtestbed.services.ca.authority import Authority, Issued
from smtestbed.services.ca.profiles import PROFILES, TEST_POLICY, is_dns_name

from tests.unit.ca.ca_helpers import (
    BASE_URL,
    issue_with_token,
    new_authority,
    pkilint_cert,
    write_pem,
)

END_ENTITY = [p.name for p in PROFILES.values() if p.end_entity]
KU_NAMES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)


@pytest.fixture(scope="module")
def issued(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Authority, dict[str, Issued]]]:
    """One CA directory with one certificate of every end-entity profile."""
    authority = new_authority(tmp_path_factory.mktemp("ca") / "ca")
    certs = {name: issue_with_token(authority, name, f"{name}.test.example") for name in END_ENTITY}
    yield authority, certs
    authority.close()


def _ku(cert: x509.Certificate) -> set[str]:
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    return {name for name in KU_NAMES if getattr(ku, name)}


@pytest.mark.parametrize("name", END_ENTITY)
def test_end_entity_certificate_passes_pkilint_without_error(
    tmp_path: Path, issued: tuple[Authority, dict[str, Issued]], name: str
) -> None:
    """`lint_pkix_cert lint -s ERROR` reports nothing for this profile's certificate."""
    result = pkilint_cert(write_pem(tmp_path / f"{name}.pem", issued[1][name].certificate))
    assert (result.returncode, result.stdout.strip()) == (0, ""), result.stdout


@pytest.mark.parametrize("ca", ["root", "smgw", "emt"])
def test_ca_certificate_passes_pkilint_without_error(
    issued: tuple[Authority, dict[str, Issued]], ca: str
) -> None:
    """The root and sub-CA certificates (PEM copies in certs/) lint clean at ERROR."""
    result = pkilint_cert(issued[0].store.folder / "certs" / f"{ca}.pem")
    assert (result.returncode, result.stdout.strip()) == (0, ""), result.stdout


@pytest.mark.parametrize("name", END_ENTITY)
def test_end_entity_extensions_follow_the_profile(
    issued: tuple[Authority, dict[str, Issued]], name: str
) -> None:
    """KU, basic constraints, policy, CRL distribution point and AKI follow the profile."""
    authority, certs = issued
    profile, cert = PROFILES[name], certs[name].certificate
    exts = cert.extensions
    assert _ku(cert) == set(profile.key_usage)
    assert exts.get_extension_for_class(x509.KeyUsage).critical
    assert exts.get_extension_for_class(x509.BasicConstraints).value.ca is False
    policies = exts.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier for p in policies] == [TEST_POLICY]
    points = exts.get_extension_for_class(x509.CRLDistributionPoints).value
    assert points[0].full_name == [
        x509.UniformResourceIdentifier(f"{BASE_URL}/crl/{profile.issuer}.crl")
    ]
    issuer = authority.issuers[profile.issuer].certificate
    issuer_ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert (
        exts.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == issuer_ski
    )
    cert.verify_directly_issued_by(issuer)


@pytest.mark.parametrize("name", [n for n in END_ENTITY if n.endswith("-tls")])
def test_tls_certificates_carry_server_and_client_auth_and_a_dns_name(
    issued: tuple[Authority, dict[str, Issued]], name: str
) -> None:
    """TLS profiles serve both ends of mutual TLS and name the host as dNSName."""
    cert = issued[1][name].certificate
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [f"{name}.test.example"]


def test_gateway_gets_three_separate_certificates_with_distinct_usages() -> None:
    """smgw-tls signs handshakes, -sig signs data, -enc agrees keys; all from the smgw sub-CA."""
    usages = {
        n: (PROFILES[n].issuer, PROFILES[n].key_usage) for n in ("smgw-tls", "smgw-sig", "smgw-enc")
    }
    assert usages == {
        "smgw-tls": ("smgw", frozenset({"digital_signature"})),
        "smgw-sig": ("smgw", frozenset({"digital_signature"})),
        "smgw-enc": ("smgw", frozenset({"key_agreement"})),
    }
    assert PROFILES["smgw-sig"].extended_key_usage == ()
    assert PROFILES["smgw-tls"].extended_key_usage != ()


@pytest.mark.parametrize(("ca", "path_length"), [("root", 1), ("smgw", 0), ("emt", 0)])
def test_ca_certificates_sign_certificates_and_crls_only(
    issued: tuple[Authority, dict[str, Issued]], ca: str, path_length: int
) -> None:
    """CA certificates: critical cA with the path length of their level, keyCertSign and cRLSign."""
    cert = issued[0].issuers[ca].certificate
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert (bc.critical, bc.value.ca, bc.value.path_length) == (True, True, path_length)
    assert _ku(cert) == {"key_cert_sign", "crl_sign"}


def test_end_entity_validity_is_two_years(issued: tuple[Authority, dict[str, Issued]]) -> None:
    """EE certificates run 730 days from issuing (notBefore is back-dated 5 minutes)."""
    cert = issued[1]["emt-tls"].certificate
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=730, minutes=5)


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("gw0001.smgw.test.example", True),
        ("a.b", True),
        ("localhost", False),
        ("Gw.test.example", False),
        ("-x.test.example", False),
        ("x..example", False),
    ],
)
def test_only_dotted_lower_case_host_names_are_subject_names(name: str, ok: bool) -> None:
    """At least two labels, lower case, letters, digits and inner hyphens."""
    assert is_dns_name(name) is ok
