"""Put an M-Bus line where outside masters can reach it: TCP and pseudo-terminals.

- TCP ("transparent M-Bus/TCP", as libmbus's and pyMeterBus's TCP masters
  expect): plain EN 13757-2 frames on the stream, no extra header. Each
  connection has its own frame assembler; all connections share the line.
- Pseudo-terminal: a pty whose slave side (``/dev/pts/N``) an outside master
  opens like a serial port. Linux ptys refuse parity, so the port is set to
  8N1 raw (real M-Bus serial ports use 8E1); the baud rate is only recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import termios
import tty
from types import TracebackType

from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.sensorfarm.mbus_line import FrameAssembler, MbusLine

READ_CHUNK = 4096
_LINGER_0 = struct.pack("ii", 1, 0)


class MbusTcpServer:
    """Serve a line over TCP until closed.

    Args:
        line: the line the connections talk to.
        host: address to listen on.
        port: TCP port (0 = pick a free one; see :attr:`port`).
    """

    def __init__(self, line: MbusLine, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._line = line
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        """Return the port listened on (valid after :meth:`start`)."""
        return self._port

    @property
    def url(self) -> str:
        """Return ``socket://HOST:PORT``, what pyserial's ``serial_for_url`` takes."""
        return f"socket://{self._host}:{self._port}"

    async def start(self) -> None:
        """Start listening.

        Raises:
            ConfigError: the address cannot be bound.
        """
        try:
            self._server = await asyncio.start_server(self._serve, self._host, self._port)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {self._host}:{self._port}: {exc.strerror}"
            ) from exc
        self._port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and drop every connection (linger 0)."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            _close_now(writer)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> MbusTcpServer:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assembler = self._line.assembler()
        self._writers.add(writer)
        try:
            while data := await reader.read(READ_CHUNK):
                reply = self._line.feed(data, assembler)
                if reply:
                    writer.write(reply)
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            _close_now(writer)


def _close_now(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
    writer.close()


class MbusPtyPort:
    """Serve a line on a new pseudo-terminal, 8N1 raw.

    Args:
        line: the line behind the port.
        baudrate: speed recorded in the terminal settings (ptys ignore it).
    """

    def __init__(self, line: MbusLine, *, baudrate: int = 2400) -> None:
        speed = getattr(termios, f"B{baudrate}", None)
        if not isinstance(speed, int):
            raise ConfigError(f"unsupported baud rate {baudrate}", key="baudrate")
        self._line = line
        self._speed = speed
        self._assembler: FrameAssembler = line.assembler()
        self._fds: tuple[int, int] | None = None
        self._path = ""
        self.bytes_lost = 0

    @property
    def path(self) -> str:
        """Return the device an outside master opens (``/dev/pts/N``)."""
        return self._path

    def open(self) -> str:
        """Create the pty and serve it from the running event loop; return its path."""
        ours, theirs = os.openpty()
        self._fds = (ours, theirs)
        _set_8n1_raw(theirs, self._speed)
        os.set_blocking(ours, False)
        self._path = os.ttyname(theirs)
        asyncio.get_running_loop().add_reader(ours, self._on_readable, ours)
        return self._path

    def close(self) -> None:
        """Stop serving and close both ends of the pty."""
        if self._fds is None:
            return
        asyncio.get_running_loop().remove_reader(self._fds[0])
        for fd in self._fds:
            os.close(fd)
        self._fds = None

    def __enter__(self) -> MbusPtyPort:
        self.open()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _on_readable(self, fd: int) -> None:
        try:
            data = os.read(fd, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            # EIO while nobody holds the other end; we keep it open, so rare.
            return
        reply = self._line.feed(data, self._assembler)
        if reply:
            self._write(fd, reply)

    def _write(self, fd: int, reply: bytes) -> None:
        try:
            written = os.write(fd, reply)
        except BlockingIOError:
            written = 0
        # A full pty buffer means the master is not reading: the bytes are lost as on a bus.
        self.bytes_lost += len(reply) - written


def _set_8n1_raw(fd: int, speed: int) -> None:
    """Set a terminal to raw 8 data bits, no parity, 1 stop bit at ``speed``."""
    tty.setraw(fd)
    attrs = termios.tcgetattr(fd)
    attrs[2] = (attrs[2] & ~(termios.PARENB | termios.CSTOPB | termios.CSIZE)) | (
        termios.CS8 | termios.CREAD | termios.CLOCAL
    )
    attrs[4] = attrs[5] = speed
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
