"""Certificate rotation over the WAN as processes: the gateway's CSR, the CA issues, it installs.

A broker, the CA service (HTTP) and a gateway with a WAN endpoint run as
processes. The GWA client asks the gateway for a CSR, has the CA's HTTP API
issue it and pushes the certificate back; ``openssl s_client -tls1_2`` shows
which certificate the gateway's next handshakes present. Forged certificates
(foreign CA, another key, a signature certificate as TLS one) come from the CA
code and are refused, the old certificate staying in use.
"""

from __future__ import annotations

import asyncio
import re
import stat
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from smtestbed.proto import topics
from smtestbed.services._runtime.bus import Subscription
from smtestbed.services._runtime.client import BusClient
from smtestbed.services._runtime.testing import bus_client
from smtestbed.services.ca.access import Requester
from smtestbed.services.ca.authority import Authority
from smtestbed.services.wan.gwa import GwaClient, WanRequestError, rotate_certificate

from tests.integration.gateway_helpers import next_event
from tests.integration.wakeup_helpers import (
    FOREIGN_PASSPHRASE,
    Bed,
    events,
    issue_extra,
    log_entries,
    running_bed,
    token,
)
from tests.integration.wan_helpers import (
    GATEWAY_NAME,
    PASSPHRASE,
    Pki,
    client_context,
    s_client,
)
from tests.unit.ca.ca_helpers import make_csr, make_key

pytestmark = pytest.mark.timeout(120)
R = TypeVar("R")
_PEM = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def _sig_folder(root: Path) -> Path:
    return root / "sig-gw"


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    """Broker, CA service and a gateway with a WAN endpoint and a signature certificate."""
    root = tmp_path_factory.mktemp("rotation")

    def prepare(pki: Pki) -> None:
        issue_extra(pki, _sig_folder(root), "smgw-sig", GATEWAY_NAME)

    sig = _sig_folder(root) / "gw0"
    settings = {
        "wakeup_listen": "",
        "sig_cert": str(sig.with_suffix(".pem")),
        "sig_key": str(sig.with_suffix(".key")),
    }
    with running_bed(root, prepare, **settings) as running:
        yield running


def run(bed: Bed, scenario: Callable[[BusClient, Subscription, GwaClient], Awaitable[R]]) -> R:
    """Run ``scenario`` with a bus client, a subscription and a GWA session to the gateway."""

    async def main() -> R:
        async with bus_client(bed.endpoints) as client:
            sub = await events(client)
            context = client_context(bed.pki, bed.pki.gwa)
            async with GwaClient.connect("127.0.0.1", bed.wan_port, context, GATEWAY_NAME) as gwa:
                return await scenario(client, sub, gwa)

    return asyncio.run(main())


async def presented_serial(bed: Bed) -> int:
    """Return the serial of the certificate a new ``openssl s_client -tls1_2`` handshake sees."""
    _, out = await s_client(bed.wan_port, bed.pki, bed.pki.gwa)
    assert "Verify return code: 0 (ok)" in out, out
    match = _PEM.search(out)
    assert match is not None, out
    return x509.load_pem_x509_certificate(match.group(0).encode()).serial_number


def test_rotated_tls_certificate_serves_the_next_handshakes(bed: Bed) -> None:
    """rotate tls: the CA issues the gateway's CSR; s_client then sees the new serial."""

    async def scenario(client: BusClient, sub: Subscription, gwa: GwaClient) -> None:
        before = await presented_serial(bed)
        ticket = token(bed.pki, "smgw-tls", GATEWAY_NAME)
        result = await rotate_certificate(gwa, "tls", ca_url=bed.ca_url, token=ticket)
        assert int(result["previous_serial"], 16) == before
        new = int(result["serial"], 16)
        assert new != before
        event = await next_event(sub, topics.GATEWAY_CERT_ROTATED, 10.0, which="tls")
        assert event.body["serial"] == result["serial"]
        assert await presented_serial(bed) == new
        # the session opened before the rotation still works, and so does a new one
        assert (await gwa.call("status"))["gateway"] == "gw0"
        rotated = await log_entries(client, "cert_rotated")
        assert rotated[-1]["serial"] == result["serial"]

    run(bed, scenario)


