"""The controller service: the test API over the bus (``controller.<op>``) and REST.

It keeps a log of the bus events (all but ``sim.*``) that ``wait_event`` and
``events`` read, and answers every operation of the registry both as a bus
request and as ``POST /api/v1/<op>``; the two run the same code.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from aiohttp import web
from smtestbed.proto.envelope import Envelope
from smtestbed.services._runtime.lifecycle import Ready, Service
from smtestbed.services.controller import ops as _ops  # registers the operations
from smtestbed.services.controller.config import ControllerConfig
from smtestbed.services.controller.events import EventLog
from smtestbed.services.controller.operations import REGISTRY, OpContext, Operation
from smtestbed.services.controller.rest import make_app

_ = _ops


class ControllerService(Service):
    """Test automation: the atomic test API on the bus and over HTTP."""

    service: ClassVar[str] = "controller"
    config_class: ClassVar[type[ControllerConfig]] = ControllerConfig

    def __init__(self, config: ControllerConfig) -> None:
        super().__init__(config)
        self.cfg = config
        self.events = EventLog(config.event_capacity)
        self.http_port = 0
        self.calls = 0
        self._ctx: OpContext | None = None

    def context(self) -> OpContext:
        """Return the context operations run in."""
        if self._ctx is None:
            self._ctx = OpContext(
                bus=self.bus,
                events=self.events,
                topology=self.cfg.topology(),
                timeout_s=self.cfg.request_timeout_s,
            )
        return self._ctx

    async def run(self, ready: Ready) -> None:
        """Log events, answer requests and HTTP until cancelled."""
        await self.events.start(self.bus)
        for op in REGISTRY.all():
            self.bus.handle(op.method, self._handler(op))
        runner = web.AppRunner(make_app(self.context), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.cfg.http_host, self.cfg.http_port)
        try:
            await site.start()
            self.http_port = runner.addresses[0][1] if runner.addresses else self.cfg.http_port
            self.log.info(
                "controller_listening", url=f"http://{self.cfg.http_host}:{self.http_port}"
            )
            await self.bus.publisher.wait_connected(2.0)
            ready.set()
            await _forever()
        finally:
            await runner.cleanup()
            await self.events.stop()

    def _handler(self, op: Operation) -> Any:
        async def handle(params: Any, env: Envelope) -> Any:
            self.calls += 1
            return await REGISTRY.call(self.context(), op.name, params)

        return handle

    def counters(self) -> dict[str, int]:
        """Return operations answered over the bus and events logged."""
        return {"bus_calls": self.calls, "events_logged": self.events.mark()}


async def _forever() -> None:
    await asyncio.Event().wait()
