"""``smtb iohw serve-serial``: the simulated board speaking the line protocol on a pty.

Creates a pseudo-terminal (raw, 8N1), prints ``serving the simulated board on
/dev/pts/N`` and answers :mod:`lineproto` requests until SIGTERM or Ctrl-C, so
the service's serial backend (or any terminal program) can drive it as it
would a real board.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tty

import click
from smtestbed.services._runtime.commands import TestbedCommand
from smtestbed.services._runtime.errors import ConfigError, TestbedError
from smtestbed.services.iohw.board import SimBoard
from smtestbed.services.iohw.lineproto import MAX_LINE, answer


class LineServer:
    """Answer request lines arriving on ``fd`` from ``board``."""

    def __init__(self, board: SimBoard, fd: int) -> None:
        self.board = board
        self.fd = fd
        self._pending = bytearray()

    def on_readable(self) -> None:
        """Read what arrived; answer every complete line."""
        try:
            self._pending += os.read(self.fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # EIO while nobody holds the other end
        while b"\n" in self._pending:
            line, _, rest = bytes(self._pending).partition(b"\n")
            self._pending = bytearray(rest)
            reply = answer(self.board, line.decode("ascii", errors="replace"))
            os.write(self.fd, reply.encode("ascii", errors="replace") + b"\n")
        if len(self._pending) > MAX_LINE:  # no line end in sight: drop it, as a UART buffer would
            self._pending.clear()
            os.write(self.fd, b"ERR line too long\n")


def _inputs(values: tuple[str, ...]) -> dict[int, float]:
    out: dict[int, float] = {}
    for item in values:
        channel, sep, volts = item.partition("=")
        try:
            out[int(channel)] = float(volts)
        except ValueError:
            raise ConfigError(f"must be CHANNEL=VOLTS, got {item!r}", key="--adc") from None
        if not sep:
            raise ConfigError(f"must be CHANNEL=VOLTS, got {item!r}", key="--adc")
    return out


async def _serve(board: SimBoard) -> None:
    ours, theirs = os.openpty()
    tty.setraw(theirs)
    os.set_blocking(ours, False)
    loop = asyncio.get_running_loop()
    server = LineServer(board, ours)
    loop.add_reader(ours, server.on_readable)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    click.echo(f"serving the simulated board on {os.ttyname(theirs)}")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        loop.remove_reader(ours)
        os.close(ours)
        os.close(theirs)


@click.command("serve-serial", cls=TestbedCommand)
@click.option("--adc", multiple=True, metavar="CHANNEL=VOLTS", help="voltage at an ADC input")
def serve_serial(adc: tuple[str, ...]) -> None:
    """Serve the simulated board's line protocol on a new pseudo-terminal."""
    board = SimBoard()
    for channel, volts in _inputs(adc).items():
        try:
            board.drive_input(channel, volts)
        except TestbedError as exc:
            raise ConfigError(str(exc), key="--adc") from exc
    asyncio.run(_serve(board))
