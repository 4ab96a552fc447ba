"""The Service base and the runner that gives every service the same life.

A service implements ``async def run(self, ready)``: it sets itself up, calls
``ready.set()`` and then works until cancelled. The runner around it

- connects the bus, answers ``service.ping`` and ``service.get_counters``;
- on ``ready.set()``: announces the service to the broker and, once the
  broker routes requests to it, writes ``ready`` to the file descriptor named
  in ``SMTB_READY_FD`` (how a supervisor or test learns of it), publishes
  ``service.ready`` and starts heartbeats;
- on SIGTERM or the first Ctrl-C: cancels ``run`` (a graceful stop: the
  service's ``finally`` blocks run), says BYE and closes every socket with
  linger 0; a second Ctrl-C ends the process at once;
- stops the service when the process that started it (``SMTB_PARENT_PID``)
  is gone, so a killed supervisor leaves no orphans.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar

from smtestbed.proto import topics
from smtestbed.proto.envelope import Envelope
from smtestbed.services._runtime import logging as smtb_logging
from smtestbed.services._runtime.bus import Endpoints
from smtestbed.services._runtime.client import BusClient
from smtestbed.services._runtime.clock import SimClock
from smtestbed.services._runtime.config import ServiceConfig
from smtestbed.services._runtime.errors import TestbedError

READY_FD_ENV = "SMTB_READY_FD"
PARENT_PID_ENV = "SMTB_PARENT_PID"
EXIT_OK, EXIT_ERROR, EXIT_BUG, EXIT_KILLED = 0, 1, 2, 130


class Ready:
    """The explicit ready signal handed to :meth:`Service.run`."""

    def __init__(self, on_set: Callable[[], None]) -> None:
        self._on_set = on_set
        self._event = asyncio.Event()

    def set(self) -> None:
        """Declare the service ready (idempotent)."""
        if not self._event.is_set():
            self._event.set()
            self._on_set()

    def is_set(self) -> bool:
        """Return True once the service declared itself ready."""
        return self._event.is_set()

    async def wait(self) -> None:
        """Wait until the service is ready."""
        await self._event.wait()


class Service(ABC):
    """Base of every smtestbed service.

    Subclasses set :attr:`service` and :attr:`config_class` and implement
    :meth:`run`. ``uses_bus = False`` is for the broker, which is the bus.
    """

    service: ClassVar[str]
    config_class: ClassVar[type[ServiceConfig]] = ServiceConfig
    uses_bus: ClassVar[bool] = True

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.clock = SimClock(
            config.clock_mode,
            scale=config.clock_scale,
            start=config.clock_start or None,
            epoch=config.clock_epoch or None,
        )
        self.log = smtb_logging.get_logger()
        self._bus: BusClient | None = None

    @property
    def bus(self) -> BusClient:
        """Return the bus client (set up by the runner before ``run``)."""
        if self._bus is None:
            raise TestbedError(f"{self.service} has no bus connection")
        return self._bus

    @abstractmethod
    async def run(self, ready: Ready) -> None:
        """Set up, call ``ready.set()``, then work until cancelled."""

    def counters(self) -> dict[str, int]:
        """Return this service's own counters (published and answered on request)."""
        return {}


def main(service: Service) -> int:
    """Run ``service`` in a fresh event loop; return the process exit code."""
    cfg = service.config
    smtb_logging.configure(
        service=service.service, instance=cfg.instance, level=cfg.log_level, fmt=cfg.log_format
    )
    try:
        asyncio.run(ServiceRunner(service).run())
    except TestbedError as exc:
        service.log.error("service_failed", error=str(exc))
        return EXIT_ERROR
    except Exception:
        service.log.exception("service_crashed")
        return EXIT_BUG
    return EXIT_OK


