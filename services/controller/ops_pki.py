"""Operations on the testbed's SM-PKI: issue, revoke, rotate the gateway's certificates.

The controller holds the testbed CA's admin secret (``Topology.ca_secret``) and
talks to the CA's HTTP API. ``certificate`` issues from a CSR (``POST /issue``);
without a token of the caller's it first asks the CA for a one-time token bound
to the CSR's subject and the profile (``POST /token``), as an enrolment office
would. ``revoke`` revokes with the admin secret. ``rotate_certificate`` plays the
testbed's GWA (its gwa-tls identity from the run folder's ``pki/``): on one
mutual-TLS session to the gateway's WAN endpoint it asks ``cert_request``, has the
CA issue the CSR with a token bound to the gateway's name, and pushes the
certificate with ``cert_install``, which the gateway checks before it uses it.
Importing this module registers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.x509.oid import NameOID
from smtestbed.proto import wan
from smtestbed.services._runtime import tls
from smtestbed.services._runtime.errors import PeerError, RequestError
from smtestbed.services.controller.credentials import (
    client_context,
)
from smtestbed.services.controller.operations import OpContext, Param, operation
from smtestbed.services.controller.ops_security import run_dir, wan_endpoint

WHICH = ("tls", "sig")


# -- the CA's HTTP API -------------------------------------------------------------------


def need_ca(ctx: OpContext) -> None:
    """Refuse an operation on a testbed that runs no CA, before looking at its parameters."""
    if not ctx.topology.ca_url:
        raise RequestError("this testbed runs no CA (state.pki.enabled)", field="operation")


async def ca_post(ctx: OpContext, path: str, body: dict[str, Any], *, admin: bool = False) -> Any:
    """POST ``body`` to the CA; a refusal is a RequestError naming the CA's field."""
    need_ca(ctx)
    headers = {"Authorization": f"Bearer {ctx.topology.ca_secret}"} if admin else {}
    timeout = aiohttp.ClientTimeout(total=ctx.timeout_s)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.post(ctx.topology.ca_url + path, json=body, headers=headers) as r,
        ):
            reply = await r.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise PeerError(f"CA at {ctx.topology.ca_url}: {exc}") from exc
    if isinstance(reply, dict) and "error" in reply:
        raise RequestError(f"CA: {reply['error']}", field=str(reply.get("field") or "params"))
    return reply


async def enrolment_token(ctx: OpContext, profile: str, subject: str) -> str:
    """Have the CA make a one-time issue token for ``profile`` and ``subject``."""
    body = {"profile": profile, "subject": subject, "purpose": "issue"}
    answer = await ca_post(ctx, "/token", body, admin=True)
    return str(answer["token"])


def csr_subject(pem: str) -> str:
    """Return the subject CN of a PEM CSR; RequestError naming ``csr`` if there is none."""
    try:
        request = x509.load_pem_x509_csr(pem.encode())
        names = request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError as exc:
        raise RequestError(f"not a PEM PKCS#10 request: {exc}", field="csr") from exc
    if len(names) != 1 or not isinstance(names[0].value, str):
        raise RequestError("the request's subject needs exactly one CN", field="csr")
    return names[0].value


@operation(
    "certificate",
    "set",
    "Have the CA issue a certificate from a CSR (POST /issue of the CA's HTTP API); "
    "without a token the controller first asks the CA for one bound to the CSR's "
    "subject and the profile (POST /token with the admin secret)",
    Param(name="csr", type="string", required=True, description="PKCS#10 request, PEM"),
    Param(name="profile", type="string", required=True, description="CA profile, e.g. smgw-tls"),
    Param(name="token", type="string", default="", description="enrolment token (optional)"),
)
async def certificate(ctx: OpContext, p: dict[str, Any]) -> Any:
    need_ca(ctx)
    subject, token = csr_subject(p["csr"]), p["token"]
    if not token:
        try:
            token = await enrolment_token(ctx, p["profile"], subject)
        except RequestError as exc:  # the subject the CA refused is the CSR's
            field = "csr" if exc.field == "subject" else exc.field
            raise RequestError(str(exc), field=field) from exc
    return await ca_post(ctx, "/issue", {"csr": p["csr"], "profile": p["profile"], "token": token})


