"""Build certificates from a profile: extensions, naming, signature hash.

Every certificate gets SKI and AKI (the issuer's SKI; the root's own); every
one below the root also gets a CRL distribution point (``<base_url>/crl/<issuer>.crl``) and the
test certificate policy. The signature hash follows the issuer key's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from smtestbed.services.ca.profiles import TEST_POLICY, Profile, hash_for, key_usage

__all__ = ["BACKDATE", "Issuer", "Subject", "build_certificate", "crl_url"]

BACKDATE = timedelta(minutes=5)
"""notBefore lies this far before the issuing time, for peers whose clocks lag."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Issuer:
    """A CA that signs: its name, certificate and private key."""

    name: str
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


@dataclass(frozen=True, slots=True, kw_only=True)
class Subject:
    """What a new certificate is about."""

    name: x509.Name
    public_key: ec.EllipticCurvePublicKey
    dns_name: str = ""


def crl_url(base_url: str, issuer: str) -> str:
    """Return the HTTP URL of CA ``issuer``'s CRL."""
    return f"{base_url.rstrip('/')}/crl/{issuer}.crl"


def build_certificate(
    profile: Profile,
    subject: Subject,
    *,
    issuer: Issuer | None,
    signing_key: ec.EllipticCurvePrivateKey,
    serial: int,
    now: datetime,
    base_url: str,
) -> x509.Certificate:
    """Sign a certificate for ``subject`` under ``profile``.

    Args:
        issuer: the signing CA, or None for a self-signed root (``signing_key``
            is then the subject's own key).
        signing_key: the key that signs (the issuer's, or the root's own).
        serial: positive serial number, unique per CA directory.
        now: issuing time (UTC); the validity is capped at the issuer's notAfter.
        base_url: HTTP base of the CA service, for the CRL distribution point.
    """
    not_after = now + profile.validity
    if issuer is not None:
        not_after = min(not_after, issuer.certificate.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject.name)
        .issuer_name(subject.name if issuer is None else issuer.certificate.subject)
        .public_key(subject.public_key)
        .serial_number(serial)
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
    )
    for ext, critical in _extensions(profile, subject, issuer, base_url):
        builder = builder.add_extension(ext, critical=critical)
    return builder.sign(signing_key, hash_for(signing_key))


def _extensions(
    profile: Profile, subject: Subject, issuer: Issuer | None, base_url: str
) -> list[tuple[x509.ExtensionType, bool]]:
    ski = x509.SubjectKeyIdentifier.from_public_key(subject.public_key)
    exts: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=profile.is_ca, path_length=profile.path_length), True),
        (key_usage(profile), True),
        (ski, False),
    ]
    if profile.extended_key_usage:
        exts.append((x509.ExtendedKeyUsage(list(profile.extended_key_usage)), False))
    if subject.dns_name:
        exts.append((x509.SubjectAlternativeName([x509.DNSName(subject.dns_name)]), False))
    aki_source = (
        ski
        if issuer is None
        else issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    )
    exts.append((x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(aki_source), False))
    if issuer is None:
        return exts
    exts += [
        (_distribution_point(crl_url(base_url, issuer.name)), False),
        (x509.CertificatePolicies([x509.PolicyInformation(TEST_POLICY, None)]), False),
    ]
    return exts


def _distribution_point(url: str) -> x509.CRLDistributionPoints:
    point = x509.DistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)],
        relative_name=None,
        reasons=None,
        crl_issuer=None,
    )
    return x509.CRLDistributionPoints([point])