class ServiceRunner:
    """Run one service in the current event loop (``main`` uses it per process).

    Args:
        service: the service to run.
        signals: handle SIGTERM/SIGINT (only for the process's main service).
    """

    def __init__(self, service: Service, *, signals: bool = True) -> None:
        self.service = service
        self.signals = signals
        self.ready = asyncio.Event()
        self.stopping = False
        self._interrupts = 0
        self._task: asyncio.Task[None] | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._helpers: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        """Run the service until it returns, fails or is stopped."""
        svc, cfg = self.service, self.service.config
        if svc.uses_bus:
            svc._bus = BusClient(
                Endpoints.from_config(cfg),
                name=cfg.instance,
                service=svc.service,
                clock=svc.clock,
                heartbeat_s=cfg.heartbeat_s,
            )
            self._install_handlers(svc._bus)
        if self.signals:
            self._install_signals()
        svc.log.info("service_starting", pid=os.getpid())
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                self._task = tg.create_task(self._main())
                self._spawn(self._watch_parent())
                if svc._bus is not None:
                    svc._bus.rpc.start()
        except BaseExceptionGroup as group:
            raise _first_error(group) from None
        finally:
            await self._shutdown()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._tg is not None
        self._helpers.append(self._tg.create_task(coro))

    async def _main(self) -> None:
        try:
            await self.service.run(Ready(self._on_ready))
        except asyncio.CancelledError:
            if not self.stopping:
                raise
        finally:
            # run() is over, whichever way: the helper tasks go with it
            for task in self._helpers:
                task.cancel()

    def _on_ready(self) -> None:
        bus = self.service._bus
        if bus is None:
            self._declare_ready()
        else:
            self._spawn(self._register(bus))

    async def _register(self, bus: BusClient) -> None:
        # Ready means "answers requests": a request sent the moment a supervisor or test
        # learns of readiness must find the service in the broker's registry.
        await bus.rpc.register()
        self._spawn(bus.rpc.heartbeat_forever())
        self._declare_ready()
        bus.publish(topics.SERVICE_READY, {"service": self.service.service, "pid": os.getpid()})

    def _declare_ready(self) -> None:
        self.ready.set()
        _notify_ready()
        self.service.log.info("service_ready")

    def _install_handlers(self, bus: BusClient) -> None:
        async def ping(params: Any, env: Envelope) -> Any:
            return {
                "name": bus.name,
                "service": self.service.service,
                "pid": os.getpid(),
                "t_sim": self.service.clock.now(),
                "clock_epoch": self.service.clock.epoch,
            }

        async def counters(params: Any, env: Envelope) -> Any:
            return {**bus.counters(), **self.service.counters()}

        bus.handle(topics.SERVICE_PING, ping)
        bus.handle(topics.SERVICE_COUNTERS_GET, counters)

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self._interrupt)

    def _interrupt(self) -> None:
        self._interrupts += 1
        if self._interrupts > 1:
            self.service.log.warning("service_killed", reason="second interrupt")
            os._exit(EXIT_KILLED)
        self.stop("SIGINT")

    def stop(self, reason: str) -> None:
        """Begin a graceful stop: cancel the service's ``run``."""
        if self.stopping:
            return
        self.stopping = True
        self.service.log.info("service_stopping", reason=reason)
        if self._task is not None:
            self._task.cancel()

    async def _watch_parent(self) -> None:
        parent = os.environ.get(PARENT_PID_ENV)
        if not parent:
            return
        while os.getppid() == int(parent):
            await asyncio.sleep(0.5)
        self.stop("parent process gone")

    async def _shutdown(self) -> None:
        bus = self.service._bus
        if bus is None:
            self.service.log.info("service_stopped")
            return
        with contextlib.suppress(Exception):
            bus.publish(topics.SERVICE_STOPPING, {"service": self.service.service})
            await asyncio.wait_for(bus.rpc.bye(), 0.5)
        bus.close()
        self.service.log.info("service_stopped")


def _notify_ready() -> None:
    fd = os.environ.pop(READY_FD_ENV, None)
    if fd is None:
        return
    try:
        os.write(int(fd), b"ready\n")
        os.close(int(fd))
    except (OSError, ValueError) as exc:
        print(f"cannot signal readiness on fd {fd}: {exc}", file=sys.stderr)


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return group.exceptions[0]
