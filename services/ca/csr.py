"""Certificate signing requests: parsing and the checks before anything is signed.

A CSR is accepted only if its self-signature verifies, the profile exists
and is issued from CSRs, the key is an EC key on a curve the profile allows,
and the subject has exactly one CN that is a dotted lower-case host name.
Everything else in the CSR (other subject attributes, requested extensions)
is ignored: the CA writes subject and extensions from the profile.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from smtestbed.services.ca.errors import InvalidRequestError
from smtestbed.services.ca.profiles import PROFILES, Profile, is_dns_name

__all__ = ["CheckedRequest", "check_request", "load_csr", "lookup_profile"]

MAX_CSR_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckedRequest:
    """A CSR that passed every check, with what the CA takes from it."""

    profile: Profile
    common_name: str
    public_key: ec.EllipticCurvePublicKey


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    """Parse a CSR given as PEM or DER."""
    if not data:
        raise InvalidRequestError("empty CSR", field="csr")
    if len(data) > MAX_CSR_BYTES:
        raise InvalidRequestError(f"CSR larger than {MAX_CSR_BYTES} bytes", field="csr")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except ValueError as exc:
        raise InvalidRequestError("not a PEM or DER PKCS#10 request", field="csr") from exc


def lookup_profile(name: str, *, end_entity: bool = True) -> Profile:
    """Return profile ``name``; with ``end_entity`` only profiles issued from CSRs."""
    profile = PROFILES.get(name)
    if profile is None or (end_entity and not profile.end_entity):
        known = ", ".join(p.name for p in PROFILES.values() if p.end_entity or not end_entity)
        raise InvalidRequestError(f"unknown profile {name!r} (known: {known})", field="profile")
    return profile


def check_request(csr: x509.CertificateSigningRequest, profile_name: str) -> CheckedRequest:
    """Check ``csr`` against profile ``profile_name``; raise naming the field at fault."""
    profile = lookup_profile(profile_name)
    try:
        # A public key off its curve makes cryptography raise here rather than answer.
        key = csr.public_key()
        signature_ok = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidRequestError(f"CSR public key is invalid: {exc}", field="csr.key") from exc
    if not signature_ok:
        raise InvalidRequestError("CSR signature does not verify", field="csr")
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise InvalidRequestError("not an elliptic-curve key", field="csr.key")
    if key.curve.name not in profile.curves:
        allowed = ", ".join(profile.curves)
        raise InvalidRequestError(
            f"curve {key.curve.name} not allowed by {profile.name} (allowed: {allowed})",
            field="csr.key",
        )
    return CheckedRequest(profile=profile, common_name=_common_name(csr), public_key=key)


def _common_name(csr: x509.CertificateSigningRequest) -> str:
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise InvalidRequestError("subject needs exactly one CN", field="csr.subject")
    value = names[0].value
    name = value if isinstance(value, str) else value.decode("ascii", "replace")
    if not is_dns_name(name):
        raise InvalidRequestError(
            f"CN {name!r} is not a dotted lower-case host name", field="csr.subject"
        )
    return name
