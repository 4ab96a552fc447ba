"""The controller's REST API (aiohttp), running the same operation registry as the bus.

=============================  ==============================================================
``POST /api/v1/<operation>``   JSON object of parameters (or no body); 200 with the result.
``GET /api/v1/operations``     every operation with its group and parameter spec.
``GET /openapi.json``          OpenAPI 3.1 document generated from the registry.
=============================  ==============================================================

Every refusal is JSON ``{"error": MESSAGE, "field": NAME}``: 400 for a body that is not
a JSON object, 404 for an unknown operation, 422 for a bad parameter (also when the
service acting on it refused it), 503 when a service the operation needs is not on
the bus, 504 when it did not answer in time. Never 500.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web
from smtestbed.services._runtime.errors import (
    ConfigError,
    PeerError,
    RemoteError,
    RequestError,
    RequestTimeoutError,
    TestbedError,
)
from smtestbed.services._runtime.logging import get_logger
from smtestbed.services.controller.operations import (
    REGISTRY,
    OpContext,
    Registry,
    UnknownOperationError,
    openapi,
)

MAX_BODY = 1024 * 1024
CONTEXT: web.AppKey[Callable[[], OpContext]] = web.AppKey("context")
_log = get_logger(component="rest")


def make_app(context: Callable[[], OpContext], registry: Registry = REGISTRY) -> web.Application:
    """Return the REST application; ``context`` gives the bus context operations run in."""
    app = web.Application(client_max_size=MAX_BODY)
    app[CONTEXT] = context

    async def call(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            params = await _body(request)
            result = await registry.call(request.app[CONTEXT](), name, params)
        except Exception as exc:
            status, field, message = error_status(exc)
            _log.warning(
                "operation_refused", operation=name, status=status, field=field, error=message
            )
            return web.json_response({"error": message, "field": field}, status=status)
        return web.json_response(result, dumps=_dumps)

    async def operations(request: web.Request) -> web.Response:
        return web.json_response([op.describe() for op in registry.all()])

    async def document(request: web.Request) -> web.Response:
        return web.json_response(openapi(registry))

    app.router.add_post("/api/v1/{name}", call)
    app.router.add_get("/api/v1/operations", operations)
    app.router.add_get("/openapi.json", document)
    return app


class BadBodyError(RequestError):
    """The request body is not a JSON object."""


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadBodyError(f"not JSON: {exc}", field="body") from exc
    if not isinstance(body, dict):
        raise BadBodyError(f"must be a JSON object, got {type(body).__name__}", field="body")
    return body


def error_status(exc: BaseException) -> tuple[int, str, str]:
    """Return (HTTP status, field, message) for an operation's error."""
    if isinstance(exc, BadBodyError):
        return 400, exc.field, str(exc)
    if isinstance(exc, UnknownOperationError):
        return 404, exc.field, str(exc)
    if isinstance(exc, RequestError):
        return 422, exc.field, str(exc)
    if isinstance(exc, ConfigError):
        return 422, exc.key, str(exc)
    if isinstance(exc, RemoteError):
        return _remote(exc)
    if isinstance(exc, RequestTimeoutError):
        return 504, "", str(exc)
    if isinstance(exc, PeerError):
        return 503, "", str(exc)
    if isinstance(exc, TestbedError):
        return 422, "", str(exc)
    _log.error("operation_failed", error=f"{type(exc).__name__}: {exc}")
    return 502, "", f"operation failed: {type(exc).__name__}: {exc}"


def _remote(exc: RemoteError) -> tuple[int, str, str]:
    """A service refused: a bad parameter names its field as ``field: message``."""
    if exc.code == "internal":
        return 502, "", str(exc)
    head, sep, _ = str(exc).partition(": ")
    field = head.rsplit(".", 1)[-1] if sep and " " not in head else ""
    # "channel.set_fault: receiver: ..." names the request first, then the field
    rest = str(exc).split(": ")
    if len(rest) >= 3 and "." in rest[0] and " " not in rest[1]:
        field = rest[1]
    return 422, field, str(exc)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_jsonable)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    return repr(value)
