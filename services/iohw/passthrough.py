"""A relay in a wired M-Bus TCP line: the board as a TCP pass-through.

The gateway's M-Bus master connects to the board's ``listen`` address; for
each such connection the board opens one to ``target`` (the sensor farm's
transparent M-Bus/TCP server) and copies bytes both ways. While the relay is
open both directions are cut as a 2-wire bus is: bytes are read and dropped,
connections stay up and see silence, nothing is delivered late when the relay
closes again. A closed relay passes bytes unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services._runtime.logging import get_logger

READ_CHUNK = 4096
CONNECT_TIMEOUT_S = 3.0
_LINGER_0 = struct.pack("ii", 1, 0)


@dataclass(slots=True)
class LineCounters:
    """Totals of one line since start."""

    connections: int = 0
    upstream_failures: int = 0
    bytes_passed: int = 0
    bytes_cut: int = 0


class LinePassThrough:
    """Listen on ``listen`` and relay to ``target`` while ``closed()`` says the relay is closed.

    Args:
        name: the wiring entry's name (for logs).
        listen: (host, port) to listen on; port 0 picks a free one (see :attr:`port`).
        target: (host, port) of the M-Bus TCP server behind the relay.
        closed: returns the relay position at the moment bytes arrive.
    """

    def __init__(
        self,
        name: str,
        *,
        listen: tuple[str, int],
        target: tuple[str, int],
        closed: Callable[[], bool],
    ) -> None:
        self.name = name
        self.listen = listen
        self.target = target
        self._closed = closed
        self.counters = LineCounters()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._log = get_logger(component="line", line=name)

    @property
    def port(self) -> int:
        """Return the port listened on (valid after :meth:`start`)."""
        return self.listen[1]

    async def start(self) -> None:
        """Start listening.

        Raises:
            ConfigError: the listen address cannot be bound.
        """
        host, port = self.listen
        try:
            self._server = await asyncio.start_server(self._accept, host, port)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
        self.listen = (host, self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and drop every connection (linger 0)."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            _close_now(writer)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counters.connections += 1
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.target), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError) as exc:
            self.counters.upstream_failures += 1
            self._log.warning("line_target_unreachable", target=self.target, error=str(exc))
            self._writers.discard(writer)
            _close_now(writer)
            return
        self._writers.add(up_writer)
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        try:
            # either side hanging up ends the pair: a master reconnects through the board
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._tasks.difference_update(pumps)
            for w in (writer, up_writer):
                self._writers.discard(w)
                _close_now(w)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await src.read(READ_CHUNK):
                if not self._closed():
                    self.counters.bytes_cut += len(data)
                    continue
                self.counters.bytes_passed += len(data)
                dst.write(data)
                await dst.drain()


def _close_now(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
    writer.close()
