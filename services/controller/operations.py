"""The one registry of atomic test operations: names, groups, parameter specs, OpenAPI.

An :class:`Operation` has a name (``meter_counter``), a group (``set``, ``act`` or
``observe``), typed :class:`Param` entries and an async implementation acting on the
testbed through the bus (:class:`OpContext`). The same registry answers the
in-process :class:`~.client.Controller`, the bus requests ``controller.<name>`` and
the REST API ``POST /api/v1/<name>``; :func:`openapi` describes it.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from smtestbed.services._runtime.client import BusClient
from smtestbed.services._runtime.errors import RequestError
from smtestbed.services._runtime.version import VERSION
from smtestbed.services.controller.events import EventLog

GROUPS = ("set", "act", "observe")
TYPES = ("string", "integer", "number", "boolean", "object", "array", "any")
_JSON_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "object": dict,
    "array": list,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Topology:
    """Instance names of the services the operations talk to."""

    sensorfarm: str = "sensorfarm"
    channel: str = "channel"
    gateways: tuple[str, ...] = ("gateway",)
    iohw: str = "iohw"
    ca_url: str = ""
    ca_secret: str = ""
    run_dir: str = ""  # the testbed's files (keys, PKI, gateway data); "" when unknown


@dataclass(slots=True, kw_only=True)
class OpContext:
    """What an operation acts through: the bus, the event log, the topology."""

    bus: BusClient
    events: EventLog
    topology: Topology = field(default_factory=Topology)
    timeout_s: float = 10.0

    async def request(
        self, service: str, method: str, params: Any = None, timeout: float | None = None
    ) -> Any:
        """Send one request (no retry: set-state requests are not idempotent)."""
        return await self.bus.request(
            service, method, params, timeout=timeout or self.timeout_s, retries=0
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Param:
    """One parameter of an operation."""

    name: str
    type: str
    description: str
    required: bool = False
    default: Any = None
    choices: tuple[Any, ...] = ()
    minimum: float | None = None

    def check(self, value: Any) -> Any:
        """Return ``value`` if it fits; RequestError naming the parameter otherwise."""
        if self.type == "any":
            return value
        want = _JSON_TYPES[self.type]
        if isinstance(value, bool) and self.type != "boolean":
            raise RequestError(f"must be of type {self.type}, got {value!r}", field=self.name)
        if not isinstance(value, want):
            raise RequestError(f"must be of type {self.type}, got {value!r}", field=self.name)
        if self.type == "number" and not math.isfinite(value):
            raise RequestError(f"must be a finite number, got {value!r}", field=self.name)
        if self.choices and value not in self.choices:
            allowed = ", ".join(map(str, self.choices))
            raise RequestError(f"{value!r} is not one of {allowed}", field=self.name)
        if self.minimum is not None and value < self.minimum:
            raise RequestError(f"must be >= {self.minimum:g}, got {value!r}", field=self.name)
        return value

    def schema(self) -> dict[str, Any]:
        """Return the JSON schema of this parameter."""
        out: dict[str, Any] = {"description": self.description}
        if self.type != "any":
            out["type"] = self.type
        if self.choices:
            out["enum"] = list(self.choices)
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if not self.required and self.default is not None:
            out["default"] = self.default
        return out


Impl = Callable[[OpContext, dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    """One atomic operation of the test API."""

    name: str
    group: str
    description: str
    params: tuple[Param, ...]
    run: Impl

    @property
    def method(self) -> str:
        """Return the bus request name (``controller.<name>``)."""
        return f"controller.{self.name}"

    def validate(self, params: Any) -> dict[str, Any]:
        """Return the parameters with defaults filled in; RequestError naming a bad one."""
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise RequestError(f"must be a JSON object, got {params!r}", field="params")
        known = {p.name: p for p in self.params}
        for name in params:
            if name not in known:
                allowed = ", ".join(known) or "none"
                raise RequestError(f"unknown parameter (allowed: {allowed})", field=str(name))
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name in params and params[p.name] is not None:
                out[p.name] = p.check(params[p.name])
            elif p.required:
                raise RequestError("is required", field=p.name)
            else:
                out[p.name] = p.default
        return out

    def describe(self) -> dict[str, Any]:
        """Return the operation as listed by ``GET /api/v1/operations``."""
        return {
            "name": self.name,
            "group": self.group,
            "description": self.description,
            "method": self.method,
            "params": [
                {
                    "name": p.name,
                    "type": p.type,
                    "required": p.required,
                    "default": p.default,
                    "description": p.description,
                }
                for p in self.params
            ],
        }


class Registry:
    """Operations by name."""

    def __init__(self) -> None:
        self._ops: dict[str, Operation] = {}

    def add(self, op: Operation) -> Operation:
        """Register ``op``; a name twice or an unknown group is a programming error."""
        if op.name in self._ops:
            raise ValueError(f"operation {op.name!r} registered twice")
        if op.group not in GROUPS or any(p.type not in TYPES for p in op.params):
            raise ValueError(f"operation {op.name!r}: bad group or parameter type")
        self._ops[op.name] = op
        return op

    def get(self, name: str) -> Operation:
        """Return the operation ``name``; RequestError naming ``operation`` if unknown."""
        op = self._ops.get(name)
        if op is None:
            raise UnknownOperationError(f"no operation {name!r}", field="operation")
        return op

    def all(self) -> list[Operation]:
        """Return every operation, by group then name."""
        return sorted(self._ops.values(), key=lambda o: (GROUPS.index(o.group), o.name))

    async def call(self, ctx: OpContext, name: str, params: Any = None) -> Any:
        """Validate and run one operation."""
        op = self.get(name)
        return await op.run(ctx, op.validate(params))


class UnknownOperationError(RequestError):
    """The operation name is not in the registry."""


REGISTRY = Registry()


def operation(name: str, group: str, description: str, *params: Param) -> Callable[[Impl], Impl]:
    """Register the decorated coroutine function as operation ``name``."""

    def register(run: Impl) -> Impl:
        REGISTRY.add(
            Operation(name=name, group=group, description=description, params=params, run=run)
        )
        return run

    return register


def openapi(registry: Registry = REGISTRY) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of the REST API, generated from ``registry``."""
    error = {"$ref": "#/components/schemas/Error"}
    paths: dict[str, Any] = {}
    for op in registry.all():
        required = [p.name for p in op.params if p.required]
        body: dict[str, Any] = {
            "type": "object",
            "additionalProperties": False,
            "properties": {p.name: p.schema() for p in op.params},
        }
        if required:
            body["required"] = required
        paths[f"/api/v1/{op.name}"] = {
            "post": {
                "operationId": op.name,
                "summary": op.description,
                "tags": [op.group],
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": body}},
                },
                "responses": {
                    "200": {"description": "the operation's result"},
                    **{
                        str(code): {
                            "description": text,
                            "content": {"application/json": {"schema": error}},
                        }
                        for code, text in ERROR_RESPONSES.items()
                    },
                },
            }
        }
    paths["/api/v1/operations"] = {
        "get": {"operationId": "list_operations", "responses": {"200": {"description": "list"}}}
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "smtestbed controller", "version": VERSION},
        "paths": paths,
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "field"],
                    "properties": {"error": {"type": "string"}, "field": {"type": "string"}},
                }
            }
        },
    }


ERROR_RESPONSES = {
    400: "the body is not a JSON object",
    404: "no such operation",
    422: "a parameter is invalid (field names it)",
    503: "a service the operation needs is not on the bus",
    504: "a service the operation needs did not answer in time",
}
