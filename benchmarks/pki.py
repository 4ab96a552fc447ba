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
- ``mutual TLS at gateway WAN``: full TLS 1.2 mutual handshakes (brainpool,
  CRLs checked) plus one request/reply at a real gateway process's WAN server;
  baseline: a bare blocking ``ssl`` server with the same certificates and CRLs
  (see :func:`handshake_cases`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import socket
import ssl
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from smtestbed.proto import wan
from smtestbed.services._runtime import process, tls
from smtestbed.services._runtime.testing import (
    endpoint_env,
    free_port,
    random_endpoints,
    service_process,
)
from smtestbed.services.ca.access import Requester
from smtestbed.services.ca.authority import Authority
from smtestbed.services.ca.state import CertRecord

PASSPHRASE = b"benchmark"
ADMIN = Requester(admin=True)
GATEWAY_NAME = "gw0.smgw.test.example"


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


def handshake_cases(ca_dir: Path, n: int = 300) -> list[Result]:
    """Mutual-TLS handshakes per second at the gateway's WAN server and at a bare ``ssl`` server.

    Certificates ``smgw-tls`` (server) and ``gwa-tls`` (client) are issued from
    ``ca_dir``; both servers check the client's chain against the same CRL files
    (root, emt) and the client checks the server's (root, smgw, with the entries
    :func:`crl_cases` left). Each of ``n`` sequential connections is a full TLS 1.2
    ECDHE-ECDSA handshake plus one framed request and its reply, so the server has
    finished checking the client certificate when the client counts it. The gateway
    runs as a real process (with a broker); its reply is the WAN protocol's answer
    to an unknown operation, after the GWA role check. The bare server is a blocking
    ``ssl`` loop in a child process that answers any frame with a fixed frame.
    """
    files = _tls_files(ca_dir)
    with tempfile.TemporaryDirectory() as tmp, _gateway_wan(files, Path(tmp)) as port:
        gateway = timed("mutual TLS at gateway WAN", n, lambda: _client_loop(files, port, n))
    with _bare_server(files) as port:
        bare = timed(
            "  bare ssl server loop",
            n,
            lambda: _client_loop(files, port, n),
            "mutual TLS at gateway WAN",
        )
    return [gateway, bare]


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsFiles:
    """PEM files of the handshake cases."""

    root: Path
    crls: tuple[Path, ...]
    server: tuple[Path, Path, Path]  # cert, key, chain
    client: tuple[Path, Path, Path]


def _issue_files(
    authority: Authority, folder: Path, profile: str, name: str
) -> tuple[Path, Path, Path]:
    key = ec.generate_private_key(ec.BrainpoolP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .sign(key, hashes.SHA256())
    )
    issued = authority.issue(csr.public_bytes(serialization.Encoding.PEM), profile, ADMIN)
    stem = folder / profile
    paths = (stem.with_suffix(".pem"), stem.with_suffix(".key"), stem.with_suffix(".chain.pem"))
    paths[0].write_bytes(issued.certificate.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    paths[2].write_bytes(issued.chain[0].public_bytes(serialization.Encoding.PEM))
    return paths


def _tls_files(ca_dir: Path) -> TlsFiles:
    authority = Authority.open(ca_dir, PASSPHRASE)
    try:
        server = _issue_files(authority, ca_dir, "smgw-tls", GATEWAY_NAME)
        client = _issue_files(authority, ca_dir, "gwa-tls", "gwa1.emt.test.example")
    finally:
        authority.close()
    crls = tuple(ca_dir / "crl" / f"{name}.crl.pem" for name in ("root", "smgw", "emt"))
    return TlsFiles(root=ca_dir / "certs" / "root.pem", crls=crls, server=server, client=client)


@contextlib.contextmanager
def _gateway_wan(files: TlsFiles, folder: Path) -> Iterator[int]:
    """Run a broker and a gateway process with its WAN server; yield the WAN port."""
    endpoints, port = random_endpoints(), free_port()
    cert, key, chain = files.server
    settings = {
        "data_dir": str(folder / "data"),
        "input_endpoint": f"tcp://127.0.0.1:{free_port()}",
        "wan_listen": f"127.0.0.1:{port}",
        "wan_cert": str(cert),
        "wan_key": str(key),
        "wan_chain": [str(chain)],
        "wan_trust": [str(files.root)],
        "wan_crls": [str(p) for p in files.crls if p.name != "smgw.crl.pem"],
    }
    config = folder / "gateway.toml"
    config.write_text(
        "[gateway]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
    )
    with (
        service_process("broker", endpoints, log_path=folder / "broker.log"),
        _spawned(
            process.service_argv("gateway", "--config", str(config)),
            endpoint_env(endpoints),
            folder / "gateway.log",
        ),
    ):
        yield port


@contextlib.contextmanager
def _spawned(argv: list[str], env: dict[str, str], log: Path) -> Iterator[None]:
    with log.open("ab") as out:
        proc = process.spawn(argv, env=env, ready_timeout=30.0, stdout=out, stderr=out)
        try:
            yield
        finally:
            process.stop(proc, timeout=5.0)


@contextlib.contextmanager
def _bare_server(files: TlsFiles) -> Iterator[int]:
    """Run a blocking ``ssl`` server with the gateway's certificate in a child process."""
    listener = socket.create_server(("127.0.0.1", 0))
    child = multiprocessing.get_context("fork").Process(
        target=_serve_bare, args=(files, listener), daemon=True
    )
    child.start()
    try:
        yield listener.getsockname()[1]
    finally:
        child.terminate()
        child.join(5.0)
        listener.close()


def _serve_bare(files: TlsFiles, listener: socket.socket) -> None:
    cert, key, chain = files.server
    ctx = tls.server_context(cert, key, [chain], [files.root], files.crls)
    reply = wan.encode({"id": 0, "ok": True, "result": None})
    while True:
        conn, _ = listener.accept()
        with contextlib.suppress(OSError), ctx.wrap_socket(conn, server_side=True) as tconn:
            _read_frame(tconn)
            tconn.sendall(reply)


def _read_frame(conn: ssl.SSLSocket) -> bytes:
    header = _read_exactly(conn, wan.HEADER)
    return _read_exactly(conn, wan.frame_length(header))


def _read_exactly(conn: ssl.SSLSocket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed early")
        data += chunk
    return data


def _client_loop(files: TlsFiles, port: int, n: int) -> None:
    cert, key, chain = files.client
    ctx = tls.client_context(cert, key, [chain], [files.root], files.crls)
    request = wan.encode({"id": 1, "op": "benchmark", "params": {}})
    for _ in range(n):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10.0)
        with ctx.wrap_socket(raw, server_hostname=GATEWAY_NAME) as conn:
            conn.sendall(request)
            wan.decode_reply(_read_frame(conn))


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
    parser.add_argument("--handshakes", type=int, default=300, help="TLS connections per case")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.crl_sizes.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ca"
        authority = Authority.create(folder, PASSPHRASE, base_url="http://ca.test.example:8480")
        try:
            results = issuance_cases(authority, args.certs)
            results += crl_cases(authority, sizes)
        finally:
            authority.close()
        results += handshake_cases(folder, args.handshakes)
    print_table(results)


if __name__ == "__main__":
    main()
