"""Certificate profiles of the test SM-PKI: one per role and purpose.

The hierarchy follows TR-03109-4 in shape (three levels) with test names:

- ``root``: the root CA (brainpoolP384r1, or P-384), self-signed, path length 1.
  It also issues ``ca-tls``, the TLS certificates CAs use between each other.
- ``smgw``: the sub-CA for gateways (brainpoolP256r1, or P-256), path length 0;
  it issues the gateway's separate TLS, signature and encryption certificates.
- ``emt``: the sub-CA for market participants (GWA and EMT), each again with
  a TLS, a signature and an encryption certificate.
- HAN clients of a gateway, also from the ``smgw`` sub-CA: ``han-display``
  (OU ``DISPLAY``, a consumer's display; its CN ``display.<consumer>.han.test.example``
  names the consumer whose data it may read) and ``han-technician`` (OU
  ``TECHNICIAN``, the service technician's diagnostics access) and ``han-cls``
  (OU ``CLS``, a controllable local system such as a heat pump or wallbox that
  reaches its EMT only through the gateway's proxy channel; its CN names the
  device, ``<device>.cls.han.test.example``). All are TLS client certificates
  only (EKU clientAuth), requested by the GWA.

Every certificate below the root carries the certificate policy
:data:`TEST_POLICY` (``1.3.6.1.4.1.32473.3109.4.1``). It lies under IANA
enterprise number 32473, reserved for documentation and examples (RFC 5612),
so it can never collide with a real policy. (The ITU-T example arc ``2.999``
would do as well, but pkilint's ASN.1 decoder rejects it.)

End-entity subjects are ``C=DE, O=smtestbed test SM-PKI, OU=<role>, CN=<name>``
where ``<name>`` is a dotted lower-case host name (``gw0001.smgw.test.example``);
TLS certificates repeat it as a dNSName.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_CURVES",
    "CURVES",
    "EE_CURVES",
    "ORGANISATION",
    "PROFILES",
    "ROOT",
    "SUB_CAS",
    "TEST_POLICY",
    "Profile",
    "ca_subject",
    "curve_name",
    "end_entity_subject",
    "hash_for",
    "is_dns_name",
    "key_usage",
]

TEST_POLICY = x509.ObjectIdentifier("1.3.6.1.4.1.32473.3109.4.1")
ORGANISATION = "smtestbed test SM-PKI"
ROOT = "root"
SUB_CAS: dict[str, str] = {"smgw": "gateways (SMGW)", "emt": "market participants (GWA, EMT)"}
CA_TITLES: dict[str, str] = {
    ROOT: "smtb Test SM-Root-CA",
    "smgw": "smtb Test SMGW Sub-CA",
    "emt": "smtb Test EMT Sub-CA",
}
CURVES: dict[str, type[ec.EllipticCurve]] = {
    "brainpoolP256r1": ec.BrainpoolP256R1,
    "brainpoolP384r1": ec.BrainpoolP384R1,
    "secp256r1": ec.SECP256R1,
    "secp384r1": ec.SECP384R1,
}
CURVE_ALIASES = {"P-256": "secp256r1", "P-384": "secp384r1"}
CA_CURVES: dict[str, tuple[str, str]] = {
    "brainpool": ("brainpoolP384r1", "brainpoolP256r1"),
    "nist": ("secp384r1", "secp256r1"),
}
"""Curve family -> (root curve, sub-CA curve) for ``smtb ca init --curve``."""
EE_CURVES = tuple(CURVES)

_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DNS_NAME = re.compile(rf"^(?=.{{1,253}}$){_DNS_LABEL}(?:\.{_DNS_LABEL})+$")
_KEY_USAGES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)
_TLS_EKU = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """What a certificate of one role and purpose looks like.

    Attributes:
        name: profile name used in requests (``smgw-tls``).
        issuer: name of the CA that issues it (``""`` for the self-signed root).
        role: organisational unit in the subject (``SMGW``, ``GWA``, ``EMT``, ``CA``).
        key_usage: names of the KeyUsage bits set (critical extension).
        extended_key_usage: EKU OIDs, empty for none.
        validity: lifetime, capped at the issuer's own notAfter.
        is_ca: basicConstraints cA.
        path_length: basicConstraints pathLenConstraint of a CA.
        curves: curves the subject key may be on.
        dns_name: the CN must also appear as a dNSName (TLS certificates).
        requested_by: profiles whose holders may request this one with their
            client certificate; a holder of the same role only for its own subject.
    """

    name: str
    issuer: str
    role: str
    key_usage: frozenset[str]
    extended_key_usage: tuple[x509.ObjectIdentifier, ...] = ()
    validity: timedelta
    is_ca: bool = False
    path_length: int | None = None
    curves: tuple[str, ...] = EE_CURVES
    dns_name: bool = False
    requested_by: tuple[str, ...] = ()

    @property
    def end_entity(self) -> bool:
        """Tell whether certificates of this profile are issued from CSRs."""
        return not self.is_ca


def _triple(role: str, prefix: str, issuer: str, requested_by: tuple[str, ...]) -> list[Profile]:
    """Return the TLS, signature and encryption profiles of one role."""

    def make(purpose: str, usage: str, eku: tuple[x509.ObjectIdentifier, ...] = ()) -> Profile:
        return Profile(
            name=f"{prefix}-{purpose}",
            issuer=issuer,
            role=role,
            key_usage=frozenset({usage}),
            extended_key_usage=eku,
            validity=timedelta(days=730),
            dns_name=purpose == "tls",
            requested_by=requested_by,
        )

    return [
        make("tls", "digital_signature", _TLS_EKU),
        make("sig", "digital_signature"),
        make("enc", "key_agreement"),
    ]


_CA_USAGE = frozenset({"key_cert_sign", "crl_sign"})
_ALL: list[Profile] = [
    Profile(
        name="root-ca",
        issuer="",
        role="CA",
        key_usage=_CA_USAGE,
        validity=timedelta(days=2922),
        is_ca=True,
        path_length=1,
    ),
    Profile(
        name="sub-ca",
        issuer=ROOT,
        role="CA",
        key_usage=_CA_USAGE,
        validity=timedelta(days=2557),
        is_ca=True,
        path_length=0,
    ),
    Profile(
        name="ca-tls",
        issuer=ROOT,
        role="CA",
        key_usage=frozenset({"digital_signature"}),
        extended_key_usage=_TLS_EKU,
        validity=timedelta(days=730),
        dns_name=True,
    ),
    *_triple("SMGW", "smgw", "smgw", ("gwa-tls", "smgw-tls")),
    *_triple("GWA", "gwa", "emt", ("gwa-tls",)),
    *_triple("EMT", "emt", "emt", ("emt-tls",)),
    *(
        Profile(
            name=f"han-{role.lower()}",
            issuer="smgw",
            role=role,
            key_usage=frozenset({"digital_signature"}),
            extended_key_usage=(ExtendedKeyUsageOID.CLIENT_AUTH,),
            validity=timedelta(days=730),
            dns_name=True,
            requested_by=("gwa-tls",),
        )
        for role in ("DISPLAY", "TECHNICIAN", "CLS")
    ),
]
PROFILES: dict[str, Profile] = {p.name: p for p in _ALL}


def key_usage(profile: Profile) -> x509.KeyUsage:
    """Return the KeyUsage extension value of ``profile``."""
    flags = {name: name in profile.key_usage for name in _KEY_USAGES}
    return x509.KeyUsage(**flags, encipher_only=False, decipher_only=False)


def is_dns_name(name: str) -> bool:
    """Tell whether ``name`` is a dotted lower-case host name (at least two labels)."""
    return bool(_DNS_NAME.match(name))


def curve_name(name: str) -> str:
    """Return the canonical curve name for ``name`` (``P-256`` -> ``secp256r1``)."""
    canonical = CURVE_ALIASES.get(name, name)
    if canonical not in CURVES:
        raise ValueError(f"unknown curve {name!r} (known: {', '.join(CURVES)})")
    return canonical


def hash_for(key: ec.EllipticCurvePrivateKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512:
    """Return the hash matching the signing key's size (SHA-256/-384/-512)."""
    if key.curve.key_size <= 256:
        return hashes.SHA256()
    if key.curve.key_size <= 384:
        return hashes.SHA384()
    return hashes.SHA512()


def ca_subject(name: str) -> x509.Name:
    """Return the subject of CA ``name`` (``root``, ``smgw``, ``emt``)."""
    return _name("CA", CA_TITLES[name])


def end_entity_subject(profile: Profile, common_name: str) -> x509.Name:
    """Return the subject the CA writes for ``common_name`` under ``profile``."""
    return _name(profile.role, common_name)


def _name(unit: str, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
