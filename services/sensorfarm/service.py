"""The sensor farm service: windows of the simulation clock, batches to the channel.

Per window the farm advances every meter and pushes the telegrams due to the
channel (PUSH with a high-water mark: a slow channel slows the farm down).
In ``realtime`` and ``scaled`` clock modes it waits for the end of each
window; in ``stepped`` mode with ``step_control = "free"`` it runs window
after window as fast as the channel takes them, its clock advancing by itself.

With ``stepped`` and ``step_control = "request"`` a controller drives time:

- ``sensorfarm.advance`` ``{"to": t_sim}`` or ``{"by": s}`` runs the windows from
  the farm's time up to ``to`` (``window_s`` each, the last one shorter so that it
  ends exactly there), pushes every window's batch downstream, empty ones included
  (so the channel and gateway follow time and know a window is complete), and
  answers ``{"now", "windows", "sent"}`` once the last batch has been pushed.
  Requests are served one after another; a retried request (same sender and
  sequence number) is answered from the first run, never run twice;
- ``sensorfarm.now`` answers ``{"now", "mode", "step_control", "windows"}``.

Wired meters can be served as M-Bus slaves on TCP. Manipulation requests
change single meters; ``meter.replay`` re-sends a meter's last telegrams as an attacker
on the radio would (:mod:`.replay`).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from smtestbed.proto import topics
from smtestbed.proto.envelope import Envelope
from smtestbed.proto.mbus.header import decode_manufacturer
from smtestbed.proto.records import Record
from smtestbed.services._runtime.bus import BatchPusher
from smtestbed.services._runtime.config import parse_host_port
from smtestbed.services._runtime.errors import ConfigError, RequestError
from smtestbed.services._runtime.lifecycle import Ready, Service
from smtestbed.services.sensorfarm import manipulation, stepping
from smtestbed.services.sensorfarm.config import SensorFarmConfig
from smtestbed.services.sensorfarm.farm import Farm
from smtestbed.services.sensorfarm.mbus_line import MbusLine
from smtestbed.services.sensorfarm.mbus_server import MbusTcpServer
from smtestbed.services.sensorfarm.mbus_slave import MbusSlave, WiredMeter
from smtestbed.services.sensorfarm.models import LoadInputs
from smtestbed.services.sensorfarm.population import (
    Area,
    Population,
    generate,
    load_csv,
    load_toml,
    parse_mix,
)
from smtestbed.services.sensorfarm.schema import Interface, MeterKind
from smtestbed.services.sensorfarm.templates import records_for

EVENT_EVERY_S = 1.0
ADVANCES_KEPT = 64  # answered advance requests remembered for retries


def build_population(cfg: SensorFarmConfig, start_s: float) -> Population:
    """Load the population file, or generate ``cfg.meters`` meters."""
    if cfg.population_file:
        path = Path(cfg.population_file)
        loader = load_csv if path.suffix.lower() == ".csv" else load_toml
        return loader(path, seed=cfg.seed, start_s=start_s)
    if cfg.security not in (0, 5, 7):
        raise ConfigError("must be 0, 5 or 7", key="sensorfarm.security")
    return generate(
        cfg.meters,
        seed=cfg.seed,
        mix=parse_mix(cfg.mix),
        security=cfg.security,
        interval_s=cfg.interval_s,
        area=Area(width_m=cfg.area_m, height_m=cfg.area_m),
        start_s=start_s,
    )


class SensorFarm(Service):
    """Simulated meters on the simulation plane."""

    service: ClassVar[str] = "sensorfarm"
    config_class: ClassVar[type[SensorFarmConfig]] = SensorFarmConfig

    def __init__(self, config: SensorFarmConfig) -> None:
        super().__init__(config)
        if not config.window_s > 0:
            raise ConfigError("must be > 0", key="sensorfarm.window_s")
        if config.step_control == "request" and config.clock_mode != "stepped":
            raise ConfigError("'request' needs clock_mode = stepped", key="sensorfarm.step_control")
        self.cfg = config
        self.farm = Farm(build_population(config, self.clock.now()), seed=config.seed)
        self.loads = LoadInputs(self.farm.pop.scale)
        self.line: MbusLine | None = None
        self._last_event = 0.0
        self._pusher: BatchPusher | None = None
        self.advances_refused = 0
        self._advancing = asyncio.Lock()
        self._advances: OrderedDict[tuple[str, int], asyncio.Future[dict[str, Any]]] = OrderedDict()

    @property
    def on_request(self) -> bool:
        """Return True when windows run only on ``sensorfarm.advance``."""
        return self.clock.mode == "stepped" and self.cfg.step_control == "request"

    async def run(self, ready: Ready) -> None:
        """Serve requests and wired meters, then run windows until cancelled."""
        self._register()
        pusher = BatchPusher(
            self.bus.ctx, self.cfg.output, src=self.cfg.instance, bind=self.cfg.bind_output
        )
        server = await self._serve_wired()
        self._pusher = pusher
        try:
            await self.bus.publisher.wait_connected(2.0)
            ready.set()
            if self.on_request:
                await asyncio.get_running_loop().create_future()  # time moves on request only
            await self._windows(pusher)
        finally:
            self._pusher = None
            pusher.close()
            if server is not None:
                await server.close()

    async def _windows(self, pusher: BatchPusher) -> None:
        w = self.cfg.window_s
        t0 = self.clock.now()
        while True:
            t1 = t0 + w
            if self.clock.mode == "stepped":
                self.clock.advance_to(t1)
            else:
                await self.clock.sleep_until(t1)
            batch = self.farm.step(t0, t1)
            if batch.count:
                await pusher.send(batch, t_sim=t1)
            self._maybe_publish(t1)
            await asyncio.sleep(0)  # let requests in between windows
            t0 = t1

    async def _advance(self, params: Any, env: Envelope) -> dict[str, Any]:
        try:
            return await self._advance_unique(params, env)
        except RequestError as exc:
            self.advances_refused += 1
            self.log.warning("advance_refused", by=env.src, field=exc.field, error=str(exc))
            raise

    async def _advance_unique(self, params: Any, env: Envelope) -> dict[str, Any]:
        if not self.on_request:
            field = "clock_mode" if self.clock.mode != "stepped" else "step_control"
            raise RequestError(
                f"this sensor farm runs by itself (clock_mode={self.clock.mode},"
                f" step_control={self.cfg.step_control}); advance needs stepped and request",
                field=field,
            )
        key = (env.src, env.seq)
        run = self._advances.get(key)
        if run is None:  # a retry of a request carries the same sender and sequence number
            run = asyncio.ensure_future(self._advance_once(params))
            self._advances[key] = run
            while len(self._advances) > ADVANCES_KEPT:
                self._advances.popitem(last=False)
        return await run

    async def _advance_once(self, params: Any) -> dict[str, Any]:
        field, value = stepping.parse_advance(params)  # refused before waiting for the lock
        async with self._advancing:
            now = self.clock.now()
            to = stepping.target(field, value, now)
            ends = stepping.window_ends(now, to, self.cfg.window_s, field=field)
            sent = 0
            for t1 in ends:
                sent += await self._controlled_window(t1)
            self.log.info("advanced", to=to, windows=len(ends), sent=sent)
            return {"now": self.clock.now(), "windows": len(ends), "sent": sent}

    async def _controlled_window(self, t1: float) -> int:
        if self._pusher is None:
            raise RequestError("the farm is stopping", field="to")
        t0 = self.clock.now()
        self.clock.advance_to(t1)
        batch = self.farm.step(t0, t1)
        # Empty batches go too: the window's end is what moves the next stages' clocks.
        await self._pusher.send(batch, t_sim=t1)
        self._maybe_publish(t1)
        return batch.count

    async def _now(self, params: Any, env: Envelope) -> dict[str, Any]:
        return {
            "now": self.clock.now(),
            "mode": self.clock.mode,
            "step_control": self.cfg.step_control,
            "windows": self.farm.counters.windows,
        }

    def _maybe_publish(self, t_sim: float) -> None:
        now = time.monotonic()
        if now - self._last_event < EVENT_EVERY_S:
            return
        self._last_event = now
        c = self.farm.counters
        self.bus.publish(
            topics.SENSORFARM_WINDOW,
            {
                "windows": c.windows,
                "sent": c.sent,
                "skipped_duty_cycle": c.skipped_duty_cycle,
                "corrupted": c.corrupted,
                "replayed": c.replayed,
                "bytes": c.bytes,
                "last": c.last,
                "meters": len(self.farm.pop),
            },
            t_sim=t_sim,
        )

    async def _serve_wired(self) -> MbusTcpServer | None:
        if not self.cfg.mbus_tcp:
            return None
        host, port = parse_host_port(self.cfg.mbus_tcp, "sensorfarm.mbus_tcp")
        slaves = [MbusSlave(m) for m in self.wired_meters()]
        self.line = MbusLine(slaves)
        server = MbusTcpServer(self.line, host=host, port=port)
        await server.start()
        self.log.info("mbus_serving", url=server.url, slaves=len(slaves))
        return server

    def wired_meters(self) -> list[WiredMeter]:
        """Return the population's wired M-Bus meters, reading the live values."""
        pop = self.farm.pop
        rows = [i for i in range(len(pop)) if pop.interface[i] == Interface.WIRED_MBUS]
        return [self._wired(i) for i in rows]

    def _wired(self, row: int) -> WiredMeter:
        pop = self.farm.pop
        kind = MeterKind(int(pop.kind[row]))

        def records() -> Sequence[Record]:
            return records_for(kind, tuple(float(v) for v in pop.values[row]))

        return WiredMeter(
            ident=f"{int(pop.ident[row]):08d}",
            manufacturer=decode_manufacturer(int(pop.manufacturer[row])),
            version=int(pop.version[row]),
            medium=int(pop.device_type[row]),
            primary_address=int(pop.primary_address[row]) or 1,
            records=records,
        )

    def _register(self) -> None:
        pop = self.farm.pop
        actions: dict[str, Callable[[Any], dict[str, Any]]] = {
            topics.METER_GET: lambda p: manipulation.describe(
                pop, manipulation.meter_index(pop, p)
            ),
            topics.METER_SET_COUNTER: lambda p: manipulation.set_counter(pop, p),
            topics.METER_SET_KEY: lambda p: manipulation.set_key(pop, p),
            topics.METER_STOP: lambda p: manipulation.set_stopped(pop, p, stopped=True),
            topics.METER_RESUME: lambda p: manipulation.set_stopped(pop, p, stopped=False),
            topics.METER_CORRUPT: lambda p: manipulation.corrupt(pop, p),
            topics.METER_SET_INTERVAL: lambda p: manipulation.set_interval(pop, p),
            topics.METER_SET_LOAD: lambda p: manipulation.set_load(pop, self.loads, p),
            topics.METER_REPLAY: lambda p: manipulation.replay(self.farm, p, self.clock.now()),
            topics.METER_CUT_LINE: lambda p: self._line(cut=True),
            topics.METER_RESTORE_LINE: lambda p: self._line(cut=False),
        }
        for method, action in actions.items():
            self.bus.handle(method, self._handler(method, action))
        self.bus.handle(topics.SENSORFARM_ADVANCE, self._advance)
        self.bus.handle(topics.SENSORFARM_NOW, self._now)

    def _handler(self, method: str, action: Callable[[Any], dict[str, Any]]) -> Any:
        async def handle(params: Any, env: Envelope) -> dict[str, Any]:
            result = action(params)
            if method != topics.METER_GET:
                self.log.info(
                    "meter_manipulated", action=method, by=env.src, meter=result.get("meter")
                )
                self.bus.publish(
                    topics.METER_MANIPULATED, {"action": method, "by": env.src, **result}
                )
            return result

        return handle

    def _line(self, *, cut: bool) -> dict[str, Any]:
        if self.line is None:
            raise RequestError(
                "this sensor farm serves no wired line (mbus_tcp is off)", field="line"
            )
        if cut:
            self.line.interrupt()
        else:
            self.line.restore()
        return {"line": self.cfg.mbus_tcp, "interrupted": self.line.interrupted}

    def counters(self) -> dict[str, int]:
        """Return the farm's totals."""
        c = self.farm.counters
        return {
            "windows": c.windows,
            "sent": c.sent,
            "skipped_duty_cycle": c.skipped_duty_cycle,
            "corrupted": c.corrupted,
            "replayed": c.replayed,
            "meters": len(self.farm.pop),
            "advances_refused": self.advances_refused,
        }
