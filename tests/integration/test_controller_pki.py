"""The controller's certificate operations on one real PKI testbed: the CA service on the
run folder's CA directory, the gateway's WAN endpoint, the controller as GWA.

``certificate`` without a token (the controller asks the CA's POST /token), ``revoke``
reaching the CRL, ``rotate_certificate`` seen on the gateway's next TLS handshake, REST
and bus agreeing, and bad requests answered 4xx naming the field, changing nothing.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from smtestbed.proto import topics
from smtestbed.services._runtime import tls
from smtestbed.services.ca.validation import Reason, Usage, openssl_verify, validate
from smtestbed.services.controller.client import Controller
from smtestbed.services.controller.credentials import Identity, crl_files, root_certificate
from smtestbed.services.controller.ops_security import wan_endpoint
from smtestbed.services.controller.testbed import Testbed

from tests.integration.controller_helpers import run, running_testbed

pytestmark = pytest.mark.timeout(240)

STATE = {
    "seed": 31,
    "population": {"count": 1},
    "pki": {"enabled": True, "certificates": ["gateway", "gwa"]},
}
SUBJECT = "gw7.smgw.test.example"


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """One PKI testbed with the controller service for the module; stopped at the end."""
    yield from running_testbed(STATE, tmp_path_factory.mktemp("pki"))


async def rest(port: int, name: str, body: Any) -> tuple[int, Any]:
    """POST one operation to the controller's REST API; return (status, JSON)."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"http://127.0.0.1:{port}/api/v1/{name}", json=body) as reply,
    ):
        return reply.status, await reply.json()


def make_csr(common_name: str) -> str:
    """Return a PEM CSR for ``common_name`` with a new brainpoolP256r1 key."""
    key = ec.generate_private_key(ec.BrainpoolP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def check_chain(folder: Path, issued: dict[str, Any]) -> tuple[Reason, Reason]:
    """Validate an issued certificate with the CA's CRL files: (pyhanko, openssl verify)."""
    leaf = x509.load_pem_x509_certificate(issued["certificate"].encode())
    subs = [x509.load_pem_x509_certificate(c.encode()) for c in issued["chain"]]
    args: dict[str, Any] = {
        "intermediates": subs,
        "trust_roots": [x509.load_pem_x509_certificate(root_certificate(folder).read_bytes())],
        "crls": [x509.load_pem_x509_crl(p.read_bytes()) for p in crl_files(folder)],
        "usage": Usage.TLS_SERVER,
    }
    ours = validate(leaf, at=datetime.now(UTC), **args)
    theirs = openssl_verify(leaf, at=None, **args)
    return ours.reason, theirs.reason


async def served_serial(folder: Path) -> str:
    """Return the serial (hex) of the certificate the gateway's WAN endpoint presents."""
    host, port = wan_endpoint(folder)
    gwa = Identity.of(folder, "gwa")
    context = tls.client_context(
        gwa.cert,
        gwa.key,
        [gwa.chain],
        [root_certificate(folder)],
        crl_files(folder),
        check_hostname=False,
    )
    _, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=context), 10.0)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        assert isinstance(ssl_object, ssl.SSLObject)
        return tls.peer_of(ssl_object).serial
    finally:
        writer.close()


async def crl_lists(ca_url: str, serial: str) -> bool:
    """Tell whether the smgw sub-CA's current CRL, fetched over HTTP, lists ``serial``."""
    async with aiohttp.ClientSession() as http, http.get(f"{ca_url}/crl/smgw.crl") as reply:
        crl = x509.load_der_x509_crl(await reply.read())
    return crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None


def test_certificate_without_token_validates_and_revoke_puts_it_on_the_crl(
    testbed: Testbed,
) -> None:
    """certificate (no token) -> ca.cert_issued, a valid chain; revoke -> ca.cert_revoked,
    the CA's CRL lists the serial, and both validators then say revoked."""
    folder = testbed.layout.folder

    async def body(ctl: Controller) -> tuple[Any, ...]:
        mark = ctl.mark()
        issued = await ctl.call("certificate", csr=make_csr(SUBJECT), profile="smgw-tls")
        event = await ctl.expect_event(
            topics.CA_CERT_ISSUED, {"serial": issued["serial"]}, since=mark
        )
        before = await asyncio.to_thread(check_chain, folder, issued)  # runs its own loop
        listed_before = await crl_lists(testbed.layout.ca_url, issued["serial"])
        mark = ctl.mark()
        record = await ctl.call("revoke", serial=issued["serial"], reason="keyCompromise")
        await ctl.expect_event(topics.CA_CERT_REVOKED, {"serial": issued["serial"]}, since=mark)
        await ctl.expect_event(topics.CA_CRL_PUBLISHED, {"ca": "smgw"}, since=mark)
        listed = await crl_lists(testbed.layout.ca_url, issued["serial"])
        after = await asyncio.to_thread(check_chain, folder, issued)
        return issued, event, before, listed_before, record, listed, after

    issued, event, before, listed_before, record, listed, after = run(testbed, body)
    assert (issued["subject"], issued["profile"], issued["issuer"]) == (SUBJECT, "smgw-tls", "smgw")
    assert event["body"]["subject"] == SUBJECT
    assert before == (Reason.OK, Reason.OK)
    assert not listed_before
    assert (record["status"], record["reason"]) == ("revoked", "keyCompromise")
    assert listed
    assert after == (Reason.REVOKED, Reason.REVOKED)


