"""`smtb up`: start in order, restart a killed service, stop everything on Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from smtestbed.proto import topics
from smtestbed.services._runtime.bus import Endpoints
from smtestbed.services._runtime.errors import TestbedError
from smtestbed.services._runtime.testing import (
    bus_client,
    pid_alive,
    wait_for_event,
    wait_until,
)
from smtestbed.services.broker.cli import fetch_status

pytestmark = pytest.mark.timeout(90)


def _testbed(tmp_path: Path, endpoints: Endpoints) -> Path:
    path = tmp_path / "testbed.toml"
    path.write_text(f"""
[common]
bus_pub = "{endpoints.pub}"
bus_sub = "{endpoints.sub}"
bus_rpc = "{endpoints.rpc}"
heartbeat_s = 0.2
log_format = "json"

[supervisor]
restart_backoff_s = 0.2

[[services]]
name = "ticker-a"
run = "sample"
after = ["broker"]
set = {{ interval_s = 0.1 }}

[[services]]
name = "broker"
run = "broker"

[[services]]
name = "ticker-b"
run = "sample"
after = ["broker", "ticker-a"]
""")
    return path


async def _status(endpoints: Endpoints) -> dict[str, Any] | None:
    try:
        return await fetch_status(endpoints, 1.0)
    except TestbedError:
        return None


def _alive(status: dict[str, Any] | None, names: set[str]) -> dict[str, Any] | None:
    if status is None:
        return None
    rows = {s["name"]: s for s in status["services"] if s["state"] == "alive"}
    return rows if names <= rows.keys() else None


def test_up_restarts_a_killed_service_and_stops_all_on_interrupt(
    endpoints: Endpoints, tmp_path: Path
) -> None:
    """SIGKILL on a service brings it back (status and event); SIGINT leaves no process behind."""
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "smtestbed.services.supervisor",
            "--config",
            str(_testbed(tmp_path, endpoints)),
        ],
        stdout=(tmp_path / "up.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    names = {"supervisor", "ticker-a", "ticker-b"}

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], list[int]]:
        first = await wait_until(lambda: _alive_now(endpoints, names), timeout=30)
        async with bus_client(endpoints) as client:
            sub = client.subscribe([topics.SUPERVISOR_RESTARTED])
            await sub.wait_connected()
            os.kill(first["ticker-a"]["pid"], signal.SIGKILL)
            event = await wait_for_event(sub, lambda e: e.body["name"] == "ticker-a", timeout=15)
        after = await wait_until(
            lambda: _restarted_now(endpoints, first["ticker-a"]["pid"]), timeout=15
        )
        status = await fetch_status(endpoints, 2.0)
        pids = [s["pid"] for s in status["services"]] + [status["broker"]["pid"]]
        async with bus_client(endpoints) as client:
            for name in ("ticker-a", "ticker-b"):  # started at different times, one restarted
                pong = await client.request(name, topics.SERVICE_PING, timeout=5.0)
                epochs.add(pong["clock_epoch"])
        return event.body, after, pids

    epochs: set[float] = set()

    try:
        event, after, pids = asyncio.run(scenario())
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=30) == 0
    finally:
        if up.poll() is None:
            up.kill()
    assert len(epochs) == 1, f"services of one smtb up read different clocks: {epochs}"
    assert event["restarts"] == 1
    assert after["ticker-a"]["restarts"] == 1
    assert after["ticker-a"]["pid"] == event["pid"]
    assert [p for p in pids if pid_alive(p)] == []
    log = (tmp_path / "up.log").read_text()
    order = [line for line in log.splitlines() if '"child_stopped"' in line]
    assert [
        n for line in order for n in ("ticker-b", "ticker-a", "broker") if f'"{n}"' in line
    ] == ["ticker-b", "ticker-a", "broker"]


async def _alive_now(endpoints: Endpoints, names: set[str]) -> dict[str, Any] | None:
    return _alive(await _status(endpoints), names)


async def _restarted_now(endpoints: Endpoints, old_pid: int) -> dict[str, Any] | None:
    rows = _alive(await _status(endpoints), {"ticker-a"})
    if rows and rows["ticker-a"]["pid"] != old_pid:
        return rows
    return None


def test_up_refuses_a_dependency_cycle(tmp_path: Path) -> None:
    """A testbed whose services wait for each other is refused with one line, exit 1."""
    path = tmp_path / "cycle.toml"
    path.write_text("""
