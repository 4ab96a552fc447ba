"""Factories for CA tests: CA directories, CSRs, and the outside tools that judge them.

The judges are real programs: the system ``openssl`` (Debian) and pkilint's
``lint_pkix_cert`` / ``lint_crl`` from the virtual environment.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from smtestbed.services.ca.access import Requester
from smtestbed.services.ca.authority import Authority, Issued, Policy

PASSPHRASE = b"test passphrase"
BASE_URL = "http://ca.test.example:8480"
BIN = Path(sys.executable).parent


@dataclass
class FakeTime:
    """A settable clock for the authority (certificates still carry real dates)."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.now += timedelta(seconds=seconds)


@dataclass
class EventLog:
    """An event sink that keeps what the authority reported."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, kind: str, body: dict[str, Any]) -> None:
        self.events.append((kind, body))

    def kinds(self) -> list[str]:
        """Return the event kinds in order."""
        return [kind for kind, _ in self.events]


def new_authority(
    folder: Path, *, family: str = "brainpool", clock: Callable[[], datetime] | None = None
) -> Authority:
    """Create a CA directory and return its authority with an event log attached."""
    now = clock or (lambda: datetime.now(UTC))
    authority = Authority.create(
        folder, PASSPHRASE, family=family, base_url=BASE_URL, policy=Policy(), now=now
    )
    authority.events = EventLog()
    return authority


def make_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    """Return a fresh EC key (brainpoolP256r1 unless told)."""
    return ec.generate_private_key(curve or ec.BrainpoolP256R1())


def make_csr(common_name: str, key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
    """Return a PEM CSR for ``common_name`` signed by ``key`` (a new one if None)."""
    key = key or make_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def issue_with_token(
    authority: Authority,
    profile: str,
    common_name: str,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> Issued:
    """Issue a certificate the way an enrolling device does: token first, then CSR."""
    token = authority.create_token(profile=profile, subject=common_name)
    return authority.issue(make_csr(common_name, key), profile, Requester(token=token))


def write_pem(path: Path, cert: x509.Certificate) -> Path:
    """Write ``cert`` as PEM to ``path``; return the path."""
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def openssl_verify(folder: Path, issuer: str, leaf: Path) -> subprocess.CompletedProcess[str]:
    """Run ``openssl verify -x509_strict -crl_check_all`` on ``leaf`` with the CA's files."""
    args = ["openssl", "verify", "-x509_strict", "-CAfile", str(folder / "certs/root.pem")]
    if issuer != "root":
        args += ["-untrusted", str(folder / f"certs/{issuer}.pem")]
        args += ["-CRLfile", str(folder / f"crl/{issuer}.crl.pem")]
    args += ["-CRLfile", str(folder / "crl/root.crl.pem"), "-crl_check_all", str(leaf)]
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)


def pkilint_cert(path: Path) -> subprocess.CompletedProcess[str]:
    """Run pkilint's PKIX certificate linter at severity ERROR and above."""
    return subprocess.run(
        [str(BIN / "lint_pkix_cert"), "lint", "-s", "ERROR", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def pkilint_crl(path: Path) -> subprocess.CompletedProcess[str]:
    """Run pkilint's PKIX CRL linter at severity ERROR and above."""
    return subprocess.run(
        [str(BIN / "lint_crl"), "lint", "-t", "CRL", "-p", "PKIX", "-s", "ERROR", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
