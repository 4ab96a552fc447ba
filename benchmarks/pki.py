"""PKI benchmark: certificate issuance and CRL generation vs bare ``cryptography`` calls.

Run: ``.venv/bin/python benchmarks/pki.py [--certs N] [--crl-sizes 10000,100000]``.

Cases, all in one run on one brainpool CA directory (sub-CA key brainpoolP256r1):

- ``issue``: :meth:`Authority.issue` from a CSR (parse, signature and profile
  checks, certificate signing, SQLite insert in its own transaction), CSRs
  made beforehand. Baselines: ``CertificateBuilder.sign`` of the same kind of
  certificate with the same key, and the bare ECDSA ``key.sign`` of 32 bytes.
- ``crl n=...``: :meth:`Authority.publish_crl` with n revoked entries (SQLite
  read, build, sign, store, PEM copy); baseline: ``CertificateRevocationListBuilder``
  with the same entries (given to its constructor: ``add_revoked_certificate``
  copies the list on each call, quadratic) and key.
- mutual-TLS handshakes: :func:`handshake_cases` is the hook; it returns no
  rows until the gateway's WAN interface exists (see its docstring).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from smtestbed.services.ca.access import Requester
from smtestbed.services.ca.authority import Authority
from smtestbed.services.ca.state import CertRecord

PASSPHRASE = b"benchmark"
ADMIN = Requester(admin=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """One measured case: ``count`` operations in ``seconds``."""

    case: str
    count: int
    seconds: float
    baseline: str = ""

    @property
    def rate(self) -> float:
        """Operations per second."""
        return self.count / self.seconds if self.seconds > 0 else 0.0


def timed(case: str, count: int, work: Callable[[], object], baseline: str = "") -> Result:
    """Run ``work`` once and time it."""
    start = time.perf_counter()
    work()
    return Result(case=case, count=count, seconds=time.perf_counter() - start, baseline=baseline)


def make_csrs(n: int) -> list[bytes]:
    """Return ``n`` PEM CSRs on brainpoolP256r1 (made before any timing)."""
    out = []
    for i in range(n):
        key = ec.generate_private_key(ec.BrainpoolP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"gw{i:05d}.smgw.test.example")])
        csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
        out.append(csr.public_bytes(serialization.Encoding.PEM))
    return out


def issuance_cases(authority: Authority, n: int) -> list[Result]:
    """Issue ``n`` certificates through the authority and through bare builder calls."""
    csrs = make_csrs(n)
    issuer = authority.issuers["smgw"]
    keys = [x509.load_pem_x509_csr(c).public_key() for c in csrs]
    now = datetime.now(UTC)

    def bare_certs() -> None:
        for i, public in enumerate(keys):
            assert isinstance(public, ec.EllipticCurvePublicKey)
            x509.CertificateBuilder().subject_name(issuer.certificate.subject).issuer_name(
                issuer.certificate.subject
            ).public_key(public).serial_number(i + 1).not_valid_before(now).not_valid_after(
                now + timedelta(days=730)
            ).add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True).sign(
                issuer.key, hashes.SHA256()
            )

    def bare_signatures() -> None:
        for _ in range(n):
            issuer.key.sign(b"\x00" * 32, ec.ECDSA(hashes.SHA256()))

    return [
        timed(
            "issue (Authority.issue)",
            n,
            lambda: [authority.issue(c, "smgw-tls", ADMIN) for c in csrs],
        ),
        timed("  CertificateBuilder.sign", n, bare_certs, baseline="issue"),
        timed("  ECDSA key.sign", n, bare_signatures, baseline="issue"),
    ]


def fill_revoked(authority: Authority, n: int, start: int) -> None:
    """Insert ``n`` revoked smgw records directly (what n revocations would leave)."""
    when = datetime.now(UTC).replace(microsecond=0)
    records = (
        CertRecord(
            serial=start + i,
            issuer="smgw",
            subject=f"gw{i}.smgw.test.example",
            profile="smgw-tls",
            not_before=when,
            not_after=when + timedelta(days=730),
            status="revoked",
            revoked_at=when,
            reason="keyCompromise" if i % 2 else "superseded",
            der=b"\x00",
        )
        for i in range(n)
    )
    with authority.store.transaction():
        authority.store.add_certificates(records)


def crl_cases(authority: Authority, sizes: list[int]) -> list[Result]:
    """Time CRL publication at each size (cumulative fill) against the bare builder."""
    results, filled = [], 0
    issuer = authority.issuers["smgw"]
    for size in sizes:
        fill_revoked(authority, size - filled, start=1 << 62 | filled)
        filled = size
        entries = authority.store.revoked("smgw")

        def bare(entries: list[tuple[int, datetime, str]] = entries) -> None:
            reason = x509.CRLReason(x509.ReasonFlags.superseded)
            revoked = [
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(when)
                .add_extension(reason, critical=False)
                .build()
                for serial, when, _ in entries
            ]
            now = datetime.now(UTC)
            x509.CertificateRevocationListBuilder(revoked_certificates=revoked).issuer_name(
                issuer.certificate.subject
            ).last_update(now).next_update(now + timedelta(days=1)).sign(
                issuer.key, hashes.SHA256()
            )

        results.append(
            timed(f"crl n={size} (publish_crl)", 1, lambda: authority.publish_crl("smgw"))
        )
        results.append(
            timed("  CertificateRevocationListBuilder", 1, bare, baseline=f"crl n={size}")
        )
    return results


def handshake_cases(ca_dir: Path) -> list[Result]:
    """Hook for mutual-TLS handshakes per second at the gateway (not measured yet).

    To add: issue ``smgw-tls`` and ``gwa-tls`` certificates from ``ca_dir``, run
    the gateway's WAN listener, count completed TLS 1.2 ECDHE-ECDSA mutual
    handshakes with CRL checks per second, and next to it a bare ``ssl``
    server/client loop with the same certificates and CRLs. Return one
    :class:`Result` per case; the table prints them with the others.
    """
    return []


def print_table(results: list[Result]) -> None:
    """Print the cases, their rates, and each baseline's speed relative to its case."""
    per_op = {r.case.split(" (")[0]: r.seconds / r.count for r in results if not r.baseline}
    print(f"{'case':<40} {'ops':>7} {'seconds':>9} {'ops/s':>10} {'ms/op':>9} {'case/bare':>10}")
    for r in results:
        ms = 1000 * r.seconds / r.count
        ratio = f"{per_op[r.baseline] / (r.seconds / r.count):>10.1f}" if r.baseline else ""
        print(f"{r.case:<40} {r.count:>7} {r.seconds:>9.3f} {r.rate:>10.1f} {ms:>9.3f} {ratio}")


def main() -> None:
    """Parse arguments, run every case in one CA directory, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certs", type=int, default=1000, help="certificates to issue")
    parser.add_argument("--crl-sizes", default="10000,100000", help="revoked entries, comma list")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.crl_sizes.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ca"
        authority = Authority.create(folder, PASSPHRASE, base_url="http://ca.test.example:8480")
        try:
            results = issuance_cases(authority, args.certs)
            results += crl_cases(authority, sizes)
            results += handshake_cases(folder)
        finally:
            authority.close()
    print_table(results)


if __name__ == "__main__":
    main()
