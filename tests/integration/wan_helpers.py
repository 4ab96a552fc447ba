"""Helpers of the WAN tests: a test SM-PKI on disk, openssl s_client, the GWA's TLS context.

Certificates come from the real CA code (an :class:`Authority` on a temporary
directory); the client side of the acceptance checks is the system ``openssl
s_client``.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from smtestbed.services._runtime import tls
from smtestbed.services.ca.access import Requester
from smtestbed.services.ca.authority import Authority, Issued, Policy

from tests.unit.ca.ca_helpers import make_csr, make_key

PASSPHRASE = b"smtb-test-ca"  # the CA service's default, so `smtb ca run` opens the directory
GATEWAY_NAME = "gw0.smgw.test.example"


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """One end entity's files: certificate, key and the CA that issued it."""

    cert: Path
    key: Path
    chain: Path
    serial: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Pki:
    """A test SM-PKI directory and the files of the parties of the WAN tests."""

    ca_dir: Path
    root: Path
    crls: tuple[Path, ...]
    gateway: Identity
    gwa: Identity
    emt: Identity
    revoked: Identity
    foreign: Identity

    def crl(self, name: str) -> Path:
        """Return the PEM CRL file of CA ``name``."""
        return self.ca_dir / "crl" / f"{name}.crl.pem"


def issue(authority: Authority, folder: Path, profile: str, name: str) -> Identity:
    """Issue a TLS certificate for ``name`` under ``profile``; write cert, key and chain."""
    key = make_key()
    token = authority.create_token(profile=profile, subject=name)
    issued: Issued = authority.issue(make_csr(name, key), profile, Requester(token=token))
    stem = folder / name.split(".")[0]
    cert, key_path, chain = (stem.with_suffix(s) for s in (".pem", ".key", ".chain.pem"))
    cert.write_bytes(issued.certificate.public_bytes(serialization.Encoding.PEM))
    chain.write_bytes(issued.chain[0].public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Identity(cert=cert, key=key_path, chain=chain, serial=issued.serial)


def make_pki(folder: Path, base_url: str) -> Pki:
    """Create a CA directory with gateway, GWA, EMT, a revoked GWA and a foreign-CA GWA."""
    ca_dir = folder / "ca"
    authority = Authority.create(ca_dir, PASSPHRASE, base_url=base_url, policy=Policy())
    foreign = Authority.create(folder / "foreign-ca", b"other", base_url=base_url)
    try:
        ids = {
            "gateway": issue(authority, folder, "smgw-tls", GATEWAY_NAME),
            "gwa": issue(authority, folder, "gwa-tls", "gwa1.emt.test.example"),
            "emt": issue(authority, folder, "emt-tls", "emt1.emt.test.example"),
            "revoked": issue(authority, folder, "gwa-tls", "gwa9.emt.test.example"),
            "foreign": issue(foreign, folder, "gwa-tls", "gwa7.emt.test.example"),
        }
        authority.revoke(ids["revoked"].serial, "keyCompromise", Requester(admin=True))
    finally:
        authority.close()
        foreign.close()
    crls = tuple(ca_dir / "crl" / f"{n}.crl.pem" for n in ("root", "smgw", "emt"))
    return Pki(ca_dir=ca_dir, root=ca_dir / "certs" / "root.pem", crls=crls, **ids)


def revoke(pki: Pki, identity: Identity) -> None:
    """Revoke ``identity`` at the CA (as its operator); the CA publishes the next CRL."""
    authority = Authority.open(pki.ca_dir, PASSPHRASE)
    try:
        authority.revoke(identity.serial, "keyCompromise", Requester(admin=True))
    finally:
        authority.close()


def client_context(pki: Pki, identity: Identity) -> ssl.SSLContext:
    """Return the TLS context a WAN party with ``identity`` connects to the gateway with."""
    return tls.client_context(identity.cert, identity.key, [identity.chain], [pki.root], pki.crls)


async def s_client(port: int, pki: Pki, identity: Identity | None) -> tuple[int, str]:
    """Run ``openssl s_client -tls1_2 -groups brainpoolP256r1`` against 127.0.0.1:``port``.

    Returns the exit code and the combined output. The request line sent after
    the handshake makes the gateway answer (a framing error) when it accepted.
    """
    args = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2"]
    args += ["-groups", "brainpoolP256r1", "-CAfile", str(pki.root), "-verify_return_error"]
    args += ["-ign_eof"]  # wait for the gateway to answer and close
    if identity is not None:
        args += ["-cert", str(identity.cert), "-key", str(identity.key)]
        args += ["-cert_chain", str(identity.chain)]
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(b"\x00\x00\x00\x02{}"), 20.0)
    return proc.returncode or 0, out.decode(errors="replace")
