"""Byte links of the wired LMN drivers: a TCP stream or a serial port / pty, read by asyncio.

A link delivers whatever bytes arrive into its :class:`Inbox`; the drivers cut frames out
of them. URLs: ``tcp://HOST:PORT`` (transparent M-Bus/TCP: plain EN 13757-2 bytes on the
stream) or a device path (``/dev/ttyUSB0``, ``/dev/pts/N``), opened raw with termios, 8 data
bits, 1 stop bit and even (``E``, the M-Bus default) or no (``N``) parity. Linux ptys refuse
parity, so a pty must be opened with ``parity="N"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import termios
import tty
from collections.abc import Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

from smtestbed.services._runtime.errors import ConfigError

READ_CHUNK = 4096
PARITIES = ("E", "N")
_LINGER_0 = struct.pack("ii", 1, 0)


class Inbox:
    """Bytes received and not yet taken, with a wake-up for the reader."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._arrived = asyncio.Event()
        self.closed = False

    def put(self, data: bytes) -> None:
        """Add received bytes."""
        self._data += data
        self._arrived.set()

    def end(self) -> None:
        """Mark the link as gone; readers get :class:`ConnectionError` once it is empty."""
        self.closed = True
        self._arrived.set()

    def clear(self) -> int:
        """Drop the bytes not taken yet (a late reply); return how many."""
        dropped = len(self._data)
        self._data.clear()
        self._arrived.clear()
        return dropped

    async def take(self, timeout: float) -> bytes:
        """Return the bytes received so far, waiting up to ``timeout`` s for some (b"": none).

        Raises:
            ConnectionError: the link is gone and nothing is left.
        """
        if not self._data and not self.closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(timeout, 0.0)):
                    await self._arrived.wait()
        if not self._data and self.closed:
            raise ConnectionError("link closed")
        out = bytes(self._data)
        self.clear()
        return out


class Link(Protocol):
    """A byte stream to a wired LMN: write bytes, find the received ones in ``inbox``."""

    inbox: Inbox

    async def write(self, data: bytes) -> None:
        """Send bytes."""

    async def close(self) -> None:
        """Close the link."""


class TcpLink:
    """A TCP connection whose received bytes go to its inbox."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.inbox = Inbox()
        self._writer = writer
        self._task = asyncio.create_task(self._pump(reader))

    @classmethod
    async def connect(cls, host: str, port: int) -> TcpLink:
        """Connect to ``host:port``."""
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def _pump(self, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(READ_CHUNK):
                self.inbox.put(data)
        except ConnectionError:
            pass
        finally:
            self.inbox.end()

    async def write(self, data: bytes) -> None:
        """Send bytes and wait until the socket took them."""
        self._writer.write(data)
        await self._writer.drain()

    async def close(self) -> None:
        """Stop reading and close the socket with linger 0."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
        self._writer.close()


class SerialLink:
    """A serial port or pty, raw 8 data bits, read from the running event loop."""

    def __init__(self, path: str, *, baudrate: int = 2400, parity: str = "E") -> None:
        speed = getattr(termios, f"B{baudrate}", None)
        if not isinstance(speed, int):
            raise ConfigError(f"unsupported baud rate {baudrate}", key="baudrate")
        if parity not in PARITIES:
            raise ConfigError(f"parity must be one of {PARITIES}, got {parity!r}", key="parity")
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as exc:
            raise ConfigError(f"cannot open {path}: {exc.strerror}", key="url") from exc
        try:
            _set_raw(self._fd, speed, even=parity == "E")
        except termios.error as exc:
            os.close(self._fd)
            hint = " (ptys take no parity: use parity N)" if parity == "E" else ""
            raise ConfigError(f"cannot set up {path}: {exc}{hint}", key="parity") from exc
        self.inbox = Inbox()
        asyncio.get_running_loop().add_reader(self._fd, self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            self.inbox.put(data)
        else:  # the other end closed (EIO on a pty): nothing more will come
            asyncio.get_running_loop().remove_reader(self._fd)
            self.inbox.end()

    async def write(self, data: bytes) -> None:
        """Send bytes, waiting while the port's output buffer is full."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:
                await asyncio.sleep(0.005)

    async def close(self) -> None:
        """Stop reading and close the port."""
        if self._fd < 0:
            return
        asyncio.get_running_loop().remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1


def _set_raw(fd: int, speed: int, *, even: bool) -> None:
    """Set a terminal to raw 8 data bits, 1 stop bit, even or no parity, at ``speed``."""
    tty.setraw(fd)
    attrs = termios.tcgetattr(fd)
    cflag = attrs[2] & ~(termios.PARENB | termios.PARODD | termios.CSTOPB | termios.CSIZE)
    attrs[2] = cflag | termios.CS8 | termios.CREAD | termios.CLOCAL
    if even:
        attrs[2] |= termios.PARENB
    attrs[4] = attrs[5] = speed
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
    if even and not termios.tcgetattr(fd)[2] & termios.PARENB:
        raise termios.error(22, "the device dropped the parity setting")


def check_link_table(
    table: Mapping[str, Any], instances: Sequence[str], where: str, *, parity: str
) -> None:
    """Check the ``instance``, ``url`` and ``parity`` of an input or line table.

    Args:
        table: one ``serial_inputs`` or ``wired_lines`` table.
        instances: the names of the configured instances.
        where: the table's key (``gateway.wired_lines[0]``).
        parity: the parity when the table gives none.

    Raises:
        ConfigError: naming the key at fault.
    """
    if table.get("instance") not in instances:
        raise ConfigError(f"no instance {table.get('instance')!r}", key=f"{where}.instance")
    if not isinstance(table.get("url"), str) or not table["url"]:
        raise ConfigError("must be tcp://HOST:PORT or a device path", key=f"{where}.url")
    if table.get("parity", parity) not in PARITIES:
        raise ConfigError(f"must be one of {PARITIES}", key=f"{where}.parity")


async def open_link(url: str, *, baudrate: int = 2400, parity: str = "E") -> Link:
    """Open ``tcp://HOST:PORT`` or a device path.

    Raises:
        ConfigError: a bad URL, a device that cannot be opened or set up.
        OSError: the TCP peer cannot be reached (the caller retries).
    """
    if url.startswith("tcp://"):
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise ConfigError(f"{url!r} is not tcp://HOST:PORT", key="url")
        return await TcpLink.connect(parts.hostname, parts.port)
    if not url.startswith("/"):
        raise ConfigError(f"{url!r} is neither tcp://HOST:PORT nor a device path", key="url")
    return SerialLink(url, baudrate=baudrate, parity=parity)
