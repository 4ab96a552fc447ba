"""A small test PKI built with ``cryptography``: root, sub-CA, leaves, CRLs.

The default hierarchy follows the SM-PKI: a self-signed root on brainpoolP384r1,
a sub-CA on brainpoolP256r1 and end-entity certificates on brainpoolP256r1.
Every certificate passes ``openssl verify -x509_strict``: version 3, a subject
key identifier everywhere, an authority key identifier below the root, critical
basic constraints and key usage on CAs. CRLs carry a CRL number and an authority
key identifier, as RFC 5280 asks of conforming CAs.

Tests, benchmarks and other services' tests may reuse it; it does not depend on
the CA service.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_SERIALS = itertools.count(0x1000)


@dataclass(frozen=True, slots=True, kw_only=True)
class Issued:
    """A certificate with its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def name(self) -> str:
        """Return the subject's common name."""
        value = self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        return value if isinstance(value, str) else value.decode()


@dataclass(frozen=True, slots=True, kw_only=True)
class LeafProfile:
    """Key usage and extended key usage of an end-entity certificate.

    Attributes:
        key_usage: names of the ``x509.KeyUsage`` flags to set (``digital_signature``...).
        extended: extended key usage OIDs; empty means no EKU extension at all.
    """

    key_usage: frozenset[str]
    extended: tuple[x509.ObjectIdentifier, ...] = ()


TLS = LeafProfile(
    key_usage=frozenset({"digital_signature"}),
    extended=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
)
TLS_SERVER = LeafProfile(
    key_usage=frozenset({"digital_signature"}), extended=(ExtendedKeyUsageOID.SERVER_AUTH,)
)
TLS_CLIENT = LeafProfile(
    key_usage=frozenset({"digital_signature"}), extended=(ExtendedKeyUsageOID.CLIENT_AUTH,)
)
SIGNATURE = LeafProfile(key_usage=frozenset({"digital_signature"}))
ENCRYPTION = LeafProfile(key_usage=frozenset({"key_agreement"}))

_KEY_USAGE_FLAGS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)


def key_usage(flags: frozenset[str]) -> x509.KeyUsage:
    """Return a KeyUsage extension with exactly ``flags`` set."""
    unknown = flags - set(_KEY_USAGE_FLAGS)
    if unknown:
        raise ValueError(f"unknown key usage flags: {sorted(unknown)}")
    values = {flag: flag in flags for flag in _KEY_USAGE_FLAGS}
    return x509.KeyUsage(**values, encipher_only=False, decipher_only=False)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "smtestbed"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(
    subject: str,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    not_before: datetime,
    not_after: datetime,
) -> x509.CertificateBuilder:
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(next(_SERIALS))
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )


def _ca_extensions(
    builder: x509.CertificateBuilder, path_length: int | None
) -> x509.CertificateBuilder:
    return builder.add_extension(
        x509.BasicConstraints(ca=True, path_length=path_length), critical=True
    ).add_extension(key_usage(frozenset({"key_cert_sign", "crl_sign"})), critical=True)


def _aki(issuer: Issued) -> x509.AuthorityKeyIdentifier:
    ski = issuer.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def make_root(
    name: str, *, curve: ec.EllipticCurve, not_before: datetime, not_after: datetime
) -> Issued:
    """Return a self-signed root CA certificate on ``curve``."""
    key = ec.generate_private_key(curve)
    builder = _builder(name, _name(name), key, not_before, not_after)
    cert = _ca_extensions(builder, 1).sign(key, _hash_for(curve))
    return Issued(cert=cert, key=key)


def make_sub_ca(
    issuer: Issued, name: str, *, curve: ec.EllipticCurve, not_before: datetime, not_after: datetime
) -> Issued:
    """Return a sub-CA certificate on ``curve`` signed by ``issuer``."""
    key = ec.generate_private_key(curve)
    builder = _builder(name, issuer.cert.subject, key, not_before, not_after)
    builder = _ca_extensions(builder, 0).add_extension(_aki(issuer), critical=False)
    cert = builder.sign(issuer.key, _hash_for(issuer.key.curve))
    return Issued(cert=cert, key=key)


