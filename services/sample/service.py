"""The sample service: a heartbeat of the demo and a target for bus tests.

It publishes ``sample.tick`` every ``interval_s`` (a counter and a smooth
signal) and answers ``sample.echo``, ``sample.add`` and ``sample.sleep``.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from smtestbed.proto import topics
from smtestbed.proto.envelope import Envelope
from smtestbed.services._runtime.config import ServiceConfig, doc
from smtestbed.services._runtime.errors import ConfigError, TestbedError
from smtestbed.services._runtime.lifecycle import Ready, Service


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleConfig(ServiceConfig):
    """Settings of the sample service."""

    interval_s: float = doc(1.0, "time between ticks, simulated s (0: no ticks)")
    payload_bytes: int = doc(0, "size of an opaque payload added to each tick, bytes")
    stop_delay_s: float = doc(0.0, "time a graceful stop takes, s (to exercise stop timeouts)")


class BadParamsError(TestbedError):
    """A request's parameters are not what the method needs."""


class Sample(Service):
    """Publish ticks; answer echo, add and sleep."""

    service: ClassVar[str] = "sample"
    config_class: ClassVar[type[SampleConfig]] = SampleConfig

    def __init__(self, config: SampleConfig) -> None:
        super().__init__(config)
        if config.interval_s < 0 or config.payload_bytes < 0:
            raise ConfigError("interval_s and payload_bytes must be >= 0", key="sample")
        self.cfg = config
        self.ticks = 0

    async def run(self, ready: Ready) -> None:
        """Register the handlers, then tick until cancelled."""
        self.bus.handle(topics.SAMPLE_ECHO, self._echo)
        self.bus.handle(topics.SAMPLE_ADD, self._add)
        self.bus.handle(topics.SAMPLE_SLEEP, self._sleep)
        await self.bus.publisher.wait_connected(2.0)
        ready.set()
        try:
            await self._tick_forever()
        finally:
            if self.cfg.stop_delay_s > 0:
                await asyncio.shield(asyncio.sleep(self.cfg.stop_delay_s))

    async def _tick_forever(self) -> None:
        payload = bytes(self.cfg.payload_bytes)
        if self.cfg.interval_s == 0:
            await asyncio.Event().wait()
        while True:
            await self.clock.sleep(self.cfg.interval_s)
            self.ticks += 1
            body: dict[str, Any] = {"n": self.ticks, "value": round(math.sin(self.ticks / 10), 6)}
            if payload:
                body["payload"] = payload
            self.bus.publish(topics.SAMPLE_TICK, body)

    async def _echo(self, params: Any, env: Envelope) -> Any:
        return params

    async def _add(self, params: Any, env: Envelope) -> Any:
        if not isinstance(params, dict) or not all(
            isinstance(params.get(k), int | float) for k in ("a", "b")
        ):
            raise BadParamsError(f"sample.add needs numbers a and b, got {params!r}")
        return params["a"] + params["b"]

    async def _sleep(self, params: Any, env: Envelope) -> Any:
        seconds = params.get("seconds") if isinstance(params, dict) else None
        if not isinstance(seconds, int | float) or not 0 <= seconds <= 60:
            raise BadParamsError("sample.sleep needs seconds between 0 and 60")
        await asyncio.sleep(seconds)
        return seconds

    def counters(self) -> dict[str, int]:
        """Return the number of ticks published."""
        return {"ticks": self.ticks}
