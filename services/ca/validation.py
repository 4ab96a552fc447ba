"""Certificate path validation with CRLs, and the same check by ``openssl verify``.

:func:`validate` checks a certificate against trust roots, intermediates and
CRLs at a given moment with pyhanko-certvalidator (``cryptography``'s own
verifier refuses brainpool chains and ignores CRLs). Revocation checking is
mandatory for every certificate below the trust root, as with OpenSSL's
``-crl_check_all``: a missing CRL fails the check, and so does one whose
nextUpdate has passed. Nothing is fetched from the network.

:func:`openssl_verify` runs ``openssl verify -x509_strict -crl_check_all`` on
the same inputs and reads its verdict into the same :class:`Reason` values, so
that the two can be compared certificate by certificate.

Usage rules (:class:`Usage`): TLS usages need the digitalSignature key usage
(ECDSA signs the handshake) and, when the certificate has an extended key usage
extension, serverAuth or clientAuth in it. ``signature`` needs digitalSignature,
``encryption`` keyAgreement (ECDH); OpenSSL has no purpose for these two, so
:func:`openssl_verify` checks only chain, validity and revocation for them.

When a certificate has several faults, the two may name different ones first:
OpenSSL reports a wrong purpose before revocation and revocation before
expiry, while :func:`validate` reports usage last.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from asn1crypto import x509 as asn1_x509  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator import errors as pkix
from pyhanko_certvalidator.validate import validate_usage as _check_usage
from smtestbed.services._runtime.errors import TestbedError


class Usage(StrEnum):
    """What the certificate's key is about to be used for."""

    TLS_SERVER = "tls_server"
    TLS_CLIENT = "tls_client"
    SIGNATURE = "signature"
    ENCRYPTION = "encryption"
    ANY = "any"


class Reason(StrEnum):
    """Outcome of a validation; ``ok`` or why the certificate must not be used."""

    OK = "ok"
    REVOKED = "revoked"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    WRONG_ISSUER = "wrong_issuer"  # no path to a trust root, bad signature, bad CA cert
    WRONG_USAGE = "wrong_usage"
    CRL_MISSING = "crl_missing"  # no usable CRL: none, badly signed, not yet in force
    CRL_STALE = "crl_stale"  # the only matching CRL's nextUpdate has passed
    INVALID = "invalid"  # anything else


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidationResult:
    """Verdict on one certificate.

    Attributes:
        ok: True when the certificate may be used for the asked usage.
        reason: ``Reason.OK`` or the first fault found.
        detail: the validator's own words, for people.
    """

    ok: bool
    reason: Reason
    detail: str

    @classmethod
    def failed(cls, reason: Reason, detail: str) -> ValidationResult:
        """Return a negative result for ``reason``."""
        return cls(ok=False, reason=reason, detail=detail)


class ValidationToolError(TestbedError):
    """``openssl verify`` could not be run or gave no verdict (not a certificate fault)."""


@dataclass(frozen=True, slots=True)
class _UsageRule:
    key_usage: frozenset[str]  # pyhanko-certvalidator / asn1crypto flag names
    extended: frozenset[str]  # required when the certificate has an EKU extension
    openssl_purpose: str | None


_RULES: dict[Usage, _UsageRule] = {
    Usage.TLS_SERVER: _UsageRule(
        frozenset({"digital_signature"}), frozenset({"server_auth"}), "sslserver"
    ),
    Usage.TLS_CLIENT: _UsageRule(
        frozenset({"digital_signature"}), frozenset({"client_auth"}), "sslclient"
    ),
    Usage.SIGNATURE: _UsageRule(frozenset({"digital_signature"}), frozenset(), None),
    Usage.ENCRYPTION: _UsageRule(frozenset({"key_agreement"}), frozenset(), None),
    Usage.ANY: _UsageRule(frozenset(), frozenset(), None),
}


def openssl_purpose(usage: Usage) -> str | None:
    """Return the ``openssl verify -purpose`` value for ``usage``, or None if it has none."""
    return _RULES[usage].openssl_purpose


