"""The supervisor: starts services in order, restarts crashed ones, stops in reverse.

A service starts as soon as every service it names in ``after`` is ready, so
services that do not wait for each other start at the same time; the
supervisor is ready once all are. Each service runs as its own process in its
own session, so that a Ctrl-C in the terminal reaches only the supervisor,
which then stops the services in reverse: a service is stopped once every
service that waits for it has stopped (SIGTERM, then SIGKILL after
``stop_timeout_s``), independent ones at the same time. A service that exits
on its own is restarted after a delay that doubles with each quick crash, up
to ``restart_backoff_max_s``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
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
            await self._start_all()
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

    async def _start_all(self) -> None:
        """Start each service once those in its ``after`` are ready; raise the first failure."""
        errors = await _in_dependency_order(
            self.children, lambda c: set(c.spec.after), self._start, keep_going=False
        )
        for error in errors:
            self.log.error("child_start_failed", error=str(error))
        if errors:
            raise errors[0]

    async def _start(self, child: Child) -> None:
        spec = child.spec
        argv = process.service_argv(
            spec.run, "--config", str(self.path), "--instance", spec.name, *spec.argv_settings()
        )
        out = self._log_file(child)
        self.log.info("child_starting", name=spec.name, run=spec.run)
        spawning = asyncio.ensure_future(
            asyncio.to_thread(
                process.spawn,
                argv,
                env=self._clock_env(),
                ready_timeout=self.cfg.ready_timeout_s,
                stdout=out,
                stderr=out,
            )
        )
        try:
            await asyncio.shield(spawning)
        finally:
            # the spawn thread cannot be interrupted: even a cancelled start waits for its
            # process, so that the stop that follows finds and stops it
            await asyncio.wait([spawning])
            if spawning.exception() is None:
                child.proc = spawning.result()
        assert child.proc is not None
        child.started = time.monotonic()
        self.log.info("child_started", name=spec.name, pid=child.proc.pid)

    def _clock_env(self) -> dict[str, str]:
        """One simulation clock for all services: each reads ``clock_start`` at this epoch."""
        return {"SMTB_COMMON_CLOCK_EPOCH": repr(self.clock.epoch)}

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
        waiting = {
            c.spec.name: {d.spec.name for d in self.children if c.spec.name in d.spec.after}
            for c in self.children
        }
        await _in_dependency_order(
            self.children, lambda c: waiting[c.spec.name], self._stop, keep_going=True
        )

    async def _stop(self, child: Child) -> None:
        if child.proc is not None:
            self.log.info("child_stopping", name=child.spec.name)
            code = await asyncio.to_thread(
                process.stop, child.proc, timeout=self.cfg.stop_timeout_s
            )
            self.log.info("child_stopped", name=child.spec.name, exit_code=code)
        if child.log is not None:
            child.log.close()
            child.log = None

    def counters(self) -> dict[str, int]:
        """Return restarts per service and in total."""
        out: dict[str, Any] = {f"restarts.{c.spec.name}": c.restarts for c in self.children}
        out["restarts"] = sum(c.restarts for c in self.children)
        return out


def _should_restart(policy: str, code: int) -> bool:
    return policy == "always" or (policy == "on-failure" and code != 0)


Action = Callable[[Child], Coroutine[Any, Any, None]]


async def _in_dependency_order(
    children: list[Child],
    waits_for: Callable[[Child], set[str]],
    action: Action,
    *,
    keep_going: bool,
) -> list[BaseException]:
    """Run ``action`` on each child once the children it waits for are done; return errors.

    Children whose prerequisites are done run at the same time. After an error, no
    further child is begun unless ``keep_going`` (a failed child then counts as done).
    Begun actions are always awaited, even when this coroutine is cancelled: a process
    being spawned must be known before the supervisor stops what it started.
    """
    pending, done = list(children), set[str]()
    running: dict[asyncio.Task[None], Child] = {}
    errors: list[BaseException] = []
    try:
        while pending or running:
            if keep_going or not errors:
                for child in [c for c in pending if waits_for(c) <= done]:
                    pending.remove(child)
                    running[asyncio.create_task(action(child))] = child
            if not running:
                break
            finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                name = running.pop(task).spec.name
                error = task.exception()
                if error is not None:
                    errors.append(error)
                if error is None or keep_going:
                    done.add(name)
    finally:
        if running:
            await asyncio.shield(asyncio.wait(running))
    return errors
