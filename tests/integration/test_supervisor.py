"""`smtb up`: start in order, restart a killed service, stop everything on Ctrl-C."""

from __future__ import annotations

import asyncio
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
        return event.body, after, pids

    try:
        event, after, pids = asyncio.run(scenario())
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=30) == 0
    finally:
        if up.poll() is None:
            up.kill()
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