[[services]]
name = "a"
run = "sample"
after = ["b"]
[[services]]
name = "b"
run = "sample"
after = ["a"]
""")
    result = subprocess.run(
        [sys.executable, "-m", "smtestbed.services.supervisor", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "dependency cycle: a -> b -> a" in lines[0]


def _layered(tmp_path: Path, endpoints: Endpoints, *, bad: bool = False) -> Path:
    """Broker; a and b after the broker only; c after both (b fails at start if ``bad``)."""
    b_settings = "{ interval_s = -1.0 }" if bad else "{ interval_s = 0.0 }"
    path = tmp_path / "layered.toml"
    path.write_text(f"""
[common]
bus_pub = "{endpoints.pub}"
bus_sub = "{endpoints.sub}"
bus_rpc = "{endpoints.rpc}"
heartbeat_s = 0.2
log_format = "json"

[[services]]
name = "broker"
run = "broker"

[[services]]
name = "a"
run = "sample"
after = ["broker"]
set = {{ interval_s = 0.0 }}

[[services]]
name = "b"
run = "sample"
after = ["broker"]
set = {b_settings}

[[services]]
name = "c"
run = "sample"
after = ["a", "b"]
set = {{ interval_s = 0.0 }}
""")
    return path


def _up(path: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "smtestbed.services.supervisor", "--config", str(path)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _child_events(log: Path) -> list[tuple[str, str, int]]:
    """Return (event, name, pid) of the supervisor's child_* lines, in log order."""
    out = []
    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if str(entry.get("event", "")).startswith("child_") and "name" in entry:
            out.append((entry["event"], entry["name"], int(entry.get("pid", 0))))
    return out


def _at(events: list[tuple[str, str, int]], event: str, name: str) -> int:
    return [(e, n) for e, n, _ in events].index((event, name))


def test_up_starts_independent_services_together_and_each_after_its_dependencies(
    endpoints: Endpoints, tmp_path: Path
) -> None:
    """a and b (after the broker only) start together, c only once both are ready; the stop
    runs in reverse (c first, a and b together, the broker last) and leaves no process."""
    log = tmp_path / "up.log"
    up = _up(_layered(tmp_path, endpoints), log)
    try:
        asyncio.run(wait_until(lambda: _alive_now(endpoints, {"a", "b", "c"}), timeout=30))
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=30) == 0
    finally:
        if up.poll() is None:
            up.kill()
    ev = _child_events(log)
    started = max(_at(ev, "child_started", n) for n in ("a", "b"))
    assert _at(ev, "child_started", "broker") < _at(ev, "child_starting", "a")
    assert max(_at(ev, "child_starting", n) for n in ("a", "b")) < min(
        _at(ev, "child_started", n) for n in ("a", "b")
    )
    assert _at(ev, "child_starting", "c") > started
    assert _at(ev, "child_stopped", "c") < min(_at(ev, "child_stopping", n) for n in "ab")
    assert max(_at(ev, "child_stopping", n) for n in "ab") < min(
        _at(ev, "child_stopped", n) for n in "ab"
    )
    assert _at(ev, "child_stopping", "broker") > max(_at(ev, "child_stopped", n) for n in "ab")
    pids = [pid for e, _, pid in ev if e == "child_started"]
    assert len(pids) == 4
    assert [p for p in pids if pid_alive(p)] == []


def test_up_stops_every_started_service_when_one_fails_to_start(
    endpoints: Endpoints, tmp_path: Path
) -> None:
    """b exits before it is ready: up exits 1, c is never started, a (started beside b) is
    stopped, and no process is left."""
    log = tmp_path / "up.log"
    up = _up(_layered(tmp_path, endpoints, bad=True), log)
    try:
        assert up.wait(timeout=60) == 1
    finally:
        if up.poll() is None:
            up.kill()
    ev = _child_events(log)
    names = {(e, n) for e, n, _ in ev}
    assert ("child_starting", "c") not in names
    assert ("child_started", "b") not in names
    # a was launched beside b; when b fails first, a's start is cancelled (no
    # child_started) but its process is still stopped
    assert {("child_starting", "a"), ("child_stopped", "a"), ("child_stopped", "broker")} <= names
    assert "child_start_failed" in log.read_text()
    pids = [pid for e, _, pid in ev if e == "child_started"]
    assert [p for p in pids if pid_alive(p)] == []
