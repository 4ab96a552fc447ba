"""The supervisor: starts services in order, restarts crashed ones, stops in reverse.

Each service runs as its own process in its own session, so that a Ctrl-C
in the terminal reaches only the supervisor, which then stops the services
in reverse start order (SIGTERM, then SIGKILL after ``stop_timeout_s``).
A service that exits on its own is restarted after a delay that doubles
with each quick crash, up to ``restart_backoff_max_s``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

from smtestbed.proto import topics
from smtestbed.services._runtime import process
from smtestbed.services._runtime.errors import ServiceError
from smtestbed.services._runtime.lifecycle import Ready, Service
from smtestbed.services.supervisor.config import ServiceSpec, SupervisorConfig


@dataclass(slots=True)
class Child:
    """One supervised service and its current process."""

    spec: ServiceSpec
    proc: process.Popen | None = None
    started: float = 0.0
    restarts: int = 0
    delay: float = 0.0
    log: IO[bytes] | None = None


class Supervisor(Service):
    """Run the services of a testbed file."""

    service: ClassVar[str] = "supervisor"
    config_class: ClassVar[type[SupervisorConfig]] = SupervisorConfig

    def __init__(self, config: SupervisorConfig, specs: list[ServiceSpec], path: Path) -> None:
        super().__init__(config)
        self.cfg = config
        self.path = path
        self.children = [Child(spec=s, delay=config.restart_backoff_s) for s in specs]
        self._stopping = False

    async def run(self, ready: Ready) -> None:
        """Start everything, watch it, stop everything on the way out."""
        try:
            for child in self.children:
                await self._start(child)
            ready.set()
            self.bus.publish(
                topics.SUPERVISOR_STARTED, {"services": [c.spec.name for c in self.children]}
            )
            async with asyncio.TaskGroup() as tg:
                for child in self.children:
                    tg.create_task(self._watch(child))
        finally:
            self._stopping = True
            await self._stop_all()

    async def _start(self, child: Child) -> None:
        spec = child.spec
        argv = process.service_argv(
            spec.run, "--config", str(self.path), "--instance", spec.name, *spec.argv_settings()
        )
        out = self._log_file(child)
        self.log.info("child_starting", name=spec.name, run=spec.run)
        child.proc = await asyncio.to_thread(
            process.spawn, argv, ready_timeout=self.cfg.ready_timeout_s, stdout=out, stderr=out
        )
        child.started = time.monotonic()
        self.log.info("child_started", name=spec.name, pid=child.proc.pid)

    def _log_file(self, child: Child) -> IO[bytes] | None:
        if not self.cfg.log_dir:
            return None
        if child.log is None:
            folder = Path(self.cfg.log_dir)
            folder.mkdir(parents=True, exist_ok=True)
            child.log = (folder / f"{child.spec.name}.log").open("ab")
        return child.log

    async def _watch(self, child: Child) -> None:
        while True:
            code = await self._wait_exit(child)
            if self._stopping:
                return
            self._report_exit(child, code)
            if not _should_restart(child.spec.restart, code):
                return
            await self._restart(child, code)

    @staticmethod
    async def _wait_exit(child: Child) -> int:
        assert child.proc is not None
        while (code := child.proc.poll()) is None:
            await asyncio.sleep(0.05)
        return code

    def _report_exit(self, child: Child, code: int) -> None:
        ran = time.monotonic() - child.started
        self.log.warning("child_exited", name=child.spec.name, exit_code=code, ran_s=round(ran, 3))
        self.bus.publish(
            topics.SUPERVISOR_CRASHED,
            {"name": child.spec.name, "exit_code": code, "ran_s": round(ran, 3)},
        )
        if ran >= self.cfg.stable_after_s:
            child.delay = self.cfg.restart_backoff_s

    async def _restart(self, child: Child, code: int) -> None:
        while not self._stopping:
            delay = child.delay
            child.delay = min(child.delay * 2, self.cfg.restart_backoff_max_s)
            await asyncio.sleep(delay)
            try:
                await self._start(child)
            except ServiceError as exc:
                self.log.error("restart_failed", name=child.spec.name, error=str(exc))
                continue
            child.restarts += 1
            assert child.proc is not None
            self.bus.publish(
                topics.SUPERVISOR_RESTARTED,
                {
                    "name": child.spec.name,
                    "pid": child.proc.pid,
                    "restarts": child.restarts,
                    "exit_code": code,
                    "delay_s": delay,
                },
            )
            return

    async def _stop_all(self) -> None:
        running = [c for c in self.children if c.proc is not None and c.proc.poll() is None]
        if running:
            self.bus.publish(
                topics.SUPERVISOR_STOPPED, {"services": [c.spec.name for c in running]}
            )
        for child in reversed(self.children):
            if child.proc is not None:
                code = await asyncio.to_thread(
                    process.stop, child.proc, timeout=self.cfg.stop_timeout_s
                )
                self.log.info("child_stopped", name=child.spec.name, exit_code=code)
            if child.log is not None:
                child.log.close()

    def counters(self) -> dict[str, int]:
        """Return restarts per service and in total."""
        out: dict[str, Any] = {f"restarts.{c.spec.name}": c.restarts for c in self.children}
        out["restarts"] = sum(c.restarts for c in self.children)
        return out


def _should_restart(policy: str, code: int) -> bool:
    return policy == "always" or (policy == "on-failure" and code != 0)