def _der(item: x509.Certificate | x509.CertificateRevocationList) -> bytes:
    return item.public_bytes(Encoding.DER)


def _context(
    trust_roots: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    at: datetime,
) -> ValidationContext:
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    return ValidationContext(
        trust_roots=[asn1_x509.Certificate.load(_der(c)) for c in trust_roots],
        crls=[_der(crl) for crl in crls],
        moment=at,
        revocation_mode="require",
        allow_fetching=False,
    )


def _path_reason(exc: Exception) -> Reason:
    """Map a pyhanko-certvalidator path error to a reason (subclasses first)."""
    checks: tuple[tuple[type[Exception], Reason], ...] = (
        (pkix.RevokedError, Reason.REVOKED),
        (pkix.ExpiredError, Reason.EXPIRED),
        (pkix.NotYetValidError, Reason.NOT_YET_VALID),
        (pkix.StaleRevinfoError, Reason.CRL_STALE),
        (pkix.InsufficientRevinfoError, Reason.CRL_MISSING),
        (pkix.PathBuildingError, Reason.WRONG_ISSUER),
        (pkix.PathValidationError, Reason.WRONG_ISSUER),
        (pkix.InvalidCertificateError, Reason.WRONG_ISSUER),  # e.g. untrusted self-signed
    )
    for kind, reason in checks:
        if isinstance(exc, kind):
            return reason
    return Reason.INVALID


async def validate_async(
    leaf: x509.Certificate,
    *,
    intermediates: Sequence[x509.Certificate],
    trust_roots: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    at: datetime,
    usage: Usage,
) -> ValidationResult:
    """Validate ``leaf`` at ``at`` for ``usage``; see :func:`validate`."""
    validator = CertificateValidator(
        asn1_x509.Certificate.load(_der(leaf)),
        intermediate_certs=[asn1_x509.Certificate.load(_der(c)) for c in intermediates],
        validation_context=_context(trust_roots, crls, at),
    )
    try:
        path = await validator.async_validate_path()
    except (pkix.PathError, pkix.ValidationError) as exc:
        return ValidationResult.failed(_path_reason(exc), str(exc))
    rule = _RULES[usage]
    try:
        _check_usage(path.leaf, set(rule.key_usage), set(rule.extended), True)
    except pkix.InvalidCertificateError as exc:
        return ValidationResult.failed(Reason.WRONG_USAGE, str(exc))
    return ValidationResult(ok=True, reason=Reason.OK, detail=f"valid for {usage.value}")


def validate(
    leaf: x509.Certificate,
    *,
    intermediates: Sequence[x509.Certificate],
    trust_roots: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    at: datetime,
    usage: Usage,
) -> ValidationResult:
    """Validate ``leaf`` at the moment ``at`` for ``usage``, with CRLs for every CA.

    Args:
        leaf: the certificate to check.
        intermediates: sub-CA certificates that may complete the path.
        trust_roots: the only certificates trusted without a path.
        crls: CRLs of every CA in the path (the root's CRL covers the sub-CAs).
        at: timezone-aware moment of the check (certificate and CRL times).
        usage: the intended use of the certificate's key.

    Returns:
        ``ok`` with ``Reason.OK``, or the first fault found. Runs its own event
        loop; inside a running loop await :func:`validate_async` instead.
    """
    return asyncio.run(
        validate_async(
            leaf,
            intermediates=intermediates,
            trust_roots=trust_roots,
            crls=crls,
            at=at,
            usage=usage,
        )
    )


# X509_V_ERR_* codes of OpenSSL 3 (include/openssl/x509_vfy.h) that name a reason.
_OPENSSL_CODES: dict[int, Reason] = {
    **dict.fromkeys(
        (2, 4, 6, 7, 18, 19, 20, 21, 24, 25, 27, 28, 29, 30, 31, 32), Reason.WRONG_ISSUER
    ),
    # A CRL that is badly signed, not yet in force or from an unfit issuer is no
    # usable CRL; pyhanko-certvalidator reports all of these as missing revocation info.
    **dict.fromkeys((3, 5, 8, 11, 33, 35, 36, 44), Reason.CRL_MISSING),
    9: Reason.NOT_YET_VALID,
    10: Reason.EXPIRED,
    12: Reason.CRL_STALE,
    23: Reason.REVOKED,
    26: Reason.WRONG_USAGE,
}
_ERROR_LINE = re.compile(r"^error (\d+) at (\d+) depth lookup: (.*)$", re.MULTILINE)


