"""Key material a testbed makes before its services start.

Every run folder holds ``keys/``: the gateway manufacturer's firmware signing key
(``manufacturer.pem``, public half ``manufacturer.pub.pem``, which the gateway is
configured with as ``manufacturer_key``) and a second key of no standing
(``foreign.pem``) that signs what the manufacturer did not. Both are
brainpoolP256r1, PKCS#8 PEM without encryption (``smtb gateway make-bundle --key``
reads them).

With a PKI (``state.pki.enabled``) the run folder also holds the CA directory
``ca/`` made by ``smtb ca init`` and, in ``pki/``, one TLS identity per certificate
the state asks for: ``<name>.pem`` issued by ``smtb ca issue`` from a CSR made here,
``<name>.key`` and ``<name>.chain.pem`` (the issuing sub-CA). The CA service then
runs on that directory, so a revocation through its HTTP API reaches the CRLs the
parties fetch.
"""

from __future__ import annotations

import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from smtestbed.services._runtime import tls
from smtestbed.services._runtime.errors import ConfigError, RequestError
from smtestbed.services._runtime.testing import free_port

KEYS = "keys"
SIGNERS = ("manufacturer", "foreign")
CA_DIR = "ca"
PKI = "pki"
CA_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Role:
    """What one certificate of the state is: CA profile, subject name, issuing sub-CA."""

    profile: str
    name: str
    issuer: str