def test_rest_and_bus_certificate_calls_issue_equivalent_certificates(testbed: Testbed) -> None:
    """The same certificate call through REST and through controller.certificate on the bus:
    both issued (distinct serials) for the same subject, profile and issuing chain."""
    csr = make_csr("gw8.smgw.test.example")
    params = {"csr": csr, "profile": "smgw-tls"}

    async def body(ctl: Controller) -> tuple[Any, Any]:
        status, by_rest = await rest(testbed.layout.controller_http, "certificate", params)
        assert status == 200, by_rest
        by_bus = await ctl.ctx.request("controller", "controller.certificate", params)
        return by_rest, by_bus

    by_rest, by_bus = run(testbed, body)
    same = ("subject", "profile", "issuer", "chain")
    assert {k: by_rest[k] for k in same} == {k: by_bus[k] for k in same}
    assert by_rest["subject"] == "gw8.smgw.test.example"
    assert by_rest["serial"] != by_bus["serial"]
    keys = [
        x509.load_pem_x509_certificate(r["certificate"].encode()).public_key()
        for r in (by_rest, by_bus)
    ]
    assert keys[0] == keys[1]


def test_rotate_tls_certificate_is_presented_on_the_next_handshake(testbed: Testbed) -> None:
    """rotate_certificate tls: old serial = the one served before, new serial served after,
    issued by the CA (ca.cert_issued) and reported by the gateway (gateway.cert_rotated)."""
    folder = testbed.layout.folder

    async def body(ctl: Controller) -> tuple[Any, ...]:
        before = await served_serial(folder)
        mark = ctl.mark()
        rotated = await ctl.call("rotate_certificate", which="tls", gateway="gw0")
        await ctl.expect_event(topics.CA_CERT_ISSUED, {"serial": rotated["new_serial"]}, since=mark)
        await ctl.expect_event(
            topics.GATEWAY_CERT_ROTATED, {"serial": rotated["new_serial"]}, since=mark
        )
        return before, rotated, await served_serial(folder)

    before, rotated, after = run(testbed, body)
    assert rotated["old_serial"] == before
    assert rotated["new_serial"] == after != before
    assert (rotated["which"], rotated["profile"], rotated["subject"]) == (
        "tls",
        "smgw-tls",
        "gw0.smgw.test.example",
    )


BAD = [
    ("certificate", {"csr": "not a pem", "profile": "smgw-tls"}, "csr"),
    ("certificate", {"profile": "smgw-tls"}, "csr"),
    ("certificate", {"csr": make_csr(SUBJECT), "profile": "no-such"}, "profile"),
    ("certificate", {"csr": make_csr(SUBJECT), "profile": "no-such", "token": "x"}, "profile"),
    ("certificate", {"csr": make_csr("Not A Host"), "profile": "smgw-tls"}, "csr"),
    ("certificate", {"csr": make_csr(SUBJECT), "profile": "smgw-tls", "token": "x"}, "token"),
    ("revoke", {"serial": "zz"}, "serial"),
    ("revoke", {"serial": "1234abcd"}, "serial"),
    ("revoke", {"serial": "1234abcd", "reason": "bored"}, "reason"),
    ("rotate_certificate", {"which": "both"}, "which"),
    ("rotate_certificate", {"which": "sig"}, "which"),  # this testbed's gateway has no sig cert
    ("rotate_certificate", {"which": "tls", "gateway": "gw9"}, "gateway"),
]


def test_bad_requests_get_4xx_naming_the_field_and_change_nothing(testbed: Testbed) -> None:
    """Bad PEM, unknown profile, a CN the CA refuses, a wrong token, a bad or unknown serial,
    a bad which or gateway, a certificate the gateway does not have: 422 naming the field
    (never 5xx); no certificate issued, revoked or rotated."""
    port = testbed.layout.controller_http

    async def body(ctl: Controller) -> tuple[list[tuple[int, Any]], Any, Any, list[Any]]:
        counts = await ctl.call("counters", service="ca")
        mark = ctl.mark()
        answers = [await rest(port, name, params) for name, params, _ in BAD]
        await asyncio.sleep(0.5)  # events of a wrongly done operation would have arrived
        changed = [
            e
            for kind in (topics.CA_CERT_ISSUED, topics.CA_CERT_REVOKED, topics.GATEWAY_CERT_ROTATED)
            for e in ctl.events(kind, since=mark)
        ]
        return answers, counts, await ctl.call("counters", service="ca"), changed

    answers, before, after, changed = run(testbed, body)
    for (name, params, field), (status, reply) in zip(BAD, answers, strict=True):
        assert (status, reply["field"]) == (422, field), (name, params, reply)
        assert reply["error"]
    assert changed == []
    assert (after["certs_issued"], after["certs_revoked"]) == (
        before["certs_issued"],
        before["certs_revoked"],
    )
    assert after["requests_refused"] > before["requests_refused"]
