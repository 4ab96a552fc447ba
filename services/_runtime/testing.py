"""Factories for tests and benchmarks: services on random 127.0.0.1 ports.

Everything here is real: real sockets, real processes. Each factory is a
context manager that tears down what it started, and every wait has a
timeout.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from smtestbed.services._runtime import process
from smtestbed.services._runtime.bus import Endpoints, Event, Subscription
from smtestbed.services._runtime.client import BusClient
from smtestbed.services._runtime.lifecycle import Service, ServiceRunner

S = TypeVar("S", bound=Service)
_PORTS = random.Random(os.getpid() ^ time.time_ns())
# Ports this process handed out lately: a testbed's layout takes several before any is
# bound, and a port that merely tested free must not come out twice.
_GIVEN_MAX = 2000
_GIVEN: set[int] = set()
_GIVEN_ORDER: collections.deque[int] = collections.deque()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    Ports come from below Linux's ephemeral range (32768-60999), so that an
    outgoing connection made meanwhile cannot take the port first.
    """
    low, high = _port_range()
    for _ in range(200):
        port = _PORTS.randrange(low, high)
        if port in _GIVEN:
            continue  # handed out already: its user may not have bound it yet
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        _GIVEN_ORDER.append(port)
        if len(_GIVEN_ORDER) > _GIVEN_MAX:
            _GIVEN.discard(_GIVEN_ORDER.popleft())
        return port
    raise OSError(f"no free port found in {low}-{high} on 127.0.0.1")


def _port_range() -> tuple[int, int]:
    """Return this process's share of 20000-32000.

    Parallel test workers (pytest-xdist names them gw0, gw1, ... in
    PYTEST_XDIST_WORKER) each draw from their own slice, so a port one worker
    picked and has not bound yet is never picked by another.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker.startswith("gw") or not worker[2:].isdigit() or count < 2:
        return 20000, 32000
    size = 12000 // count
    low = 20000 + size * (int(worker[2:]) % count)
    return low, low + size


def random_endpoints() -> Endpoints:
    """Return broker endpoints on three free loopback ports."""
    return Endpoints(
        pub=f"tcp://127.0.0.1:{free_port()}",
        sub=f"tcp://127.0.0.1:{free_port()}",
        rpc=f"tcp://127.0.0.1:{free_port()}",
    )


def endpoint_settings(endpoints: Endpoints) -> dict[str, str]:
    """Return the ``bus_*`` settings that point a service at ``endpoints``."""
    return {"bus_pub": endpoints.pub, "bus_sub": endpoints.sub, "bus_rpc": endpoints.rpc}


def endpoint_env(endpoints: Endpoints) -> dict[str, str]:
    """Return ``SMTB_COMMON_BUS_*`` variables that point every service at ``endpoints``."""
    return {f"SMTB_COMMON_{k.upper()}": v for k, v in endpoint_settings(endpoints).items()}


@contextlib.contextmanager
def service_process(
    service: str,
    endpoints: Endpoints,
    *,
    instance: str | None = None,
    settings: Mapping[str, Any] | None = None,
    log_path: Path | None = None,
    ready_timeout: float = 20.0,
) -> Iterator[process.Popen]:
    """Run ``smtb <service> run`` as a real process until the block ends."""
    args = ["--instance", instance] if instance else []
    for key, value in (settings or {}).items():
        args += ["--set", f"{key}={value}"]
    env = {**endpoint_env(endpoints), "SMTB_COMMON_LOG_FORMAT": "json"}
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(log_path.open("ab")) if log_path else None
        proc = process.spawn(
            process.service_argv(service, *args),
            env=env,
            ready_timeout=ready_timeout,
            stdout=out,
            stderr=out,
        )
        try:
            yield proc
        finally:
            process.stop(proc, timeout=5.0)


@contextlib.asynccontextmanager
async def service_in_process(service: S, *, ready_timeout: float = 10.0) -> AsyncIterator[S]:
    """Run ``service`` as a task of the current event loop until the block ends."""
    runner = ServiceRunner(service, signals=False)
    task = asyncio.create_task(runner.run())
    ready = asyncio.create_task(runner.ready.wait())
    try:
        done, _ = await asyncio.wait(
            {task, ready}, timeout=ready_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if ready not in done:
            if task in done:
                task.result()  # raises what made the service fail
            raise TimeoutError(f"{service.service} not ready within {ready_timeout} s")
        yield service
    finally:
        ready.cancel()
        runner.stop("test finished")
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10.0)


@contextlib.asynccontextmanager
async def bus_client(endpoints: Endpoints, name: str = "test") -> AsyncIterator[BusClient]:
    """Open an anonymous bus client (publisher, subscriptions, requests)."""
    client = BusClient(endpoints, name=name)
    try:
        await client.publisher.wait_connected(5.0)
        yield client
    finally:
        client.close()


async def wait_for_event(
    sub: Subscription, predicate: Callable[[Event], bool], *, timeout: float = 5.0
) -> Event:
    """Return the first event matching ``predicate``; TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no matching event within {timeout} s")
        event = await asyncio.wait_for(sub.recv(), left)
        if predicate(event):
            return event


async def wait_until(
    check: Callable[[], Any], *, timeout: float = 5.0, interval: float = 0.05
) -> Any:
    """Poll an async or plain ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


def pid_alive(pid: int) -> bool:
    """Return True while a process with ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
    except PermissionError:  # pragma: no cover - another user's process
        return os.path.exists(f"/proc/{pid}")
