"""LDAP publishing of certificates and CRLs to a real slapd, read back with ldap3 and ldapsearch."""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import ldap3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from smtestbed.services._runtime.errors import RequestError
from smtestbed.services._runtime.testing import free_port
from smtestbed.services.ca.ldap import LdapError, LdapPublisher
from smtestbed.services.ca.validation import Reason, Usage, validate

from tests.integration.slapd import Slapd, running_slapd
from tests.unit.ca import pki_factory as pki

AT = datetime(2031, 5, 4, 12, 0, tzinfo=UTC)
SUB_CA = "smtb Sub CA"


@pytest.fixture
def slapd(tmp_path: Path) -> Iterator[Slapd]:
    """A real slapd with an empty database for dc=smtb,dc=test."""
    with running_slapd(tmp_path / "slapd") as server:
        yield server


@pytest.fixture
def publisher(slapd: Slapd) -> LdapPublisher:
    """A publisher bound as the directory's root DN."""
    return LdapPublisher(slapd.url, slapd.base_dn, slapd.root_dn, slapd.password)


@pytest.fixture(scope="module")
def hierarchy() -> pki.Hierarchy:
    """The SM-PKI test hierarchy: brainpoolP384r1 root, brainpoolP256r1 sub-CA."""
    return pki.build_hierarchy(AT)


def ldapsearch(slapd: Slapd, base: str, cn: str, attribute: str) -> list[bytes]:
    """Return the values of ``attribute`` of entries named ``cn`` below ``base``, by ldapsearch.

    ldapsearch prints binary values base64-encoded after ``attribute::`` and folds
    long lines (a continuation line starts with one space).
    """
    if shutil.which("ldapsearch") is None:
        pytest.skip("ldapsearch is not installed (Debian package ldap-utils)")
    argv = ["ldapsearch", "-x", "-LLL", "-H", slapd.url, "-b", base, f"(cn={cn})", attribute]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True)
    unfolded = done.stdout.replace("\n ", "")
    prefix = f"{attribute}:: "
    return [
        base64.b64decode(line[len(prefix) :])
        for line in unfolded.splitlines()
        if line.startswith(prefix)
    ]


def ldap3_values(slapd: Slapd, dn: str, attribute: str) -> list[bytes]:
    """Return the raw values of ``attribute`` of entry ``dn``, read anonymously with ldap3."""
    with ldap3.Connection(slapd.url, auto_bind=True) as conn:
        assert conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=[attribute])
        return list(conn.response[0]["raw_attributes"][attribute])


def der(item: x509.Certificate | x509.CertificateRevocationList) -> bytes:
    """Return the DER encoding of a certificate or CRL."""
    return item.public_bytes(Encoding.DER)


def test_ca_certificate_reads_back_identical(
    slapd: Slapd, publisher: LdapPublisher, hierarchy: pki.Hierarchy
) -> None:
    """A published CA certificate comes back byte for byte through ldap3 and ldapsearch."""
    dn = publisher.publish_ca_certificate(hierarchy.sub.cert)
    assert dn == f"cn={SUB_CA},ou=cas,dc=smtb,dc=test"
    assert ldap3_values(slapd, dn, "cACertificate;binary") == [der(hierarchy.sub.cert)]
    base = f"ou=cas,{slapd.base_dn}"
    assert ldapsearch(slapd, base, SUB_CA, "cACertificate;binary") == [der(hierarchy.sub.cert)]
    assert publisher.ca_certificate(SUB_CA) == hierarchy.sub.cert


def test_leaf_certificate_reads_back_identical(
    slapd: Slapd, publisher: LdapPublisher, hierarchy: pki.Hierarchy
) -> None:
    """A published end-entity certificate comes back byte for byte through ldap3 and ldapsearch."""
    leaf = hierarchy.leaf("gw1.test.example")
    dn = publisher.publish_certificate(leaf.cert)
    assert dn == "cn=gw1.test.example,ou=certificates,dc=smtb,dc=test"
    assert ldap3_values(slapd, dn, "userCertificate;binary") == [der(leaf.cert)]
    base = f"ou=certificates,{slapd.base_dn}"
    assert ldapsearch(slapd, base, "gw1.test.example", "userCertificate;binary") == [der(leaf.cert)]
    assert publisher.certificates("gw1.test.example") == [leaf.cert]


def test_crl_reads_back_identical(
    slapd: Slapd, publisher: LdapPublisher, hierarchy: pki.Hierarchy
) -> None:
    """A published CRL lands on its issuer's entry and comes back byte for byte."""
    dn = publisher.publish_crl(hierarchy.sub_crl)
    assert dn == f"cn={SUB_CA},ou=cas,dc=smtb,dc=test"
    attribute = "certificateRevocationList;binary"
    assert ldap3_values(slapd, dn, attribute) == [der(hierarchy.sub_crl)]
    assert ldapsearch(slapd, f"ou=cas,{slapd.base_dn}", SUB_CA, attribute) == [
        der(hierarchy.sub_crl)
    ]
    assert publisher.crl(SUB_CA) == hierarchy.sub_crl


def test_newer_crl_replaces_the_old_one(
    slapd: Slapd, publisher: LdapPublisher, hierarchy: pki.Hierarchy
) -> None:
    """Republishing a CRL leaves exactly the newer one, next to the CA certificate."""
    publisher.publish_ca_certificate(hierarchy.sub.cert)
    publisher.publish_crl(hierarchy.sub_crl)
    revoked = hierarchy.leaf("gw2.test.example")
    newer = hierarchy.sub_crl_with([revoked.cert], number=2)
    publisher.publish_crl(newer)
    attribute = "certificateRevocationList;binary"
    assert ldapsearch(slapd, f"ou=cas,{slapd.base_dn}", SUB_CA, attribute) == [der(newer)]
    fetched = publisher.crl(SUB_CA)
    assert fetched is not None
    assert fetched.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2
    assert publisher.ca_certificate(SUB_CA) == hierarchy.sub.cert


