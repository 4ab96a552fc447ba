"""Helpers of the TAF delivery tests: a test SM-PKI on disk, EMT and gateway processes.

Certificates come from a real :class:`Authority` made in the test's folder; keys and
certificates are PEM files the services read. The EMT runs as a real process
(``python -m smtestbed.services.wan.emt``), the gateway from a TOML file, since its
``emt_endpoints`` are tables.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from smtestbed.services._runtime import process
from smtestbed.services._runtime.bus import Endpoints
from smtestbed.services._runtime.client import BusClient
from smtestbed.services._runtime.testing import endpoint_settings, free_port, service_process
from smtestbed.services.ca.access import Requester
from smtestbed.services.ca.authority import Authority
from smtestbed.services.gateway.schema import Taf
from smtestbed.services.gateway.store import Store

from tests.integration.gateway_helpers import configured_process
from tests.unit.ca.ca_helpers import issue_with_token, make_key, new_authority

GATEWAY_CN = "gw0.smgw.test.example"
EMT_CN = "emt1.emt.test.example"
EMT = "emt-1"


@dataclass(frozen=True, slots=True)
class Credentials:
    """A certificate file, its key file and its serial number."""

    cert: Path
    key: Path
    serial: int


@dataclass
class TestPki:
    """A test SM-PKI in ``folder``: the CA directory and issued credentials as files."""

    __test__ = False
    authority: Authority
    folder: Path

    @property
    def ca(self) -> Path:
        """The CA directory (``certs/``, ``crl/``)."""
        return self.authority.store.folder

    @property
    def root(self) -> Path:
        """The root certificate file."""
        return self.ca / "certs/root.pem"

    def sub_ca(self, name: str) -> Path:
        """The certificate file of sub-CA ``name`` (``smgw``, ``emt``)."""
        return self.ca / f"certs/{name}.pem"

    @property
    def crls(self) -> list[Path]:
        """The CRL files of the root and every sub-CA."""
        return [self.ca / f"crl/{n}.crl.pem" for n in ("root", "smgw", "emt")]

    def issue(self, profile: str, common_name: str) -> Credentials:
        """Issue a certificate of ``profile`` and write it and a new key as PEM files."""
        key = make_key()
        issued = issue_with_token(self.authority, profile, common_name, key)
        stem = self.folder / profile
        stem.parent.mkdir(parents=True, exist_ok=True)
        cert = stem.with_suffix(".pem")
        cert.write_bytes(issued.certificate.public_bytes(serialization.Encoding.PEM))
        key_path = stem.with_suffix(".key")
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        key_path.write_bytes(pem)
        key_path.chmod(0o600)
        return Credentials(cert=cert, key=key_path, serial=issued.serial)

    def revoke(self, serial: int) -> None:
        """Revoke a certificate; the issuer's CRL file is rewritten."""
        self.authority.revoke(serial, "keyCompromise", Requester(admin=True))


def make_pki(folder: Path) -> TestPki:
    """Create a brainpool test SM-PKI under ``folder``."""
    return TestPki(authority=new_authority(folder / "ca"), folder=folder / "issued")


@dataclass(frozen=True, slots=True)
class EmtSide:
    """The EMT's credentials and where it listens."""

    tls: Credentials
    port: int
    data_dir: Path


def emt_side(pki: TestPki, folder: Path) -> EmtSide:
    """Issue the EMT's TLS certificate and pick its port."""
    return EmtSide(tls=pki.issue("emt-tls", EMT_CN), port=free_port(), data_dir=folder / "emt")


def emt_settings(pki: TestPki, emt: EmtSide) -> dict[str, Any]:
    """Return the EMT's settings (``--set`` values)."""
    return {
        "name": EMT,
        "listen": f"127.0.0.1:{emt.port}",
        "data_dir": str(emt.data_dir),
        "cert": str(emt.tls.cert),
        "key": str(emt.tls.key),
        "chain": str(pki.sub_ca("emt")),
        "trust": str(pki.root),
        "crls": ",".join(str(p) for p in pki.crls),
        "heartbeat_s": 0.2,
    }


@contextlib.contextmanager
def emt_process(pki: TestPki, emt: EmtSide, endpoints: Endpoints, log: Path) -> Iterator[None]:
    """Run the EMT service as a process until the block ends."""
    with service_process("wan.emt", endpoints, settings=emt_settings(pki, emt), log_path=log):
        yield


