"""Request/reply framing between clients, the broker's ROUTER and services.

Every peer talks to the broker through a DEALER socket. After the DEALER's
own framing, every message is ``[TAG, command, *args]``:

====================  ===================================================
peer -> broker        meaning
====================  ===================================================
HELLO name info       a service announces itself (info: msgpack map)
HB name               heartbeat of a service
BYE name              a service stops on purpose
REQ service id env    a client's request (env: packed Envelope)
REP client id env     a service's reply to a forwarded request
====================  ===================================================

====================  ===================================================
broker -> peer        meaning
====================  ===================================================
REQ client id env     a request forwarded to the named service
REP id env            a reply forwarded to the client
ERR id body           the broker could not route (body: msgpack map)
WHO                   the broker does not know the heartbeating service
====================  ===================================================

A reply envelope has kind ``rpc.reply`` and a body
``{"ok": true, "result": ...}`` or ``{"ok": false, "code": str, "message": str}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeGuard

TAG = b"SMTB1"
HELLO = b"HELLO"
HB = b"HB"
BYE = b"BYE"
REQ = b"REQ"
REP = b"REP"
ERR = b"ERR"
WHO = b"WHO"

BROKER_NAME = "broker"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceInfo:
    """What a service says of itself when it announces.

    Attributes:
        name: instance name, unique on the bus; requests are routed by it.
        service: the kind of service (``broker``, ``sample``, ``gateway``, ...).
        pid: its process id.
        heartbeat_s: its heartbeat interval in s.
        version: the smtestbed version it runs.
    """

    name: str
    service: str
    pid: int
    heartbeat_s: float
    version: str

    def to_map(self) -> dict[str, Any]:
        """Return the msgpack-ready form."""
        return {
            "name": self.name,
            "service": self.service,
            "pid": self.pid,
            "heartbeat_s": self.heartbeat_s,
            "version": self.version,
        }

    @classmethod
    def from_map(cls, raw: Any) -> ServiceInfo:
        """Validate a received announcement; raise ValueError when malformed."""
        if not isinstance(raw, dict):
            raise ValueError("announcement is not a map")
        hb = raw.get("heartbeat_s")
        if not isinstance(hb, int | float) or not 0 < hb <= 3600:
            raise ValueError(f"heartbeat_s {hb!r} out of range")
        name, service, version = (raw.get(k) for k in ("name", "service", "version"))
        if not (_text(name) and _text(service) and _text(version)):
            raise ValueError(f"announcement lacks name/service/version: {raw!r:.200}")
        pid = raw.get("pid")
        if not isinstance(pid, int):
            raise ValueError("announcement lacks pid")
        return cls(name=name, service=service, pid=pid, heartbeat_s=float(hb), version=version)


def _text(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value)


def ok_reply(result: Any) -> dict[str, Any]:
    """Return the body of a successful reply."""
    return {"ok": True, "result": result}


def error_reply(code: str, message: str) -> dict[str, Any]:
    """Return the body of a failed reply."""
    return {"ok": False, "code": code, "message": message}
