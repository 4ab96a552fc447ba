"""Helpers of the wake-up and certificate-rotation tests: PKI extras, gateway TOML, bus checks.

Certificates come from the real CA code (:mod:`tests.integration.wan_helpers`);
the gateway runs as a process next to a broker and the CA service, and fetches
the CA's CRLs (root, smgw, emt) over HTTP at start.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smtestbed.proto import topics
from smtestbed.services._runtime.bus import Endpoints, Subscription
from smtestbed.services._runtime.client import BusClient
from smtestbed.services._runtime.testing import free_port, random_endpoints, service_process
from smtestbed.services.ca.access import Requester
from smtestbed.services.ca.authority import Authority

from tests.integration.gateway_helpers import configured_process, gateway_events, gw
from tests.integration.wan_helpers import PASSPHRASE, Identity, Pki, issue, make_pki

GWA_NAME = "gwa1.emt.test.example"
FOREIGN_PASSPHRASE = b"other"  # make_pki's foreign CA


@dataclass(frozen=True, slots=True, kw_only=True)
class Bed:
    """Broker, CA service and gateway; the PKI and where things listen."""

    root: Path
    endpoints: Endpoints
    pki: Pki
    ca_url: str
    wan_port: int
    wakeup_port: int
    gwa_port: int


def issue_extra(
    pki: Pki, folder: Path, profile: str, name: str, *, foreign: bool = False
) -> Identity:
    """Issue one more certificate from the test CA (or the foreign one) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    if foreign:
        authority = Authority.open(pki.ca_dir.parent / "foreign-ca", FOREIGN_PASSPHRASE)
    else:
        authority = Authority.open(pki.ca_dir, PASSPHRASE)
    try:
        return issue(authority, folder, profile, name)
    finally:
        authority.close()


def revoke_serial(pki: Pki, serial: int) -> None:
    """Revoke a certificate of the test CA (the CA publishes a new CRL)."""
    authority = Authority.open(pki.ca_dir, PASSPHRASE)
    try:
        authority.revoke(serial, "keyCompromise", Requester(admin=True))
    finally:
        authority.close()


def token(pki: Pki, profile: str, subject: str) -> str:
    """Return a one-time enrolment token of the test CA."""
    authority = Authority.open(pki.ca_dir, PASSPHRASE)
    try:
        return authority.create_token(profile=profile, subject=subject)
    finally:
        authority.close()


def toml_value(value: Any) -> str:
    """Return ``value`` as TOML (strings, numbers, lists, inline tables)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def gateway_toml(root: Path, pki: Pki, ca_url: str, **settings: Any) -> Path:
    """Write a gateway config with its WAN identity, CRL URLs and ``settings``."""
    gateway = pki.gateway
    lines = {
        "data_dir": str(root / "data"),
        "input_endpoint": f"tcp://127.0.0.1:{free_port()}",
        "synchronous": "NORMAL",
        "heartbeat_s": 0.2,
        "wan_cert": str(gateway.cert),
        "wan_key": str(gateway.key),
        "wan_chain": [str(gateway.chain)],
        "wan_trust": [str(pki.root)],
        "wan_crl_urls": [f"{ca_url}/crl/{name}.crl" for name in ("root", "smgw", "emt")],
        **settings,
    }
    path = root / "gateway.toml"
    body = "\n".join(f"{k} = {toml_value(v)}" for k, v in lines.items())
    path.write_text(f"[gateway]\n{body}\n")
    return path


@contextmanager
def running_bed(root: Path, prepare: Any = None, **settings: Any) -> Iterator[Bed]:
    """Make the PKI (``prepare(pki)`` may add to it first), start broker, CA and gateway."""
    endpoints = random_endpoints()
    ca_port, wan_port, wakeup_port, gwa_port = free_port(), free_port(), free_port(), free_port()
    ca_url = f"http://127.0.0.1:{ca_port}"
    pki = make_pki(root, ca_url)
    if prepare is not None:
        prepare(pki)
    gwa_url = {"gwa": GWA_NAME, "url": f"tls://127.0.0.1:{gwa_port}", "server_name": GWA_NAME}
    defaults: dict[str, Any] = {
        "wan_listen": f"127.0.0.1:{wan_port}",
        "wakeup_listen": f"127.0.0.1:{wakeup_port}",
        "gwa_endpoints": [gwa_url],
        "wakeup_cas": [str(pki.gwa.chain)],
    }
    config = gateway_toml(root, pki, ca_url, **{**defaults, **settings})
    ca_settings = {"data_dir": str(pki.ca_dir), "create": "false", "port": str(ca_port)}
    with (
        service_process("broker", endpoints, log_path=root / "broker.log"),
        service_process("ca", endpoints, settings=ca_settings, log_path=root / "ca.log"),
        configured_process("gateway", endpoints, config, root / "gw.log"),
    ):
        yield Bed(
            root=root,
            endpoints=endpoints,
            pki=pki,
            ca_url=ca_url,
            wan_port=wan_port,
            wakeup_port=wakeup_port,
            gwa_port=gwa_port,
        )


async def events(client: BusClient, timeout: float = 10.0) -> Subscription:
    """Subscribe to gateway.* and wan.*; return once the gateway's events reach us."""
    return await gateway_events(client, "wan.", timeout=timeout)


async def counters(client: BusClient) -> dict[str, int]:
    """Return the gateway service's counters."""
    result: dict[str, int] = await client.request(
        "gateway", topics.SERVICE_COUNTERS_GET, {}, timeout=5.0
    )
    return result


async def log_entries(client: BusClient, kind: str) -> list[dict[str, Any]]:
    """Return the fields of the system-log entries of ``kind``."""
    log = await gw(client, topics.GATEWAY_READ_LOG, {"limit": 100_000})
    return [e["fields"] for e in log["entries"] if e["kind"] == kind]
