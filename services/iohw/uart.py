"""UART and RS-485 ports at transaction level, through pyserial.

A port is opened with ``serial.serial_for_url``, so a device path (a real
port or a pty, ``/dev/pts/N``) and ``socket://HOST:PORT`` both work. One
transaction writes a request and reads the answer: up to ``timeout_s`` for
its first byte, then until the line stays quiet for ``inter_char_s`` or
``read_max`` bytes came. RS-485 is half-duplex: before a transaction the
input is discarded (what other talkers left), and with ``echo`` the
transceiver's copy of the request is taken off the answer. Transactions on
one port run one after another; pyserial blocks, so they run in a thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import serial
from smtestbed.services._runtime.errors import ConfigError, PeerError, RequestError
from smtestbed.services.iohw.devices import hex_bytes

MODES = ("uart", "rs485")
PARITIES = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}
MAX_READ = 4096
MAX_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class PortConfig:
    """One validated ``uarts`` table."""

    port: str
    url: str
    baudrate: int = 9600
    parity: str = "N"
    mode: str = "uart"
    inter_char_s: float = 0.02
    echo: bool = False


def parse_ports(tables: Sequence[Any]) -> list[PortConfig]:
    """Validate the ``uarts`` tables; errors name ``iohw.uarts[i].<key>``."""
    out: list[PortConfig] = []
    for i, table in enumerate(tables):
        where = f"iohw.uarts[{i}]"
        if not isinstance(table, Mapping):
            raise ConfigError("must be a table", key=where)
        unknown = set(table) - {f for f in PortConfig.__slots__}
        if unknown:
            raise ConfigError("unknown key", key=f"{where}.{sorted(unknown)[0]}")
        for key in ("port", "url"):
            if not isinstance(table.get(key), str) or not table[key]:
                raise ConfigError("must be a non-empty string", key=f"{where}.{key}")
        if table["port"] in (p.port for p in out):
            raise ConfigError(f"{table['port']!r} is used twice", key=f"{where}.port")
        baud = table.get("baudrate", 9600)
        if isinstance(baud, bool) or not isinstance(baud, int) or not 50 <= baud <= 4_000_000:
            raise ConfigError(f"must be 50..4000000, got {baud!r}", key=f"{where}.baudrate")
        if table.get("parity", "N") not in PARITIES:
            raise ConfigError(f"must be one of {', '.join(PARITIES)}", key=f"{where}.parity")
        if table.get("mode", "uart") not in MODES:
            raise ConfigError(f"must be one of {', '.join(MODES)}", key=f"{where}.mode")
        gap = table.get("inter_char_s", 0.02)
        if isinstance(gap, bool) or not isinstance(gap, int | float) or not 0 < gap <= 1:
            raise ConfigError(f"must be 0..1 s, got {gap!r}", key=f"{where}.inter_char_s")
        if not isinstance(table.get("echo", False), bool):
            raise ConfigError("must be true or false", key=f"{where}.echo")
        out.append(PortConfig(**{**table, "inter_char_s": float(gap)}))
    return out


class UartPort:
    """One port, opened on first use and reopened after an error."""

    def __init__(self, config: PortConfig) -> None:
        self.config = config
        self._serial: Any = None
        self._lock = asyncio.Lock()
        self.transactions = 0
        self.timeouts = 0

    async def transaction(self, p: Mapping[str, Any]) -> dict[str, Any]:
        """``iohw.uart`` {port, data, read_max, timeout_s}: write, then read the answer."""
        data = hex_bytes(p, "data", max_len=MAX_READ)
        read_max = p.get("read_max", 256)
        if (
            isinstance(read_max, bool)
            or not isinstance(read_max, int)
            or not 0 <= read_max <= MAX_READ
        ):
            raise RequestError(
                f"must be an integer 0..{MAX_READ}, got {read_max!r}", field="read_max"
            )
        timeout = p.get("timeout_s", 1.0)
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout <= MAX_TIMEOUT_S
        ):
            raise RequestError(
                f"must be 0..{MAX_TIMEOUT_S:g} s, got {timeout!r}", field="timeout_s"
            )
        async with self._lock:
            answer = await asyncio.to_thread(self._run, data, read_max, float(timeout))
        self.transactions += 1
        if not answer:
            self.timeouts += 1
        return {
            "port": self.config.port,
            "sent": len(data),
            "data": answer.hex(),
            "bytes": len(answer),
            "timed_out": not answer and read_max > 0,
        }

    def _open(self) -> Any:
        if self._serial is None:
            c = self.config
            try:
                self._serial = serial.serial_for_url(
                    c.url, baudrate=c.baudrate, parity=PARITIES[c.parity], timeout=1.0
                )
            except (serial.SerialException, ValueError) as exc:
                hint = " (ptys refuse parity: use parity N)" if c.parity != "N" else ""
                raise PeerError(f"port {c.port}: cannot open {c.url}: {exc}{hint}") from exc
        return self._serial

    def _run(self, data: bytes, read_max: int, timeout: float) -> bytes:
        ser = self._open()
        echo = len(data) if self.config.echo else 0
        try:
            if self.config.mode == "rs485":
                ser.reset_input_buffer()
            ser.write(data)
            ser.flush()
            answer = self._read(ser, read_max + echo, timeout)
        except (serial.SerialException, OSError) as exc:
            self.close()
            raise PeerError(f"port {self.config.port}: {exc}") from exc
        if echo and answer[:echo] == data:
            answer = answer[echo:]
        return answer[:read_max]

    def _read(self, ser: Any, read_max: int, timeout: float) -> bytes:
        if read_max == 0:
            return b""
        ser.timeout = timeout
        out = bytearray(ser.read(1))
        ser.timeout = self.config.inter_char_s
        deadline = time.monotonic() + timeout
        while out and len(out) < read_max and time.monotonic() < deadline:
            chunk = ser.read(read_max - len(out))
            if not chunk:
                break  # the line stayed quiet for one inter-character gap: the answer is over
            out += chunk
        return bytes(out)

    def close(self) -> None:
        """Close the port (reopened on the next transaction)."""
        if self._serial is not None:
            self._serial.close()
            self._serial = None
