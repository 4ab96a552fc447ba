"""The CA's HTTP API (aiohttp).

=====================  ===================================================================
``POST /issue``        JSON ``{"csr": PEM, "profile": NAME, "token": T}``, or the CSR itself
                       (PEM or DER) as ``application/pkcs10`` with ``?profile=NAME&token=T``.
                       201 with ``{"serial", "profile", "issuer", "subject", "not_after",
                       "certificate": PEM, "chain": [PEM, ...]}`` (issuing CA first).
``POST /revoke``       JSON ``{"serial": HEX, "reason": NAME, "token": T}``; instead of a
                       token, ``Authorization: Bearer <admin secret>``. 200 with the record.
``POST /token``        JSON ``{"profile": NAME, "subject": CN, "purpose": "issue"|"revoke"}``
                       with ``Authorization: Bearer <admin secret>``: a one-time enrolment
                       token bound to them. 201 with ``{"token", "purpose", "profile",
                       "subject", "expires"}``; 401 without the header, 403 for a wrong
                       secret, 422 for a bad profile, subject or purpose (400 for
                       a body that is not a JSON object).
``GET /ca/<n>.crt``    CA certificate, DER, ``application/pkix-cert`` (``root``, ``smgw``, ``emt``).
``GET /crl/<n>.crl``   current CRL, DER, ``application/pkix-crl``; ``Expires`` = nextUpdate.
``GET /status``        CAs, current CRL numbers, certificate counts.
=====================  ===================================================================

Every refusal is JSON ``{"error": MESSAGE, "field": NAME}``: 400 for a bad
request, 403 when the requester is not authorised, 404 for an unknown CA,
certificate or path, 405, 413 for a body over 64 KiB. Each refused issue,
revocation or token request is also a ``ca.request_refused`` event.

This first version serves plain HTTP, so requesters authenticate with
tokens. When the app runs behind TLS with client certificates (the server
side of a mutual-TLS ``ssl.SSLContext``), the peer certificate is passed to
the authority as the requester's identity.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from email.utils import format_datetime
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from smtestbed.services._runtime.errors import RequestError
from smtestbed.services.ca.access import Requester
from smtestbed.services.ca.authority import Authority, Issued, format_serial, parse_serial
from smtestbed.services.ca.errors import InvalidRequestError, NotFoundError, RefusedError
from smtestbed.services.ca.state import CertRecord

__all__ = ["MAX_BODY", "make_app"]

MAX_BODY = 64 * 1024
AUTHORITY: web.AppKey[Authority] = web.AppKey("authority", Authority)
ADMIN_SECRET: web.AppKey[str] = web.AppKey("admin_secret", str)
_PEM = serialization.Encoding.PEM
_DER = serialization.Encoding.DER
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_app(authority: Authority, *, admin_secret: str = "") -> web.Application:
    """Return the aiohttp application serving ``authority``."""
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_errors])
    app[AUTHORITY] = authority
    app[ADMIN_SECRET] = admin_secret
    app.router.add_post("/issue", _issue)
    app.router.add_post("/revoke", _revoke)
    app.router.add_post("/token", _token)
    app.router.add_get("/ca/{name:[a-z0-9-]+}.crt", _ca_certificate)
    app.router.add_get("/crl/{name:[a-z0-9-]+}.crl", _crl)
    app.router.add_get("/status", _status)
    return app


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RequestError as exc:
        return _error(_status_of(exc), str(exc), exc.field)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason, "body" if exc.status == 413 else "")


def _status_of(exc: RequestError) -> int:
    if isinstance(exc, RefusedError):
        return 403
    if isinstance(exc, NotFoundError):
        return 404
    return 400


def _error(status: int, message: str, field: str) -> web.Response:
    return web.json_response({"error": message, "field": field}, status=status)


# -- issuing ------------------------------------------------------------------


async def _issue(request: web.Request) -> web.Response:
    authority = request.app[AUTHORITY]
    if request.content_type == "application/pkcs10":
        csr = await request.read()
        profile = request.query.get("profile", "")
        token = request.query.get("token", "")
    else:
        body = await _json_object(request)
        csr = _text(body, "csr").encode()
        profile, token = _text(body, "profile"), _text(body, "token", required=False)
    if not profile:
        raise InvalidRequestError("missing", field="profile")
    requester = Requester(token=token, client_certificate=_peer_certificate(request))
    issued = authority.issue(csr, profile, requester)
    return web.json_response(_issued_json(issued), status=201)


def _issued_json(issued: Issued) -> dict[str, Any]:
    return {
        "serial": format_serial(issued.serial),
        "profile": issued.profile,
        "issuer": issued.issuer,
        "subject": issued.subject,
        "not_after": issued.certificate.not_valid_after_utc.isoformat(),
        "certificate": issued.certificate.public_bytes(_PEM).decode(),
        "chain": [c.public_bytes(_PEM).decode() for c in issued.chain],
    }


def _peer_certificate(request: web.Request) -> x509.Certificate | None:
    """Return the TLS client certificate of the connection, if there is one."""
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return x509.load_der_x509_certificate(der) if der else None


# -- revoking -----------------------------------------------------------------


async def _revoke(request: web.Request) -> web.Response:
    authority = request.app[AUTHORITY]
    body = await _json_object(request)
    serial = parse_serial(_text(body, "serial"))
    reason = _text(body, "reason", required=False) or "unspecified"
    requester = Requester(
        token=_text(body, "token", required=False),
        client_certificate=_peer_certificate(request),
        admin=_is_admin(request),
    )
    record = authority.revoke(serial, reason, requester)
    return web.json_response(_record_json(record))


def _is_admin(request: web.Request) -> bool:
    header = request.headers.get("Authorization", "")
    if not header:
        return False
    secret = request.app[ADMIN_SECRET]
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not secret:
        raise RefusedError(
            "no admin secret is configured or not a Bearer value", field="authorization"
        )
    if not hmac.compare_digest(value.strip().encode(), secret.encode()):
        raise RefusedError("wrong admin secret", field="authorization")
    return True


def _record_json(record: CertRecord) -> dict[str, Any]:
    return {
        "serial": format_serial(record.serial),
        "issuer": record.issuer,
        "subject": record.subject,
        "profile": record.profile,
        "status": record.status,
        "reason": record.reason,
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
    }


# -- tokens -------------------------------------------------------------------


class _UnauthenticatedError(RefusedError):
    """No admin secret was presented (HTTP 401)."""


async def _token(request: web.Request) -> web.Response:
    """Create a one-time token for the admin; every refusal is reported as an event."""
    authority = request.app[AUTHORITY]
    try:
        if "Authorization" not in request.headers:
            raise _UnauthenticatedError("admin secret required (Bearer)", field="authorization")
        _is_admin(request)
        body = await _json_object(request)
        profile, subject = _text(body, "profile"), _text(body, "subject")
        purpose = _text(body, "purpose", required=False) or "issue"
        token = authority.create_token(profile=profile, subject=subject, purpose=purpose)
    except RequestError as exc:
        authority.report_refused("token", exc)
        if isinstance(exc, _UnauthenticatedError):
            headers = {"WWW-Authenticate": 'Bearer realm="ca"'}
            return web.json_response(
                {"error": str(exc), "field": exc.field}, status=401, headers=headers
            )
        status = 403 if isinstance(exc, RefusedError) else 400 if exc.field == "body" else 422
        return _error(status, str(exc), exc.field)
    expires = authority.now() + authority.policy.token_ttl
    answer = {"token": token, "purpose": purpose, "profile": profile, "subject": subject}
    return web.json_response({**answer, "expires": expires.isoformat()}, status=201)


# -- publishing ---------------------------------------------------------------


async def _ca_certificate(request: web.Request) -> web.Response:
    issuer = request.app[AUTHORITY].issuer(request.match_info["name"])
    return web.Response(
        body=issuer.certificate.public_bytes(_DER), content_type="application/pkix-cert"
    )


async def _crl(request: web.Request) -> web.Response:
    record = request.app[AUTHORITY].current_crl(request.match_info["name"])
    headers = {
        "Last-Modified": format_datetime(record.this_update, usegmt=True),
        "Expires": format_datetime(record.next_update, usegmt=True),
    }
    return web.Response(body=record.der, content_type="application/pkix-crl", headers=headers)


async def _status(request: web.Request) -> web.Response:
    return web.json_response(request.app[AUTHORITY].status())


# -- request bodies -----------------------------------------------------------


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"not JSON: {exc}", field="body") from exc
    if not isinstance(body, dict):
        raise InvalidRequestError("must be a JSON object", field="body")
    return body


def _text(body: dict[str, Any], name: str, *, required: bool = True) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise InvalidRequestError("missing or not a non-empty string", field=name)
    return value