def test_rotated_signature_certificate_is_installed_with_the_previous_kept(bed: Bed) -> None:
    """rotate sig: a new smgw-sig certificate becomes current; files swapped, key mode 0600."""

    async def scenario(client: BusClient, sub: Subscription, gwa: GwaClient) -> dict[str, Any]:
        ticket = token(bed.pki, "smgw-sig", GATEWAY_NAME)
        first = await rotate_certificate(gwa, "sig", ca_url=bed.ca_url, token=ticket)
        ticket = token(bed.pki, "smgw-sig", GATEWAY_NAME)
        second = await rotate_certificate(gwa, "sig", ca_url=bed.ca_url, token=ticket)
        assert second["previous_serial"] == first["serial"]
        return second

    second = run(bed, scenario)
    certs = bed.root / "data" / "gw0" / "certs"
    current = (certs / "sig").resolve()
    assert current.name == f"sig-{second['serial']}"
    assert (certs / "sig.previous").resolve().name == f"sig-{second['previous_serial']}"
    cert = x509.load_pem_x509_certificate((current / "cert.pem").read_bytes())
    assert f"{cert.serial_number:x}" == second["serial"]
    assert stat.S_IMODE((current / "key.pem").stat().st_mode) == 0o600
    assert not (certs / "pending-sig.key").exists()


def _issue(folder: Path, passphrase: bytes, csr: bytes, profile: str) -> tuple[str, list[str]]:
    authority = Authority.open(folder, passphrase)
    try:
        issued = authority.issue(csr, profile, Requester(admin=True))
    finally:
        authority.close()
    pem = serialization.Encoding.PEM
    return (
        issued.certificate.public_bytes(pem).decode(),
        [c.public_bytes(pem).decode() for c in issued.chain],
    )


def _forged(pki: Pki, case: str, csr: bytes) -> tuple[str, list[str]]:
    if case == "foreign_ca":
        return _issue(pki.ca_dir.parent / "foreign-ca", FOREIGN_PASSPHRASE, csr, "smgw-tls")
    if case == "wrong_key":
        return _issue(pki.ca_dir, PASSPHRASE, make_csr(GATEWAY_NAME, make_key()), "smgw-tls")
    return _issue(pki.ca_dir, PASSPHRASE, csr, "smgw-sig")  # wrong usage for TLS


@pytest.mark.parametrize(
    ("case", "reason"),
    [("foreign_ca", "untrusted"), ("wrong_key", "wrong_key"), ("wrong_usage", "wrong_usage")],
)
def test_forged_tls_certificate_is_refused_and_the_old_one_stays(
    bed: Bed, case: str, reason: str
) -> None:
    """A foreign CA's, another key's or a sig certificate: refused; s_client sees the old serial."""

    async def scenario(client: BusClient, sub: Subscription, gwa: GwaClient) -> None:
        before = await presented_serial(bed)
        request = await gwa.call("cert_request", {"which": "tls"})
        cert, chain = _forged(bed.pki, case, request["csr"].encode())
        with pytest.raises(WanRequestError) as refused:
            await gwa.call("cert_install", {"which": "tls", "certificate": cert, "chain": chain})
        assert refused.value.field == "certificate"
        assert f"({reason})" in str(refused.value)
        event = await next_event(sub, topics.GATEWAY_CERT_REFUSED, 10.0, reason=reason)
        assert event.body["which"] == "tls"
        assert await presented_serial(bed) == before
        assert any(e["reason"] == reason for e in await log_entries(client, "cert_refused"))

    run(bed, scenario)


def test_install_without_a_request_and_bad_which_are_refused(bed: Bed) -> None:
    """cert_install with no pending key names 'which'; an unknown certificate kind too."""

    async def scenario(client: BusClient, sub: Subscription, gwa: GwaClient) -> None:
        cert = bed.pki.gateway.cert.read_text()
        with pytest.raises(WanRequestError) as no_request:
            await gwa.call("cert_install", {"which": "sig", "certificate": cert, "chain": []})
        assert no_request.value.field == "which"
        assert "(no_request)" in str(no_request.value)
        with pytest.raises(WanRequestError) as bad:
            await gwa.call("cert_request", {"which": "enc"})
        assert bad.value.field == "which"
        with pytest.raises(WanRequestError) as garbage:
            await gwa.call("cert_install", {"which": "tls", "certificate": "x", "chain": []})
        assert garbage.value.field == "certificate"

    run(bed, scenario)
