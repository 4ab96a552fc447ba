"""A real testbed for one :class:`TestbedState`: run folder, ``smtb up``, defined state.

``start()`` writes the run folder and starts the supervisor (``smtb up --config``) as a
child process; it returns once every service is ready. ``async with
testbed.controller() as ctl`` connects to the bus, waits until every service
answers, applies the state's set-state operations (keys, faults, relays) and
confirms the defined state (meter count and population from the farm, registry
size and instances from the gateway, clock, relays); a mismatch raises
:class:`StateMismatchError` with what was asked and what was reported.
``stop()`` stops the supervisor, which stops every service, and checks that no
process is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from smtestbed.proto import topics
from smtestbed.services._runtime import process
from smtestbed.services._runtime.client import BusClient
from smtestbed.services._runtime.errors import PeerError, ServiceError, TestbedError
from smtestbed.services._runtime.testing import pid_alive
from smtestbed.services.controller.client import Controller
from smtestbed.services.controller.events import EventLog
from smtestbed.services.controller.layout import ADMIN_SECRET, SMTB, RunFolder, write_run_folder
from smtestbed.services.controller.operations import OpContext, Topology
from smtestbed.services.controller.state import TestbedState

START_TIMEOUT_S = 180.0  # the first start compiles the Numba kernels
# Testbeds of one process (the runner's parallel jobs) start one at a time: the free ports
# a run folder names are bound by its services before the next run folder picks its own.
# A first start that compiles kernels then does so once for the starts that follow.
_STARTING = threading.Lock()


class StateMismatchError(TestbedError):
    """A service reports a state other than the one the scenario asked for."""


class Testbed:
    """The services of one run, started for ``state`` in ``folder``."""

    __test__ = False

    def __init__(
        self,
        state: TestbedState,
        folder: Path | None = None,
        *,
        controller_service: bool = False,
        log_level: str = "warning",
    ) -> None:
        self.state = state
        self.folder = folder or Path(tempfile.mkdtemp(prefix="smtb-run-"))
        self.controller_service = controller_service
        self.log_level = log_level
        self.run: RunFolder | None = None
        self.proc: process.Popen | None = None
        self.pids: dict[str, int] = {}
        self._confirmed = False

    @property
    def layout(self) -> RunFolder:
        """Return the run folder description (after :meth:`start`)."""
        if self.run is None:
            raise TestbedError("the testbed is not started")
        return self.run

    def topology(self) -> Topology:
        """Return the names the operations talk to."""
        return Topology(
            gateways=("gateway",),
            ca_url=self.layout.ca_url,
            ca_secret=ADMIN_SECRET if self.layout.ca_url else "",
            run_dir=str(self.layout.folder),
        )

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Write the run folder and start every service; raise ServiceError if one fails."""
        with _STARTING:
            self.run = write_run_folder(self.state, self.folder, controller=self.controller_service)
            argv = [SMTB, "up", "--config", str(self.run.config), "--log-level", self.log_level]
            log = (self.folder / "supervisor.log").open("ab")
            try:
                self.proc = process.spawn(argv, ready_timeout=timeout, stdout=log, stderr=log)
            except ServiceError as exc:
                raise ServiceError(f"{exc}; see {self.folder / 'logs'}") from exc
            finally:
                log.close()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the supervisor and with it every service; ServiceError if a process is left."""
        if self.proc is not None:
            process.stop(self.proc, timeout=timeout)
        left = [name for name, pid in self.pids.items() if _wait_gone(pid, 5.0)]
        if left:
            raise ServiceError(f"processes still running after stop: {', '.join(left)}")

    def __enter__(self) -> Testbed:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextlib.asynccontextmanager
    async def controller(self, timeout_s: float = 10.0) -> AsyncIterator[Controller]:
        """Connect, apply and confirm the defined state (first time), yield a Controller."""
        bus = BusClient(self.layout.endpoints, name="controller-client")
        events = EventLog()
        try:
            await bus.publisher.wait_connected(5.0)
            await events.start(bus)
            ctx = OpContext(bus=bus, events=events, topology=self.topology(), timeout_s=timeout_s)
            ctl = Controller(ctx, testbed=self)
            await self._wait_services(ctx)
            if not self._confirmed:
                await apply_state(ctl, self.state)
                await confirm_state(ctl, self)
                self._confirmed = True
            yield ctl
        finally:
            await events.stop()
            bus.close()

    async def _wait_services(self, ctx: OpContext, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for name, _kind in self.layout.services:
            while True:
                try:
                    ping = await ctx.request(name, topics.SERVICE_PING, timeout=2.0)
                    self.pids[name] = int(ping["pid"])
                    break
                except PeerError as exc:
                    if time.monotonic() > deadline:
                        raise ServiceError(f"{name} does not answer: {exc}") from exc
                    await asyncio.sleep(0.1)
        if self.proc is not None:
            self.pids["supervisor"] = self.proc.pid


def _wait_gone(pid: int, timeout: float) -> bool:
    """Return True if ``pid`` is still alive after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return True
        time.sleep(0.05)
    return False