ROLES = {
    "gateway": Role(profile="smgw-tls", name="gw0.smgw.test.example", issuer="smgw"),
    "gwa": Role(profile="gwa-tls", name="gwa1.emt.test.example", issuer="emt"),
    "emt": Role(profile="emt-tls", name="emt1.emt.test.example", issuer="emt"),
    "timeservice": Role(profile="gwa-tls", name="time1.emt.test.example", issuer="emt"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """One party's TLS files in the run folder."""

    cert: Path
    key: Path
    chain: Path

    @classmethod
    def of(cls, run_dir: Path, name: str) -> Identity:
        """Return the files of certificate ``name`` (``gateway``, ``gwa``, ...)."""
        stem = run_dir / PKI / name
        return cls(
            cert=stem.with_suffix(".pem"),
            key=stem.with_suffix(".key"),
            chain=stem.with_suffix(".chain.pem"),
        )


def root_certificate(run_dir: Path) -> Path:
    """Return the SM-PKI root certificate (PEM) of a run folder's CA."""
    return run_dir / CA_DIR / "certs" / "root.pem"


def crl_files(run_dir: Path) -> list[Path]:
    """Return the CRL files (PEM) the CA keeps current in its directory."""
    return [run_dir / CA_DIR / "crl" / f"{ca}.crl.pem" for ca in ("root", "smgw", "emt")]


def client_context(run_dir: Path, name: str, *, field: str) -> ssl.SSLContext:
    """Return a mutual-TLS client context with certificate ``name`` of the run folder,
    trusting its SM-PKI root and checking the CA's CRLs (no host name: peers are named
    by their certificates' roles).

    Raises:
        RequestError: the state made no such certificate (``field`` names the parameter
            that asked for it).
    """
    files = Identity.of(run_dir, name)
    if not files.cert.is_file():
        raise RequestError(f"no {name} certificate (state.pki.certificates)", field=field)
    return tls.client_context(
        files.cert,
        files.key,
        [files.chain],
        [root_certificate(run_dir)],
        crl_files(run_dir),
        check_hostname=False,
    )


def signing_key(run_dir: Path, signer: str) -> Path:
    """Return the private key file of ``signer`` (one of :data:`SIGNERS`) in a run folder."""
    return run_dir / KEYS / f"{signer}.pem"


def public_key(run_dir: Path, signer: str) -> Path:
    """Return the public key file of ``signer`` in a run folder."""
    return run_dir / KEYS / f"{signer}.pub.pem"


def write_signing_keys(run_dir: Path) -> Path:
    """Create the signers' key pairs in ``run_dir/keys``; return the manufacturer's public."""
    (run_dir / KEYS).mkdir(parents=True, exist_ok=True)
    for signer in SIGNERS:
        key = ec.generate_private_key(ec.BrainpoolP256R1())
        write_private_key(signing_key(run_dir, signer), key)
        public_key(run_dir, signer).write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return public_key(run_dir, "manufacturer")


def write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write ``key`` as unencrypted PKCS#8 PEM, readable by its owner only."""
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def make_pki(run_dir: Path, smtb: str, ca_url: str, certificates: tuple[str, ...]) -> None:
    """Create the CA directory and issue each certificate of the state (see the module doc).

    Raises:
        ConfigError: ``smtb ca`` failed (its message included).
    """
    ca_dir = run_dir / CA_DIR
    _ca(smtb, "init", "--dir", str(ca_dir), "--url", ca_url)
    (run_dir / PKI).mkdir(exist_ok=True)
    for name in certificates:
        role, files = ROLES[name], Identity.of(run_dir, name)
        key = ec.generate_private_key(ec.BrainpoolP256R1())
        write_private_key(files.key, key)
        csr = files.cert.with_suffix(".csr")
        csr.write_bytes(_csr(role.name, key))
        _ca(
            smtb,
            "issue",
            "--dir",
            str(ca_dir),
            "--csr",
            str(csr),
            "--profile",
            role.profile,
            "--out",
            str(files.cert),
        )
        files.chain.write_bytes((ca_dir / "certs" / f"{role.issuer}.pem").read_bytes())


def _csr(common_name: str, key: ec.EllipticCurvePrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    request = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM)


def _ca(smtb: str, *args: str) -> None:
    done = subprocess.run(
        [smtb, "ca", *args], capture_output=True, text=True, timeout=CA_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise ConfigError(f"smtb ca {args[0]} failed: {done.stderr.strip()}", key="state.pki")


def pki_settings(
    run_dir: Path, ca_url: str, certificates: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    """Return the service settings the state's certificates give (before its own overrides).

    ``gateway``: the gateway's WAN endpoint on a free port with that identity, the
    root as trust anchor and the CRLs of the root and both sub-CAs fetched from the CA
    (EMT's for its peers, SMGW's to check a certificate it is rotated to).
    ``timeservice``: a time service with that identity the gateway syncs with.
    """
    out: dict[str, dict[str, Any]] = {}
    root, crls = str(root_certificate(run_dir)), [str(p) for p in crl_files(run_dir)]
    if "gateway" in certificates:
        gw = Identity.of(run_dir, "gateway")
        out["gateway"] = {
            "wan_listen": f"127.0.0.1:{free_port()}",
            "wan_cert": str(gw.cert),
            "wan_key": str(gw.key),
            "wan_chain": [str(gw.chain)],
            "wan_trust": [root],
            # emt: the peers' CA; smgw: its own, so a rotated certificate can be checked.
            "wan_crl_urls": [f"{ca_url}/crl/{ca}.crl" for ca in ("root", "smgw", "emt")],
        }
    if "timeservice" in certificates:
        ts, port = Identity.of(run_dir, "timeservice"), free_port()
        out["timeservice"] = {
            "listen": f"127.0.0.1:{port}",
            "cert": str(ts.cert),
            "key": str(ts.key),
            "chain": [str(ts.chain)],
            "trust": [root],
            "crls": crls,
        }
        # The time sync checks the time service's chain against CRL files only: the ones
        # the gateway is provisioned with, copied now (the CA keeps its own up to date).
        provisioned = []
        for crl in crl_files(run_dir):
            provisioned.append(run_dir / PKI / f"provisioned-{crl.name}")
            provisioned[-1].write_bytes(crl.read_bytes())
        out.setdefault("gateway", {}).update(
            time_service=f"tls://127.0.0.1:{port}",
            time_server_name=ROLES["timeservice"].name,
            wan_crls=[str(p) for p in provisioned],
        )
    return out