@operation(
    "revoke",
    "act",
    "Revoke a certificate at the CA (POST /revoke with the admin secret)",
    Param(name="serial", type="string", required=True, description="serial number, hex"),
    Param(name="reason", type="string", default="unspecified", description="CRL reason"),
)
async def revoke(ctx: OpContext, p: dict[str, Any]) -> Any:
    return await ca_post(ctx, "/revoke", p, admin=True)


# -- the GWA's session -------------------------------------------------------------------


@dataclass(slots=True)
class GwaSession:
    """One mutual-TLS administration session to the gateway's WAN endpoint."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer: tls.Peer
    timeout_s: float
    next_id: int = 1

    async def call(self, op: str, params: dict[str, Any]) -> Any:
        """Send one request; return its result, RequestError naming the gateway's field."""
        ident, self.next_id = self.next_id, self.next_id + 1
        try:
            self.writer.write(wan.encode({"id": ident, "op": op, "params": params}))
            await self.writer.drain()
            reply = await asyncio.wait_for(self._reply(), self.timeout_s)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as exc:
            raise PeerError(f"gateway closed the GWA session: {tls.refusal_reason(exc)}") from exc
        except TimeoutError as exc:
            raise PeerError(f"gateway did not answer {op} in {self.timeout_s:g} s") from exc
        except wan.FrameError as exc:
            raise PeerError(f"gateway's reply to {op}: {exc}") from exc
        if not reply.ok:
            raise RequestError(f"gateway: {op}: {reply.error}", field=reply.field or "which")
        return reply.result

    async def _reply(self) -> wan.Reply:
        header = await self.reader.readexactly(wan.HEADER)
        return wan.decode_reply(await self.reader.readexactly(wan.frame_length(header)))


@contextlib.asynccontextmanager
async def gwa_session(root: Path, timeout_s: float) -> AsyncIterator[GwaSession]:
    """Open the GWA's session (its certificate from ``root/pki``); close it afterwards."""
    host, port = wan_endpoint(root)
    context = client_context(root, "gwa", field="operation")
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=None), timeout_s
        )
    except (ssl.SSLError, OSError, TimeoutError) as exc:
        reason = tls.refusal_reason(exc)
        raise PeerError(f"GWA session to {host}:{port} refused: {reason}") from exc
    session = GwaSession(
        reader, writer, tls.peer_of(writer.get_extra_info("ssl_object")), timeout_s
    )
    try:
        yield session
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


# -- rotation ----------------------------------------------------------------------------


@operation(
    "rotate_certificate",
    "act",
    "As the testbed's GWA rotate the gateway's TLS or signature certificate through the "
    "CA over the WAN (cert_request, POST /token and /issue, cert_install); answers the "
    "old and the new serial",
    Param(name="which", type="string", required=True, choices=WHICH, description="tls or sig"),
    Param(
        name="gateway",
        type="string",
        description="gateway instance the WAN endpoint belongs to (checked; default: it)",
    ),
)
async def rotate_certificate(ctx: OpContext, p: dict[str, Any]) -> Any:
    root = run_dir(ctx)
    async with gwa_session(root, ctx.timeout_s) as gwa:
        if p["gateway"] is not None:
            serving = (await gwa.call("status", {}))["gateway"]
            if serving != p["gateway"]:
                raise RequestError(f"the WAN endpoint belongs to {serving!r}", field="gateway")
        request = await gwa.call("cert_request", {"which": p["which"]})
        token = await enrolment_token(ctx, request["profile"], request["subject"])
        body = {"csr": request["csr"], "profile": request["profile"], "token": token}
        issued = await ca_post(ctx, "/issue", body)
        params = {"which": p["which"], "certificate": issued["certificate"]}
        installed = await gwa.call("cert_install", {**params, "chain": issued["chain"]})
    return {
        "which": installed["which"],
        "gateway": installed["gateway"],
        "old_serial": installed["previous_serial"],
        "new_serial": installed["serial"],
        "subject": installed["subject"],
        "profile": issued["profile"],
        "issuer": issued["issuer"],
        "not_after": installed["not_after"],
    }