async def apply_state(ctl: Controller, state: TestbedState) -> None:
    """Run the set-state operations the state needs after the services started."""
    for meter, key in state.keys.items():
        await ctl.call("meter_key", meter=meter, key=key)
    for fault in state.channel.faults:
        await ctl.call("channel_fault", **fault)
    for relay, closed in state.relays.items():
        await ctl.call("relay", relay=int(relay), closed=closed)


async def confirm_state(ctl: Controller, testbed: Testbed) -> None:
    """Compare what the services report with the state; StateMismatchError on a difference."""
    state, run = testbed.state, testbed.layout
    problems: list[str] = []
    farm = await ctl.call("counters", service="sensorfarm")
    want_meters = len(state.meters) or state.population.count
    if farm.get("meters") != want_meters:
        problems.append(f"sensor farm has {farm.get('meters')} meters, state asks {want_meters}")
    for meter in run.meters[:1]:  # ids come from the seed: the farm must know the first
        try:
            await ctl.call("meter", meter=meter)
        except PeerError as exc:
            problems.append(f"sensor farm lacks meter {meter} of seed {state.seed}: {exc}")
    problems += await _confirm_gateway(ctl, state, run)
    problems += _confirm_clock(await ctl.call("clock"), state)
    if problems:
        raise StateMismatchError("testbed not in the defined state: " + "; ".join(problems))


async def _confirm_gateway(ctl: Controller, state: TestbedState, run: RunFolder) -> list[str]:
    problems = []
    for gw in state.gateways:
        status = await ctl.call("gateway_status", gateway=gw)
        want = len(run.registered.get(gw, ()))
        if status.get("gateway") != gw:
            problems.append(f"gateway instance {gw} reports itself as {status.get('gateway')}")
        elif status.get("meters") != want:
            problems.append(
                f"gateway {gw} has {status.get('meters')} meters registered, state asks {want}"
            )
    return problems


def _confirm_clock(clock: dict[str, float], state: TestbedState) -> list[str]:
    start = state.clock.start
    problems = [
        f"{name} is at t={t}, before the start {start}" for name, t in clock.items() if t < start
    ]
    stepped = state.clock.mode == "stepped"
    if stepped and state.clock.step_control == "request" and clock.get("sensorfarm") != start:
        problems.append(f"stepped sensor farm ran on its own to t={clock.get('sensorfarm')}")
    if state.clock.mode != "stepped":
        wall = time.time() if state.clock.start == 0 else None
        if wall is not None and abs(clock.get("sensorfarm", wall) - wall) > 60:
            problems.append("sensor farm clock is not near wall time")
    return problems


def stop_quietly(testbed: Testbed) -> None:
    """Stop ``testbed``, ignoring what is already gone (for teardown paths)."""
    with contextlib.suppress(ServiceError):
        testbed.stop()


def describe(testbed: Testbed) -> dict[str, Any]:
    """Return where the run lives (for reports)."""
    run = testbed.layout
    return {"folder": str(run.folder), "config": str(run.config), "meters": list(run.meters)}