def openssl_reason(code: int) -> Reason:
    """Return the reason for an OpenSSL ``X509_V_ERR_*`` code."""
    return _OPENSSL_CODES.get(code, Reason.INVALID)


def parse_openssl_verdict(returncode: int, stdout: str, stderr: str) -> ValidationResult:
    """Read the verdict of ``openssl verify`` on one certificate.

    OpenSSL prints ``FILE: OK`` when the certificate is valid; otherwise one line
    ``error CODE at DEPTH depth lookup: TEXT`` per fault (it goes on after some
    faults, such as a wrong purpose), and exits with a non-zero code.

    Raises:
        ValidationToolError: neither a verdict nor an error line was printed.
    """
    errors = _ERROR_LINE.findall(stderr) + _ERROR_LINE.findall(stdout)
    if returncode == 0 and not errors and stdout.rstrip().endswith(": OK"):
        return ValidationResult(ok=True, reason=Reason.OK, detail=stdout.strip())
    if not errors:
        raise ValidationToolError(f"openssl verify gave no verdict: {stderr.strip()[:300]}")
    detail = "; ".join(f"error {c} at depth {d}: {t}" for c, d, t in errors)
    return ValidationResult.failed(openssl_reason(int(errors[0][0])), detail)


def _write_pem(
    path: Path, items: Sequence[x509.Certificate | x509.CertificateRevocationList]
) -> Path:
    path.write_bytes(b"".join(item.public_bytes(Encoding.PEM) for item in items))
    return path


def openssl_verify_argv(
    workdir: Path,
    leaf: x509.Certificate,
    *,
    intermediates: Sequence[x509.Certificate],
    trust_roots: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    at: datetime | None,
    usage: Usage,
    openssl: str = "openssl",
) -> list[str]:
    """Write the inputs as PEM files into ``workdir`` and return the verify command."""
    argv = [openssl, "verify", "-x509_strict", "-crl_check_all"]
    argv += ["-CAfile", str(_write_pem(workdir / "roots.pem", trust_roots))]
    if intermediates:
        argv += ["-untrusted", str(_write_pem(workdir / "untrusted.pem", intermediates))]
    for index, crl in enumerate(crls):
        argv += ["-CRLfile", str(_write_pem(workdir / f"crl-{index}.pem", [crl]))]
    purpose = openssl_purpose(usage)
    if purpose is not None:
        argv += ["-purpose", purpose]
    if at is not None:
        argv += ["-attime", str(int(at.timestamp()))]
    return [*argv, str(_write_pem(workdir / "leaf.pem", [leaf]))]


def openssl_verify(
    leaf: x509.Certificate,
    *,
    intermediates: Sequence[x509.Certificate],
    trust_roots: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    at: datetime | None,
    usage: Usage,
    openssl: str = "openssl",
    timeout: float = 30.0,
) -> ValidationResult:
    """Check ``leaf`` as :func:`validate` does, but with ``openssl verify -crl_check_all``.

    ``at`` is passed as ``-attime`` (whole seconds); None means now. The purpose
    is checked only for usages with an OpenSSL purpose (see :func:`openssl_purpose`).

    Raises:
        ValidationToolError: openssl is missing, timed out or printed no verdict.
    """
    with tempfile.TemporaryDirectory(prefix="smtb-verify-") as tmp:
        argv = openssl_verify_argv(
            Path(tmp),
            leaf,
            intermediates=intermediates,
            trust_roots=trust_roots,
            crls=crls,
            at=at,
            usage=usage,
            openssl=openssl,
        )
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ValidationToolError(f"cannot run {openssl} verify: {exc}") from exc
    return parse_openssl_verdict(done.returncode, done.stdout, done.stderr)
