"""The I/O board service: relays, DAC/ADC channels and wired buses on the bus.

It answers ``iohw.*`` requests, publishes ``iohw.changed`` for every relay and
DAC change (old and new value) and ``iohw.request_refused`` for a request it
refused (the error names the field). Relays sitting in wired M-Bus lines run
as TCP pass-throughs in this process. At start the wiring's effects on the
sensor farm are brought in line with the initial positions (power relays
open, DAC loads), retried until ``request_timeout_s`` runs out per attempt;
relay, DIO and DAC requests wait until that sync has ended, so that it never
overwrites a change made meanwhile.
It is not part of the gateway: it has no partitions.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from smtestbed.proto import topics
from smtestbed.proto.envelope import Envelope
from smtestbed.services._runtime.errors import ConfigError, RequestError, TestbedError
from smtestbed.services._runtime.lifecycle import Ready, Service
from smtestbed.services.iohw.backend import Backend, SimBackend
from smtestbed.services.iohw.board import Converter, SimBoard
from smtestbed.services.iohw.config import IohwConfig
from smtestbed.services.iohw.devices import I2cBus, SpiBus, build, parse_devices
from smtestbed.services.iohw.lineproto import SerialBackend
from smtestbed.services.iohw.panel import Panel, params_map
from smtestbed.services.iohw.passthrough import LinePassThrough
from smtestbed.services.iohw.uart import UartPort, parse_ports
from smtestbed.services.iohw.wiring import Wiring, parse_wiring

Action = Callable[[Any, str], Awaitable[dict[str, Any]]]
SYNC_ATTEMPTS = 20
SYNC_PAUSE_S = 0.5


def converters(cfg: IohwConfig) -> tuple[Converter, Converter]:
    """Return the (DAC, ADC) converters of the settings; ConfigError names the key."""
    out = []
    for prefix in ("dac", "adc"):
        try:
            out.append(
                Converter(
                    min_v=getattr(cfg, f"{prefix}_min_v"),
                    max_v=getattr(cfg, f"{prefix}_max_v"),
                    bits=getattr(cfg, f"{prefix}_bits"),
                )
            )
        except ConfigError as exc:
            raise ConfigError(str(exc), key=f"iohw.{prefix}_{exc.key}") from exc
    return out[0], out[1]


class Iohw(Service):
    """The manipulation board of the test lab."""

    service: ClassVar[str] = "iohw"
    config_class: ClassVar[type[IohwConfig]] = IohwConfig

    def __init__(self, config: IohwConfig) -> None:
        super().__init__(config)
        self.cfg = config
        self.dac, self.adc = converters(config)
        self.wiring: Wiring = parse_wiring(
            config.wiring, dac_range=(self.dac.min_v, self.dac.max_v)
        )
        if config.backend == "serial" and not config.serial_url:
            raise ConfigError("backend serial needs serial_url", key="iohw.serial_url")
        if not config.request_timeout_s > 0:
            raise ConfigError("must be > 0", key="iohw.request_timeout_s")
        self.lines: list[LinePassThrough] = []
        self.uarts = {c.port: UartPort(c) for c in parse_ports(config.uarts)}
        self.i2c = I2cBus(
            {d.where: build(d, self._meter_state) for d in parse_devices(config.i2c, "i2c")}
        )
        self.spi = SpiBus(
            {d.where: build(d, self._meter_state) for d in parse_devices(config.spi, "spi")}
        )
        self.panel: Panel | None = None
        self._synced = asyncio.Event()
        self.refused = 0
        self.changes = 0

    async def run(self, ready: Ready) -> None:
        """Open the board, start the lines, answer requests until cancelled."""
        backend = await self._open_backend()
        try:
            panel = self.panel = Panel(
                backend, self.wiring, meters=self._meter_request, on_change=self._changed
            )
            await panel.load_positions()
            await self._start_lines(panel)
            self._register(panel)
            await self.bus.publisher.wait_connected(2.0)
            ready.set()
            try:
                await self._sync_wiring(panel)
            finally:
                self._synced.set()
            await asyncio.Event().wait()
        finally:
            for line in self.lines:
                await line.close()
            for port in self.uarts.values():
                port.close()
            await backend.close()

    async def _open_backend(self) -> Backend:
        initial = {w.relay: w.closed for w in self.wiring.relays}
        if self.cfg.backend == "serial":
            return await self._open_serial(initial)
        board = SimBoard(dac=self.dac, adc=self.adc, relays=initial)
        for wire in self.wiring.loads:
            board.set_dac(wire.dac, wire.volts)
        return SimBackend(board)

    async def _open_serial(self, initial: dict[int, bool]) -> Backend:
        board = SerialBackend(
            self.cfg.serial_url, baudrate=self.cfg.serial_baudrate, dac=self.dac, adc=self.adc
        )
        try:
            self.log.info("board_opened", board=await board.identify(), url=self.cfg.serial_url)
            for relay, closed in initial.items():
                await board.set_relay(relay, closed)
            for wire in self.wiring.loads:
                await board.set_dac(wire.dac, wire.volts)
        except BaseException:
            await board.close()
            raise
        return board

    async def _start_lines(self, panel: Panel) -> None:
        for wire in self.wiring.lines():
            assert wire.listen is not None
            assert wire.target is not None
            line = LinePassThrough(
                wire.name,
                listen=wire.listen,
                target=wire.target,
                closed=panel.is_closed(wire.relay),
            )
            await line.start()
            self.lines.append(line)
            self.log.info("line_serving", line=wire.name, listen=line.listen, target=wire.target)

    def _register(self, panel: Panel) -> None:
        actions: dict[str, Action] = {
            topics.IOHW_RELAY: self._after_sync(panel.relay),
            topics.IOHW_DIO: self._after_sync(panel.dio),
            topics.IOHW_DAC: self._after_sync(panel.dac),
            topics.IOHW_ADC: panel.adc,
            topics.IOHW_STATUS: self._status,
            topics.IOHW_UART: self._uart,
            topics.IOHW_I2C_READ: lambda p, by: self.i2c.read(params_map(p)),
            topics.IOHW_I2C_WRITE: lambda p, by: self.i2c.write(params_map(p)),
            topics.IOHW_SPI_TRANSFER: lambda p, by: self.spi.transfer(params_map(p)),
        }
        for method, action in actions.items():
            self.bus.handle(method, self._handler(method, action))

    def _after_sync(self, action: Action) -> Action:
        async def act(params: Any, by: str) -> dict[str, Any]:
            # The start's wiring sync sends the initial relay positions and DAC loads to the
            # farm: a change made before it ended would be overwritten by them.
            await self._synced.wait()
            return await action(params, by)

        return act

    def _handler(self, method: str, action: Action) -> Any:
        async def handle(params: Any, env: Envelope) -> dict[str, Any]:
            try:
                return await action(params, env.src)
            except TestbedError as exc:
                self.refused += 1
                field = getattr(exc, "field", "")
                self.log.warning("request_refused", method=method, by=env.src, error=str(exc))
                self.bus.publish(
                    topics.IOHW_REQUEST_REFUSED,
                    {"method": method, "by": env.src, "field": field, "error": str(exc)},
                )
                raise

        return handle

    async def _meter_request(self, method: str, params: dict[str, Any]) -> Any:
        return await self.bus.request(
            self.cfg.sensorfarm, method, params, timeout=self.cfg.request_timeout_s
        )

    async def _meter_state(self, meter: str) -> Any:
        return await self._meter_request(topics.METER_GET, {"meter": meter})

    async def _uart(self, params: Any, by: str) -> dict[str, Any]:
        p = params_map(params)
        name = p.get("port")
        port = self.uarts.get(name) if isinstance(name, str) else None
        if port is None:
            names = ", ".join(self.uarts) or "none"
            raise RequestError(f"no port {name!r} (ports: {names})", field="port")
        return await port.transaction(p)

    def _changed(self, body: dict[str, Any]) -> None:
        self.changes += 1
        self.log.info(
            "board_changed", **{k: v for k, v in body.items() if k != "what"}, what=body["what"]
        )
        self.bus.publish(topics.IOHW_CHANGED, body)

    async def _sync_wiring(self, panel: Panel) -> None:
        """Make the sensor farm match the initial positions (open power relays, DAC loads)."""
        pending: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
        for wire in self.wiring.relays:
            if wire.kind == "power" and not wire.closed:
                stop = functools.partial(
                    self._meter_request, topics.METER_STOP, {"meter": wire.meter}
                )
                pending.append((wire.name, stop))
        for load in self.wiring.loads:
            pending.append(
                (
                    load.name,
                    functools.partial(panel.apply_load, load.dac, self.dac.quantise(load.volts)),
                )
            )
        for name, effect in pending:
            await self._retry(name, effect)

    async def _retry(self, name: str, effect: Callable[[], Awaitable[Any]]) -> None:
        for attempt in range(1, SYNC_ATTEMPTS + 1):
            try:
                await effect()
            except TestbedError as exc:
                self.log.warning("wiring_sync_failed", entry=name, attempt=attempt, error=str(exc))
                await asyncio.sleep(SYNC_PAUSE_S)
            else:
                self.log.info("wiring_synced", entry=name)
                return

    async def _status(self, params: Any, by: str) -> dict[str, Any]:
        panel = self.panel
        assert panel is not None
        dac = [await panel.dac({"channel": ch}, by) for ch in range(1, 5)]
        return {
            "backend": panel.backend.name,
            "relays": [panel.describe_relay(r) for r in range(1, 17)],
            "dio_mask": sum(1 << i for i, c in enumerate(panel.positions) if c),
            "dac": dac,
            "adc": [
                {"channel": w.adc, "name": w.name, "meter": w.meter, "value": w.value}
                for w in self.wiring.outputs
            ],
            "uarts": [
                {"port": u.config.port, "url": u.config.url, "mode": u.config.mode}
                for u in self.uarts.values()
            ],
            "i2c": {f"0x{a:02X}": d.kind for a, d in self.i2c.devices.items()},
            "spi": {str(cs): d.kind for cs, d in self.spi.devices.items()},
            "lines": [
                {
                    "name": line.name,
                    "listen": f"{line.listen[0]}:{line.listen[1]}",
                    "target": f"{line.target[0]}:{line.target[1]}",
                    "connections": line.counters.connections,
                    "bytes_passed": line.counters.bytes_passed,
                    "bytes_cut": line.counters.bytes_cut,
                }
                for line in self.lines
            ],
        }

    def counters(self) -> dict[str, int]:
        """Return the board's totals."""
        return {
            "changes": self.changes,
            "requests_refused": self.refused,
            "line_bytes_passed": sum(line.counters.bytes_passed for line in self.lines),
            "line_bytes_cut": sum(line.counters.bytes_cut for line in self.lines),
            "uart_transactions": sum(u.transactions for u in self.uarts.values()),
            "uart_timeouts": sum(u.timeouts for u in self.uarts.values()),
            "i2c_nacks": self.i2c.nacks,
        }
