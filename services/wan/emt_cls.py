"""The EMT's side of CLS proxy channels: a CLS device it controls, reached through a gateway.

A gateway opens a channel on the EMT's usual TLS endpoint (only peers with the
gateway role get past the handshake, so a CLS device can never connect here
itself) and announces the device in its first message (``cls.open``,
:mod:`smtestbed.proto.cls`). The EMT accepts and from then on exchanges data
frames with the device:

- each frame from the device is an ``emt.cls_received`` event
  (``{emt, gateway, cls, channel, data_hex, size}``);
- the ``emt.cls_send`` request (``{cls, data_hex}``) sends one frame to the
  device on its open channel (a switching command, say);
- ``emt.cls_channel_opened`` / ``emt.cls_channel_closed`` (with the frames and
  bytes each way) frame the channel's life.

A second channel for a device that already has one replaces the old one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from smtestbed.proto import cls, topics
from smtestbed.proto.delivery import encode_frame, read_message
from smtestbed.proto.envelope import Envelope
from smtestbed.services._runtime import tls
from smtestbed.services._runtime.errors import ProtocolError, RequestError
from smtestbed.services.wan.gateway_server import GatewayServer

__all__ = ["ClsChannels", "EmtServer"]


@dataclass(slots=True)
class _Channel:
    gateway: str
    channel: int
    writer: asyncio.StreamWriter
    frames_in: int = 0
    bytes_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0


class ClsChannels:
    """The CLS channels open at one EMT."""

    def __init__(self, emt: str, *, publish: Callable[[str, Any], Any], log: Any) -> None:
        self.emt = emt
        self.publish = publish
        self.log = log
        self.open: dict[str, _Channel] = {}
        self.counts: Counter[str] = Counter()

    async def serve(
        self,
        hello: dict[str, Any],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: tls.Peer,
    ) -> None:
        """Accept the announced channel and receive its frames until the gateway closes it."""
        device, channel = hello.get("cls"), hello.get("channel")
        if hello.get("version") != cls.VERSION or not isinstance(device, str) or not device:
            writer.write(encode_frame(cls.refused("malformed", "cls.open needs version 1, cls")))
            await writer.drain()
            return
        number = channel if isinstance(channel, int) and not isinstance(channel, bool) else 0
        writer.write(encode_frame(cls.accepted()))
        await writer.drain()
        state = _Channel(gateway=peer.common_name, channel=number, writer=writer)
        old = self.open.pop(device, None)
        if old is not None:
            old.writer.close()
        self.open[device] = state
        self.counts["channels"] += 1
        body = {"emt": self.emt, "gateway": peer.common_name, "cls": device, "channel": number}
        self.log.info("cls_channel_opened", **body)
        self.publish(topics.EMT_CLS_CHANNEL_OPENED, body)
        try:
            reason = await self._receive(reader, state, body)
        finally:
            if self.open.get(device) is state:
                del self.open[device]
        counts = {"frames_in": state.frames_in, "bytes_in": state.bytes_in}
        counts |= {"frames_out": state.frames_out, "bytes_out": state.bytes_out}
        self.log.info("cls_channel_closed", **body, **counts, reason=reason)
        self.publish(topics.EMT_CLS_CHANNEL_CLOSED, {**body, **counts, "reason": reason})

    async def _receive(
        self, reader: asyncio.StreamReader, state: _Channel, body: dict[str, Any]
    ) -> str:
        while True:
            try:
                data = await cls.read_data(reader)
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                return "closed"
            except ProtocolError as exc:
                self.log.warning("cls_frame_refused", **body, error=str(exc))
                return "bad_frame"
            state.frames_in += 1
            state.bytes_in += len(data)
            self.publish(
                topics.EMT_CLS_RECEIVED, {**body, "data_hex": data.hex(), "size": len(data)}
            )

    async def send(self, params: Any, env: Envelope) -> Any:
        """Answer ``emt.cls_send``: write one frame to a device's open channel."""
        p = params if isinstance(params, dict) else {}
        device = p.get("cls")
        if not isinstance(device, str) or device not in self.open:
            raise RequestError(f"no open channel for CLS device {str(device)[:64]!r}", field="cls")
        try:
            data = bytes.fromhex(str(p.get("data_hex", "")))
            frame = cls.encode_data(data)
        except (ValueError, ProtocolError) as exc:
            message = f"must be 1 to {cls.MAX_DATA} bytes as hex: {exc}"
            raise RequestError(message, field="data_hex") from exc
        state = self.open[device]
        state.writer.write(frame)
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await asyncio.wait_for(state.writer.drain(), 10.0)
        state.frames_out += 1
        state.bytes_out += len(data)
        return {"cls": device, "gateway": state.gateway, "sent": len(data)}


class EmtServer(GatewayServer):
    """The EMT's endpoint for gateways: TAF deliveries, and CLS channels opened by ``cls.open``."""

    def __init__(self, listen: str, *, channels: ClsChannels, **options: Any) -> None:
        super().__init__(listen, **options)
        self.channels = channels

    async def _session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: tls.Peer
    ) -> None:
        try:
            first = await asyncio.wait_for(read_message(reader), self._idle_timeout)
        except asyncio.IncompleteReadError:
            return  # the gateway closed the connection without a message
        except ProtocolError as exc:
            writer.write(encode_frame(self._malformed(exc, peer)))
            await writer.drain()
            return
        if first.get("type") == cls.OPEN:
            await self.channels.serve(first, reader, writer, peer)
            return
        writer.write(encode_frame(await self._handle(first, peer)))
        await asyncio.wait_for(writer.drain(), self._idle_timeout)
        await super()._session(reader, writer, peer)