@dataclass(frozen=True, slots=True)
class GatewaySide:
    """The gateway's TLS and signature credentials."""

    tls: Credentials
    sig: Credentials


def gateway_side(pki: TestPki) -> GatewaySide:
    """Issue the gateway's TLS and signature certificates (same CN)."""
    return GatewaySide(tls=pki.issue("smgw-tls", GATEWAY_CN), sig=pki.issue("smgw-sig", GATEWAY_CN))


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def delivery_lines(pki: TestPki, gw: GatewaySide, emt: EmtSide) -> list[str]:
    """Return the ``[gateway]`` TOML lines of the delivery to ``emt``."""
    endpoint = {"emt": EMT, "url": f"tls://127.0.0.1:{emt.port}", "server_name": EMT_CN}
    settings: dict[str, Any] = {
        "emt_endpoints": [endpoint],
        "sig_cert": str(gw.sig.cert),
        "sig_key": str(gw.sig.key),
        "sig_chain": [str(pki.sub_ca("smgw"))],
        "wan_cert": str(gw.tls.cert),
        "wan_key": str(gw.tls.key),
        "wan_chain": [str(pki.sub_ca("smgw"))],
        "wan_trust": [str(pki.root)],
        "wan_crls": [str(p) for p in pki.crls],
        "emt_retry_s": 0.2,
        "emt_retry_max_s": 1.0,
        "emt_poll_s": 0.2,
    }
    return [f"{k} = {_toml(v)}" for k, v in settings.items()]


def gateway_config(
    folder: Path, endpoints: Endpoints, data_dir: Path, lines: Sequence[str]
) -> Path:
    """Write a TOML file for a gateway on ``data_dir`` with ``lines`` in its table."""
    common = [f"{k} = {json.dumps(v)}" for k, v in endpoint_settings(endpoints).items()]
    gateway = [
        f'data_dir = "{data_dir}"',
        f'input_endpoint = "tcp://127.0.0.1:{free_port()}"',
        'synchronous = "NORMAL"',
        'clock_mode = "stepped"',
        "clock_start = 1700000000.0",
    ]
    text = ["[common]", *common, "heartbeat_s = 0.2", "", "[gateway]", *gateway, *lines]
    path = folder / "gateway.toml"
    path.write_text("\n".join(text) + "\n")
    return path


@contextlib.contextmanager
def gateway_run(endpoints: Endpoints, config: Path, log: Path) -> Iterator[process.Popen]:
    """Run the gateway from ``config`` until the block ends."""
    with configured_process("gateway", endpoints, config, log) as proc:
        yield proc


def queue_records(store_path: Path, count: int, *, first_meter: int = 0) -> list[dict[str, Any]]:
    """Queue ``count`` TAF7-like records for the EMT in a gateway store; return them."""
    store_path.parent.mkdir(parents=True, exist_ok=True)
    store = Store(store_path, synchronous="NORMAL")
    try:
        for k in range(count):
            meter = f"{first_meter + k:08d}"
            payload = {"taf": "taf7", "meter": meter, "values": [{"delta": 0.1 * k, "n": k}]}
            store.enqueue(EMT, Taf.TAF7, meter, payload, created=1_700_000_000.0 + k)
        return [_record_map(r) for r in store.pending(EMT, 100_000)]
    finally:
        store.close()


def _record_map(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "taf": str(r.taf),
        "meter": r.meter,
        "payload": r.payload,
        "created": r.created,
    }


def pending_in(store_path: Path) -> list[dict[str, Any]]:
    """Return the EMT's undelivered records in a gateway store (the gateway must be stopped)."""
    store = Store(store_path, synchronous="NORMAL")
    try:
        return [_record_map(r) for r in store.pending(EMT, 100_000)]
    finally:
        store.close()


async def emt_records(client: BusClient, **params: Any) -> list[dict[str, Any]]:
    """Ask the EMT for its stored records."""
    result: list[dict[str, Any]] = await client.request(
        "emt", "emt.records", {"limit": 100_000, **params}, timeout=10.0
    )
    return result


def as_delivered(stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return EMT records in the gateway's queue shape (id, taf, meter, payload, created)."""
    fields = ("id", "taf", "meter", "payload", "created")
    return [{k: r[k] for k in fields} for r in stored]