def make_leaf(
    issuer: Issued,
    name: str,
    *,
    profile: LeafProfile,
    curve: ec.EllipticCurve,
    not_before: datetime,
    not_after: datetime,
) -> Issued:
    """Return an end-entity certificate for ``name`` with ``profile``'s usages."""
    key = ec.generate_private_key(curve)
    builder = (
        _builder(name, issuer.cert.subject, key, not_before, not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(profile.key_usage), critical=True)
        .add_extension(_aki(issuer), critical=False)
    )
    if profile.extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(profile.extended), critical=False)
    cert = builder.sign(issuer.key, _hash_for(issuer.key.curve))
    return Issued(cert=cert, key=key)


def make_crl(
    issuer: Issued,
    *,
    number: int,
    this_update: datetime,
    next_update: datetime,
    revoked: Sequence[x509.Certificate] = (),
) -> x509.CertificateRevocationList:
    """Return a CRL of ``issuer`` listing ``revoked`` (revoked at ``this_update``)."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(_aki(issuer), critical=False)
    )
    for cert in revoked:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(this_update)
            .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
            .build()
        )
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(issuer.key, _hash_for(issuer.key.curve))


def _hash_for(curve: ec.EllipticCurve) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512:
    """Return the hash that matches the curve's strength (SHA-256 up to 256 bits)."""
    if curve.key_size > 384:
        return hashes.SHA512()
    return hashes.SHA384() if curve.key_size > 256 else hashes.SHA256()


@dataclass(frozen=True, slots=True, kw_only=True)
class Hierarchy:
    """A root and one sub-CA, each with a current CRL, valid around ``at``."""

    at: datetime
    root: Issued
    sub: Issued
    root_crl: x509.CertificateRevocationList
    sub_crl: x509.CertificateRevocationList
    leaf_curve: ec.EllipticCurve

    def leaf(
        self,
        name: str,
        *,
        profile: LeafProfile = TLS,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> Issued:
        """Return a leaf of the sub-CA, valid from a day before to 90 days after ``at``."""
        return make_leaf(
            self.sub,
            name,
            profile=profile,
            curve=self.leaf_curve,
            not_before=not_before or self.at - timedelta(days=1),
            not_after=not_after or self.at + timedelta(days=90),
        )

    def sub_crl_with(
        self,
        revoked: Sequence[x509.Certificate],
        *,
        number: int = 2,
        next_update: datetime | None = None,
    ) -> x509.CertificateRevocationList:
        """Return a newer sub-CA CRL listing ``revoked``, issued an hour before ``at``."""
        return make_crl(
            self.sub,
            number=number,
            this_update=self.at - timedelta(hours=1),
            next_update=next_update or self.at + timedelta(days=7),
            revoked=revoked,
        )


def build_hierarchy(
    at: datetime,
    *,
    root_curve: ec.EllipticCurve | None = None,
    sub_curve: ec.EllipticCurve | None = None,
    prefix: str = "smtb",
) -> Hierarchy:
    """Return a root (default brainpoolP384r1) and sub-CA (brainpoolP256r1) valid at ``at``.

    Leaves use the sub-CA's curve. Both CRLs are empty, issued an hour before
    ``at`` and due a week after it.
    """
    root_curve = root_curve or ec.BrainpoolP384R1()
    sub_curve = sub_curve or ec.BrainpoolP256R1()
    start, end = at - timedelta(days=30), at + timedelta(days=3650)
    root = make_root(f"{prefix} Root CA", curve=root_curve, not_before=start, not_after=end)
    sub = make_sub_ca(root, f"{prefix} Sub CA", curve=sub_curve, not_before=start, not_after=end)
    this_update, next_update = at - timedelta(hours=1), at + timedelta(days=7)
    return Hierarchy(
        at=at,
        root=root,
        sub=sub,
        root_crl=make_crl(root, number=1, this_update=this_update, next_update=next_update),
        sub_crl=make_crl(sub, number=1, this_update=this_update, next_update=next_update),
        leaf_curve=sub_curve,
    )