def test_crl_from_ldap_revokes_in_validation(
    publisher: LdapPublisher, hierarchy: pki.Hierarchy
) -> None:
    """A CRL fetched back from LDAP makes the validator report the listed leaf as revoked."""
    leaf = hierarchy.leaf("gw3.test.example")
    publisher.publish_crl(hierarchy.sub_crl_with([leaf.cert]))
    crl = publisher.crl(SUB_CA)
    assert crl is not None
    result = validate(
        leaf.cert,
        intermediates=[hierarchy.sub.cert],
        trust_roots=[hierarchy.root.cert],
        crls=[hierarchy.root_crl, crl],
        at=AT,
        usage=Usage.TLS_CLIENT,
    )
    assert result.reason is Reason.REVOKED


def test_renewal_replaces_only_the_same_role(
    slapd: Slapd, publisher: LdapPublisher, hierarchy: pki.Hierarchy
) -> None:
    """A renewed TLS certificate replaces the old TLS one and keeps the signature one."""
    name = "gw4.test.example"
    old_tls = hierarchy.leaf(name, profile=pki.TLS)
    signature = hierarchy.leaf(name, profile=pki.SIGNATURE)
    new_tls = hierarchy.leaf(name, profile=pki.TLS, not_before=AT)
    for cert in (old_tls, signature, new_tls):
        publisher.publish_certificate(cert.cert)
    values = ldapsearch(slapd, f"ou=certificates,{slapd.base_dn}", name, "userCertificate;binary")
    assert sorted(values) == sorted([der(signature.cert), der(new_tls.cert)])


def test_empty_directory_gets_base_and_subtrees(slapd: Slapd, publisher: LdapPublisher) -> None:
    """Publishing into an empty directory creates the base entry, ou=cas and ou=certificates."""
    publisher.publish_ca_certificate(pki.build_hierarchy(AT).root.cert)
    publisher.publish_certificate(pki.build_hierarchy(AT).leaf("gw5.test.example").cert)
    with ldap3.Connection(slapd.url, auto_bind=True) as conn:
        conn.search(
            slapd.base_dn, "(objectClass=organizationalUnit)", ldap3.LEVEL, attributes=["ou"]
        )
        units = sorted(str(entry["attributes"]["ou"][0]) for entry in conn.response)
    assert units == ["cas", "certificates"]


def test_unreachable_server_is_an_ldap_error(hierarchy: pki.Hierarchy) -> None:
    """Publishing to a port where no server listens raises LdapError naming the URL."""
    url = f"ldap://127.0.0.1:{free_port()}"
    publisher = LdapPublisher(url, "dc=smtb,dc=test", "cn=admin,dc=smtb,dc=test", "x", timeout=2)
    with pytest.raises(LdapError, match=f"LDAP server {url} failed"):
        publisher.publish_crl(hierarchy.sub_crl)


def test_wrong_password_is_an_ldap_error(slapd: Slapd, hierarchy: pki.Hierarchy) -> None:
    """A bind with a wrong password raises LdapError saying the bind was refused."""
    publisher = LdapPublisher(slapd.url, slapd.base_dn, slapd.root_dn, "wrong-password")
    with pytest.raises(LdapError, match="refused the bind as cn=admin,dc=smtb,dc=test"):
        publisher.publish_ca_certificate(hierarchy.root.cert)


def test_anonymous_publisher_may_not_write(slapd: Slapd, hierarchy: pki.Hierarchy) -> None:
    """An anonymous bind may read but its writes are refused with LdapError."""
    publisher = LdapPublisher(slapd.url, slapd.base_dn, "", "")
    with pytest.raises(LdapError, match="refused to create dc=smtb,dc=test"):
        publisher.publish_certificate(hierarchy.leaf("gw6.test.example").cert)
    assert publisher.certificates("gw6.test.example") == []


def test_republished_ca_certificate_replaces_the_old_one(
    slapd: Slapd, publisher: LdapPublisher, hierarchy: pki.Hierarchy
) -> None:
    """A CA certificate republished after renewal is the only one left on the CA entry."""
    publisher.publish_ca_certificate(hierarchy.sub.cert)
    renewed = pki.make_sub_ca(
        hierarchy.root,
        SUB_CA,
        curve=hierarchy.leaf_curve,
        not_before=AT,
        not_after=AT + timedelta(days=365),
    )
    publisher.publish_ca_certificate(renewed.cert)
    values = ldapsearch(slapd, f"ou=cas,{slapd.base_dn}", SUB_CA, "cACertificate;binary")
    assert values == [der(renewed.cert)]


def test_certificate_without_common_name_is_refused(hierarchy: pki.Hierarchy) -> None:
    """A certificate whose subject has no CN is refused before any LDAP traffic."""
    key = hierarchy.sub.key
    nameless = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "smtb")]))
        .issuer_name(hierarchy.sub.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(AT)
        .not_valid_after(AT + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    publisher = LdapPublisher(f"ldap://127.0.0.1:{free_port()}", "dc=smtb,dc=test", "", "")
    with pytest.raises(RequestError, match="subject: has no common name"):
        publisher.publish_certificate(nameless)
