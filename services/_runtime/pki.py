"""SM-PKI material for services: PEM files, subject names, and path validation with CRLs.

:func:`check_chain` validates a certificate against trust roots, intermediates
and CRLs with pyhanko-certvalidator (``cryptography``'s own verifier refuses
brainpool chains and ignores CRLs). Revocation checking is required for every
certificate below the root, as with ``openssl verify -crl_check_all``; nothing
is fetched from the network. Key usage is the caller's business (see
:func:`role` and the certificate's extensions).

:class:`TrustFiles` holds roots, intermediates and CRLs read from PEM files and
reads them again when a file changes, so a CRL replaced on disk counts from the
next check on.
"""

from __future__ import annotations

import stat
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from asn1crypto import x509 as asn1_x509  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator import errors as pkix
from smtestbed.services._runtime.errors import ConfigError, TestbedError

__all__ = [
    "ChainStatus",
    "ChainVerdict",
    "TrustFiles",
    "check_chain",
    "common_name",
    "load_owner_key",
    "read_certificates",
    "read_crls",
    "read_private_key",
    "role",
]


class ChainStatus(StrEnum):
    """Outcome of a path validation."""

    OK = "ok"
    REVOKED = "revoked"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    UNTRUSTED = "untrusted"  # no path to a trust root, a bad signature or CA certificate
    NO_REVOCATION_INFO = "no_revocation_info"  # a CRL is missing, badly signed or stale
    INVALID = "invalid"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainVerdict:
    """Verdict on one certificate: ``ok``, the status and the validator's words."""

    ok: bool
    status: ChainStatus
    detail: str


_STATUS: tuple[tuple[type[Exception], ChainStatus], ...] = (
    (pkix.RevokedError, ChainStatus.REVOKED),
    (pkix.ExpiredError, ChainStatus.EXPIRED),
    (pkix.NotYetValidError, ChainStatus.NOT_YET_VALID),
    (pkix.InsufficientRevinfoError, ChainStatus.NO_REVOCATION_INFO),  # stale ones too
    (pkix.PathBuildingError, ChainStatus.UNTRUSTED),
    (pkix.PathValidationError, ChainStatus.UNTRUSTED),
    (pkix.InvalidCertificateError, ChainStatus.UNTRUSTED),
)


def _asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))


async def check_chain(
    leaf: x509.Certificate,
    *,
    intermediates: Sequence[x509.Certificate],
    trust_roots: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    at: datetime,
) -> ChainVerdict:
    """Validate ``leaf`` at the aware moment ``at``; every CA below the root needs its CRL."""
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    context = ValidationContext(
        trust_roots=[_asn1(c) for c in trust_roots],
        crls=[c.public_bytes(Encoding.DER) for c in crls],
        moment=at,
        revocation_mode="require",
        allow_fetching=False,
    )
    validator = CertificateValidator(
        _asn1(leaf),
        intermediate_certs=[_asn1(c) for c in intermediates],
        validation_context=context,
    )
    try:
        await validator.async_validate_path()
    except (pkix.PathError, pkix.ValidationError) as exc:
        status = next((s for kind, s in _STATUS if isinstance(exc, kind)), ChainStatus.INVALID)
        return ChainVerdict(ok=False, status=status, detail=str(exc))
    return ChainVerdict(ok=True, status=ChainStatus.OK, detail="valid")


def _name(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str:
    found = cert.subject.get_attributes_for_oid(oid)
    return str(found[0].value) if found else ""


def common_name(cert: x509.Certificate) -> str:
    """Return the subject CN, or "" if it has none."""
    return _name(cert, NameOID.COMMON_NAME)


def role(cert: x509.Certificate) -> str:
    """Return the subject's organisational unit (``SMGW``, ``EMT``, ``GWA``, ``CA``), or ""."""
    return _name(cert, NameOID.ORGANIZATIONAL_UNIT_NAME)


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from exc


def read_certificates(path: Path) -> list[x509.Certificate]:
    """Read every certificate of a PEM file (a chain or a bundle)."""
    try:
        certs = x509.load_pem_x509_certificates(_read(path, "certificate file"))
    except ValueError as exc:
        raise ConfigError(f"{path}: no PEM certificate: {exc}") from exc
    return list(certs)


def read_crls(path: Path) -> list[x509.CertificateRevocationList]:
    """Read a CRL file: PEM (one or more CRLs) or DER (one)."""
    data = _read(path, "CRL file")
    marker = b"-----BEGIN X509 CRL-----"
    try:
        if marker not in data:
            return [x509.load_der_x509_crl(data)]
        blocks = data.split(marker)[1:]
        return [x509.load_pem_x509_crl(marker + block) for block in blocks]
    except ValueError as exc:
        raise ConfigError(f"{path}: not a CRL: {exc}") from exc


def read_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Read an unencrypted PEM EC private key."""
    try:
        key = serialization.load_pem_private_key(_read(path, "key file"), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{path}: not an EC private key")
    return key


def load_owner_key(
    path: Path,
    *,
    password: bytes | None,
    what: str,
    undecodable: str,
    error: type[TestbedError],
) -> ec.EllipticCurvePrivateKey:
    """Load a PEM EC private key from a file that only its owner may read.

    Args:
        path: the key file.
        password: the PKCS#8 passphrase, or None for an unencrypted key.
        what: the key's name in the message when the file cannot be read ("CA key").
        undecodable: the message when the PEM does not load (wrong passphrase, no key).
        error: the error raised, with a message that starts with ``path``.

    Raises:
        TestbedError: ``error``, when the file is unreadable, has group or other permission
            bits (must be 0600), does not load, or holds no EC key.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        pem = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror}") from exc
    if mode & 0o077:
        raise error(f"{path}: key file has mode {mode:04o}, must be 0600")
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except (ValueError, TypeError) as exc:
        raise error(f"{path}: {undecodable}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise error(f"{path}: not an EC private key")
    return key


class TrustFiles:
    """Trust roots, intermediate CA certificates and CRLs from PEM files, re-read on change.

    Args:
        trust_roots: files of trust anchors (the SM-PKI root).
        intermediates: files of sub-CA certificates a peer may leave out.
        crls: CRL files of the root and the sub-CAs.
    """

    def __init__(
        self, *, trust_roots: Sequence[Path], intermediates: Sequence[Path], crls: Sequence[Path]
    ) -> None:
        if not trust_roots:
            raise ConfigError("needs at least one trust root", key="trust_roots")
        self._files = (tuple(trust_roots), tuple(intermediates), tuple(crls))
        self._stamp: tuple[tuple[int, int], ...] = ()
        self.roots: list[x509.Certificate] = []
        self.intermediates: list[x509.Certificate] = []
        self.crls: list[x509.CertificateRevocationList] = []
        self.refresh()

    def refresh(self) -> bool:
        """Read the files again if any changed since the last read; tell whether they did."""
        roots, subs, crls = self._files
        stamp = tuple(_mtime(p) for p in (*roots, *subs, *crls))
        if stamp == self._stamp:
            return False
        self.roots = [c for p in roots for c in read_certificates(p)]
        self.intermediates = [c for p in subs for c in read_certificates(p)]
        self.crls = [c for p in crls for c in read_crls(p)]
        self._stamp = stamp
        return True


def _mtime(path: Path) -> tuple[int, int]:
    try:
        info = Path(path).stat()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    return (info.st_mtime_ns, info.st_size)
