"""The CA service's HTTP API on a real aiohttp server, with events on a real bus."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from smtestbed.proto import topics
from smtestbed.services._runtime import process
from smtestbed.services._runtime.bus import Endpoints, Event
from smtestbed.services._runtime.config import load_config
from smtestbed.services._runtime.testing import (
    bus_client,
    endpoint_settings,
    free_port,
    service_in_process,
    wait_for_event,
)
from smtestbed.services.ca.authority import Authority
from smtestbed.services.ca.config import CaConfig
from smtestbed.services.ca.service import CaService

from tests.unit.ca.ca_helpers import BASE_URL, PASSPHRASE, make_csr

ADMIN = "admin secret for tests"
GATEWAY = "gw0042.smgw.test.example"


def _prepare(folder: Path, tokens: list[tuple[str, str, str]]) -> list[str]:
    """Create a CA directory and the tokens (purpose, profile, subject) a test needs."""
    authority = Authority.create(folder, PASSPHRASE, base_url=BASE_URL)
    made = [authority.create_token(purpose=p, profile=pr, subject=s) for p, pr, s in tokens]
    authority.close()
    return made


@contextlib.asynccontextmanager
async def _ca(endpoints: Endpoints, folder: Path) -> AsyncIterator[str]:
    """Run the CA service on ``folder``; yield its base URL."""
    port = free_port()
    settings = {
        **endpoint_settings(endpoints),
        "data_dir": str(folder),
        "create": "false",
        "port": str(port),
        "admin_secret": ADMIN,
    }
    env = {"SMTB_CA_PASSPHRASE": PASSPHRASE.decode()}
    config = load_config(CaConfig, "ca", env=env, overrides=settings)
    async with service_in_process(CaService(config)):
        yield f"http://127.0.0.1:{port}"


def _of_kind(kind: str) -> Callable[[Event], bool]:
    return lambda event: event.kind == kind


async def _post(session: aiohttp.ClientSession, url: str, body: Any, **kw: Any) -> tuple[int, Any]:
    async with session.post(url, json=body, **kw) as resp:
        return resp.status, await resp.json()


def test_issue_fetch_revoke_and_see_it_in_the_next_crl(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """POST /issue, GET /ca and /crl, POST /revoke: the serial is on CRL number 2; events follow."""
    (token,) = _prepare(tmp_path / "ca", [("issue", "smgw-tls", GATEWAY)])

    async def scenario() -> tuple[dict[str, Any], bytes, bytes, list[Event]]:
        async with bus_client(endpoints) as client, _ca(endpoints, tmp_path / "ca") as url:
            sub = client.subscribe(["ca."])
            await sub.wait_connected()
            async with aiohttp.ClientSession() as http:
                status, issued = await _post(
                    http,
                    f"{url}/issue",
                    {"csr": make_csr(GATEWAY).decode(), "profile": "smgw-tls", "token": token},
                )
                assert status == 201, issued
                async with http.get(f"{url}/ca/smgw.crt") as resp:
                    assert resp.content_type == "application/pkix-cert"
                    sub_ca = await resp.read()
                status, revoked = await _post(
                    http,
                    f"{url}/revoke",
                    {"serial": issued["serial"], "reason": "keyCompromise"},
                    headers={"Authorization": f"Bearer {ADMIN}"},
                )
                assert (status, revoked["status"]) == (200, "revoked")
                async with http.get(f"{url}/crl/smgw.crl") as resp:
                    assert resp.content_type == "application/pkix-crl"
                    crl = await resp.read()
            events = [
                await wait_for_event(sub, _of_kind(k))
                for k in (topics.CA_CERT_ISSUED, topics.CA_CERT_REVOKED, topics.CA_CRL_PUBLISHED)
            ]
        return issued, sub_ca, crl, events

    issued, sub_ca, crl_der, events = asyncio.run(scenario())
    cert = x509.load_pem_x509_certificate(issued["certificate"].encode())
    cert.verify_directly_issued_by(x509.load_der_x509_certificate(sub_ca))
    assert issued["chain"][0].encode() == x509.load_der_x509_certificate(sub_ca).public_bytes(
        serialization.Encoding.PEM
    )
    crl = x509.load_der_x509_crl(crl_der)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    assert [e.body["serial"] for e in events[:2]] == [issued["serial"]] * 2
    assert events[2].body["ca"] == "smgw"


def test_issue_accepts_a_der_pkcs10_body(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """application/pkcs10 with profile and token in the query string issues the same way."""
    (token,) = _prepare(tmp_path / "ca", [("issue", "emt-enc", "emt.test.example")])
    der = x509.load_pem_x509_csr(make_csr("emt.test.example")).public_bytes(
        serialization.Encoding.DER
    )

    async def scenario() -> tuple[int, dict[str, Any]]:
        async with (
            _ca(endpoints, tmp_path / "ca") as url,
            aiohttp.ClientSession() as http,
            http.post(
                f"{url}/issue",
                data=der,
                params={"profile": "emt-enc", "token": token},
                headers={"Content-Type": "application/pkcs10"},
            ) as resp,
        ):
            return resp.status, await resp.json()

    status, body = asyncio.run(scenario())
    assert (status, body["issuer"], body["profile"]) == (201, "emt", "emt-enc")


BAD_REQUESTS: list[tuple[str, str, bytes | None, dict[str, str], int, str]] = [
    ("POST", "/issue", b"{not json", {}, 400, "body"),
    ("POST", "/issue", b"[1, 2]", {}, 400, "body"),
    ("POST", "/issue", json.dumps({"profile": "smgw-tls", "token": "x"}).encode(), {}, 400, "csr"),
    (
        "POST",
        "/issue",
        json.dumps({"csr": "garbage", "profile": "smgw-tls"}).encode(),
        {},
        400,
        "csr",
    ),
    (
        "POST",
        "/issue",
        json.dumps({"csr": make_csr(GATEWAY).decode()}).encode(),
        {},
        400,
        "profile",
    ),
    (
        "POST",
        "/issue",
        json.dumps({"csr": make_csr(GATEWAY).decode(), "profile": "sub-ca", "token": "x"}).encode(),
        {},
        400,
        "profile",
    ),
    (
        "POST",
        "/issue",
        json.dumps(
            {"csr": make_csr(GATEWAY).decode(), "profile": "smgw-tls", "token": "wrong"}
        ).encode(),
        {},
        403,
        "token",
    ),
    (
        "POST",
        "/issue",
        json.dumps({"csr": make_csr(GATEWAY).decode(), "profile": "smgw-tls", "token": 5}).encode(),
        {},
        400,
        "token",
    ),
    ("POST", "/issue", b"x" * 70_000, {}, 413, "body"),
    ("POST", "/revoke", json.dumps({"serial": "zz"}).encode(), {}, 400, "serial"),
    ("POST", "/revoke", json.dumps({"serial": "abcd"}).encode(), {}, 404, "serial"),
    (
        "POST",
        "/revoke",
        json.dumps({"serial": "abcd"}).encode(),
        {"Authorization": "Bearer nope"},
        403,
        "authorization",
    ),
    ("GET", "/ca/nope.crt", None, {}, 404, "name"),
    ("GET", "/crl/nope.crl", None, {}, 404, "name"),
    ("GET", "/no/such/path", None, {}, 404, ""),
    ("GET", "/issue", None, {}, 405, ""),
]


def test_bad_requests_get_4xx_json_naming_the_field_and_change_nothing(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """Each malformed or unauthorised request is answered 4xx with {"error", "field"}."""
    _prepare(tmp_path / "ca", [])

    async def scenario() -> tuple[list[tuple[int, Any]], dict[str, Any]]:
        answers = []
        async with _ca(endpoints, tmp_path / "ca") as url, aiohttp.ClientSession() as http:
            for method, path, data, headers, _, _ in BAD_REQUESTS:
                async with http.request(method, url + path, data=data, headers=headers) as resp:
                    answers.append((resp.status, await resp.json()))
            async with http.get(f"{url}/status") as resp:
                status = await resp.json()
        return answers, status

    answers, status = asyncio.run(scenario())
    for (method, path, _, _, want_status, want_field), (got, body) in zip(
        BAD_REQUESTS, answers, strict=True
    ):
        assert (got, body["field"]) == (want_status, want_field), (method, path, body)
        assert body["error"]
    assert status["certificates"] == {"valid": 2, "revoked": 0}
    assert [ca["crl_number"] for ca in status["cas"]] == [1, 1, 1]


def test_refused_issue_is_published_as_request_refused(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """A token bound to another subject is refused with 403 and a ca.request_refused event."""
    (token,) = _prepare(tmp_path / "ca", [("issue", "smgw-tls", "gw0001.smgw.test.example")])

    async def scenario() -> tuple[int, Any, Event]:
        async with bus_client(endpoints) as client, _ca(endpoints, tmp_path / "ca") as url:
            sub = client.subscribe([topics.CA_REQUEST_REFUSED])
            await sub.wait_connected()
            request = {"csr": make_csr(GATEWAY).decode(), "profile": "smgw-tls", "token": token}
            async with aiohttp.ClientSession() as http:
                # The broker confirms the subscription before the CA's publisher has learnt
                # of it, so an event published at once can still be dropped: the refused
                # request (which changes nothing) is sent again until its event arrives.
                for attempt in range(5):
                    status, body = await _post(http, f"{url}/issue", request)
                    try:
                        event = await wait_for_event(sub, lambda e: True, timeout=2.0)
                    except TimeoutError:
                        if attempt == 4:
                            raise
                        continue
                    return status, body, event
        raise AssertionError("unreachable")

    status, body, event = asyncio.run(scenario())
    assert (status, body["field"]) == (403, "token")
    assert (event.body["action"], event.body["field"]) == ("issue", "token")


@pytest.mark.parametrize("name", ["root", "smgw", "emt"])
def test_status_lists_each_ca_with_its_crl(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path, name: str
) -> None:
    """GET /status names each CA with curve and current CRL number."""
    _prepare(tmp_path / "ca", [])

    async def scenario() -> dict[str, Any]:
        async with (
            _ca(endpoints, tmp_path / "ca") as url,
            aiohttp.ClientSession() as http,
            http.get(f"{url}/status") as resp,
        ):
            return await resp.json()  # type: ignore[no-any-return]

    cas = {ca["name"]: ca for ca in asyncio.run(scenario())["cas"]}
    assert cas[name]["crl_number"] == 1
    assert cas[name]["curve"] == ("brainpoolP384r1" if name == "root" else "brainpoolP256r1")
