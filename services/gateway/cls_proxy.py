"""CLS proxy channels: a CLS device on the HAN reaches its EMT only through the gateway.

The HAN endpoint hands every client whose certificate's role (subject OU) is
``CLS`` to :meth:`ClsProxy.serve` instead of the request session
(:class:`HanListener`). The device's first request must be ``channel`` for the
EMT configured for it in ``cls_channels`` (``{cls = CN, emt, url =
"tls://HOST:PORT", server_name}``); the gateway then opens mutual TLS to that
EMT with its own TLS identity (the WAN settings ``wan_cert``, ``wan_key``,
``wan_chain``, ``wan_trust``, ``wan_crls``; the EMT's certificate must have the
``EMT`` role, its dNSName ``server_name`` when set, and is checked against the
CRLs), announces the device (``cls.open``, :mod:`smtestbed.proto.cls`) and
relays data frames both ways, byte for byte, until one side closes, a frame
exceeds ``cls_max_frame`` or both directions stay silent ``cls_idle_timeout_s``.

Refusals: a device with no configured channel (field ``cls``, reason
``no_channel``), asking for another EMT (``emt``, ``wrong_target``) or for
anything but its channel (``role``) is reported through the HAN endpoint's
``han.access_refused``. An EMT that cannot be reached or refuses is a
``gateway.cls_channel_failed`` event and a ``cls_channel_failed`` system-log
entry, and the device gets an error naming ``emt``. Each channel is a
``gateway.cls_channel_opened`` and a ``gateway.cls_channel_closed`` event (with
the frames and payload bytes relayed each way) and system-log entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from smtestbed.proto import cls, topics, wan
from smtestbed.proto.delivery import encode_frame, read_message
from smtestbed.services._runtime import tls
from smtestbed.services._runtime.errors import (
    ConfigError,
    ProtocolError,
    RequestError,
)
from smtestbed.services.gateway import framed_tls
from smtestbed.services.gateway.config import GatewayConfig
from smtestbed.services.gateway.instance import GatewayInstance

__all__ = [
    "ChannelRefusedError",
    "ClsProxy",
    "ClsRoute",
    "HanListener",
    "parse_channels",
]

EMT_ROLE = "EMT"


class ChannelRefusedError(RequestError):
    """A CLS device asked for a channel it may not have.

    Attributes:
        reason: ``no_channel``, ``wrong_target`` or ``role``.
    """

    def __init__(self, message: str, *, field: str, reason: str) -> None:
        super().__init__(message, field=field)
        self.reason = reason


Refused = Callable[[wan.Request, tls.Peer, str, ChannelRefusedError], None]
"""Reports a refused channel request (the HAN endpoint's access refusal)."""
Session = Callable[[asyncio.StreamReader, asyncio.StreamWriter, tls.Peer, str], Awaitable[None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClsRoute:
    """The one EMT a CLS device may reach, and where it listens."""

    cls: str
    emt: str
    host: str
    port: int
    server_name: str = ""


def parse_channels(tables: Sequence[dict[str, Any]]) -> dict[str, ClsRoute]:
    """Read ``cls_channels`` into CLS CN -> route; a wrong table is a ConfigError naming it."""
    out: dict[str, ClsRoute] = {}
    for k, table in enumerate(tables):
        key = f"gateway.cls_channels[{k}]"
        device, emt, url = table.get("cls"), table.get("emt"), table.get("url")
        unknown = set(table) - {"cls", "emt", "url", "server_name"}
        texts = (device, emt, url)
        if unknown or not all(isinstance(v, str) and v for v in texts):
            raise ConfigError("needs cls, emt and url (and only server_name besides)", key=key)
        parts = urlsplit(str(url))
        if parts.scheme != "tls" or not parts.hostname or parts.port is None:
            raise ConfigError(f"url must be tls://HOST:PORT, got {url!r}", key=key)
        if str(device) in out:
            raise ConfigError(f"names CLS device {device!r} twice", key=key)
        out[str(device)] = ClsRoute(
            cls=str(device),
            emt=str(emt),
            host=parts.hostname,
            port=parts.port,
            server_name=str(table.get("server_name", "")),
        )
    return out


class HanListener(framed_tls.FramedTlsListener):
    """The HAN endpoint's listener: CLS devices get their channel, other roles the requests."""

    def __init__(self, listen: str, *, channel: Session, **options: Any) -> None:
        super().__init__(listen, **options)
        self._channel = channel

    async def _session(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: tls.Peer,
        where: str,
    ) -> None:
        if peer.role == cls.CLS_ROLE:
            await self._channel(reader, writer, peer, where)
        else:
            await super()._session(reader, writer, peer, where)


@dataclass(slots=True)
class Flow:
    """What went one way through a channel."""

    frames: int = 0
    bytes: int = 0
    last: float = 0.0


class ChannelFailedError(framed_tls.ConnectFailedError):
    """The EMT side of a channel could not be opened."""


class ClsProxy:
    """Open and relay the CLS channels of one gateway instance (the HAN instance)."""

    def __init__(
        self,
        cfg: GatewayConfig,
        inst: GatewayInstance,
        *,
        bus: framed_tls.Publisher,
        clock: Callable[[], float],
        log: Any,
        refused: Refused,
    ) -> None:
        self.inst = inst
        self.routes = parse_channels(cfg.cls_channels)
        self.bus = bus
        self.clock = clock
        self.log = log
        self.refused = refused
        self.max_frame = cfg.cls_max_frame
        self.idle_s = cfg.cls_idle_timeout_s
        self.io_timeout_s = cfg.wan_handshake_timeout_s
        if not 0 < self.max_frame <= cls.MAX_DATA:
            raise ConfigError(f"must be 1..{cls.MAX_DATA}", key="gateway.cls_max_frame")
        self.files = _tls_files(cfg) if self.routes else None
        self.counts: Counter[str] = Counter()
        self._ids = itertools.count(1)

    async def serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: tls.Peer,
        where: str,
    ) -> None:
        """Run one CLS device's session: its channel request, then the relay."""
        request = await self._first_request(reader, writer)
        if request is None:
            return
        try:
            route = self._route(request, peer)
        except ChannelRefusedError as exc:
            self.refused(request, peer, where, exc)
            await _reply(writer, framed_tls.error_reply(request.id, str(exc), exc.field))
            return
        channel = next(self._ids)
        try:
            emt_reader, emt_writer = await self._open(route, peer, channel)
        except ChannelFailedError as exc:
            self._failed(route, peer, exc)
            message = f"EMT {route.emt} not reachable ({exc.reason})"
            await _reply(writer, framed_tls.error_reply(request.id, message, "emt"))
            return
        try:
            result = {"emt": route.emt, "channel": channel}
            await _reply(writer, wan.Reply(id=request.id, ok=True, result=result))
            await self._relay(route, peer, channel, (reader, writer), (emt_reader, emt_writer))
        finally:
            await framed_tls.close(emt_writer)

    async def _first_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> wan.Request | None:
        try:
            header = await asyncio.wait_for(reader.readexactly(wan.HEADER), self.idle_s)
            body = await asyncio.wait_for(
                reader.readexactly(wan.frame_length(header)), self.io_timeout_s
            )
            return wan.decode_request(body)
        except (asyncio.IncompleteReadError, TimeoutError):
            return None  # the device left (or never spoke) before asking
        except wan.FrameError as exc:
            await _reply(writer, wan.Reply(id=0, ok=False, error=str(exc), field="frame"))
            return None

    def _route(self, request: wan.Request, peer: tls.Peer) -> ClsRoute:
        if request.op != cls.CHANNEL_OP:
            message = f"role CLS may only open its proxy channel, not {request.op!r}"
            raise ChannelRefusedError(message, field="role", reason="role")
        route = self.routes.get(peer.common_name)
        if route is None:
            message = f"no proxy channel is configured for {peer.common_name!r}"
            raise ChannelRefusedError(message, field="cls", reason="no_channel")
        asked = request.params.get("emt")
        if asked != route.emt:
            message = f"{str(asked)[:64]!r} is not this CLS device's EMT"
            raise ChannelRefusedError(message, field="emt", reason="wrong_target")
        return route

    async def _open(
        self, route: ClsRoute, peer: tls.Peer, channel: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await self._connect(route)
        hello = cls.open_message(
            cls=peer.common_name, serial=peer.serial, emt=route.emt, channel=channel
        )
        try:
            writer.write(encode_frame(hello))
            await asyncio.wait_for(writer.drain(), self.io_timeout_s)
            answer = await asyncio.wait_for(read_message(reader), self.io_timeout_s)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            await framed_tls.close(writer)
            raise ChannelFailedError("connection_lost", str(exc) or type(exc).__name__) from exc
        except ProtocolError as exc:
            await framed_tls.close(writer)
            raise ChannelFailedError("bad_reply", str(exc)) from exc
        if answer.get("type") != cls.ACCEPTED:
            await framed_tls.close(writer)
            reason = str(answer.get("reason", "bad_reply"))[:64]
            raise ChannelFailedError(reason, str(answer.get("detail", answer))[:300])
        return reader, writer

    async def _connect(self, route: ClsRoute) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        assert self.files is not None
        reader, writer, _ = await framed_tls.connect(
            route,
            framed_tls.files_context(self.files),
            timeout_s=self.io_timeout_s,
            role=EMT_ROLE,
            error=ChannelFailedError,
            limit=self.max_frame + cls.HEADER.size,
        )
        return reader, writer

    async def _relay(
        self,
        route: ClsRoute,
        peer: tls.Peer,
        channel: int,
        device: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        emt: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        up, down = Flow(last=time.monotonic()), Flow(last=time.monotonic())
        body = {"gateway": self.inst.name, "channel": channel, "cls": peer.common_name}
        body["emt"] = route.emt
        self._event(topics.GATEWAY_CLS_CHANNEL_OPENED, "cls_channel_opened", body)
        self.counts["channels"] += 1
        pumps = {
            asyncio.create_task(self._pump(device[0], emt[1], up, down, "cls")),
            asyncio.create_task(self._pump(emt[0], device[1], down, up, "emt")),
        }
        try:
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            reason = next(iter(done)).result()
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
        counts = {"frames_up": up.frames, "bytes_up": up.bytes}
        counts |= {"frames_down": down.frames, "bytes_down": down.bytes}
        self._event(
            topics.GATEWAY_CLS_CHANNEL_CLOSED,
            "cls_channel_closed",
            {**body, **counts, "reason": reason},
        )

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        flow: Flow,
        other: Flow,
        side: str,
    ) -> str:
        """Forward frames from one side to the other; return why it stopped."""
        while True:
            try:
                header = await asyncio.wait_for(reader.readexactly(cls.HEADER.size), self.idle_s)
            except TimeoutError:
                if time.monotonic() - max(flow.last, other.last) < self.idle_s:
                    continue  # the other direction is busy: the channel is not idle
                return "idle_timeout"
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                return f"{side}_closed"
            try:
                size = cls.data_length(header, self.max_frame)
                payload = await asyncio.wait_for(reader.readexactly(size), self.io_timeout_s)
                writer.write(header + payload)
                await asyncio.wait_for(writer.drain(), self.io_timeout_s)
            except ProtocolError:
                return f"{side}_frame_too_large"
            except TimeoutError:
                return f"{side}_stalled"  # inside a frame, or the receiver does not read
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                return f"{side}_closed"
            flow.frames += 1
            flow.bytes += size
            flow.last = time.monotonic()

    def _event(self, topic: str, kind: str, body: dict[str, Any]) -> None:
        now = self.clock()
        self.log.info(kind, **body)
        self.bus.publish(topic, {**body, "t_sim": now})
        self.inst.logs.system.append(kind, body, t_sim=now)

    def _failed(self, route: ClsRoute, peer: tls.Peer, exc: ChannelFailedError) -> None:
        self.counts["failed"] += 1
        body = {
            "gateway": self.inst.name,
            "cls": peer.common_name,
            "emt": route.emt,
            "reason": exc.reason,
            "detail": exc.detail[:300],
        }
        self.log.warning("cls_channel_failed", **body)
        self.bus.publish(topics.GATEWAY_CLS_CHANNEL_FAILED, {**body, "t_sim": self.clock()})
        self.inst.logs.system.append("cls_channel_failed", body, t_sim=self.clock())


def _tls_files(cfg: GatewayConfig) -> tls.TlsFiles:
    if not (cfg.wan_cert and cfg.wan_key and cfg.wan_trust):
        raise ConfigError(
            "cls_channels need wan_cert, wan_key and wan_trust (the gateway's TLS identity)",
            key="gateway",
        )
    return framed_tls.wan_client_files(cfg)


async def _reply(writer: asyncio.StreamWriter, reply: wan.Reply) -> None:
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        writer.write(framed_tls.encode_reply(reply))
        await writer.drain()
