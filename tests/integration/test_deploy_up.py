"""`smtb up --config deploy/testbed.toml`: the live neighbourhood comes up and answers.

The deploy file is run as it is, with only its ports (all in 7700..7799) moved to free
ones: the wiring and the wired lines are tables, so no environment variable can move
them. :func:`relocated` rewrites every port of the text consistently and copies the
files it names into a scratch folder that the testbed runs in.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from smtestbed.services._runtime.bus import Endpoints
from smtestbed.services._runtime.errors import TestbedError
from smtestbed.services._runtime.testing import free_port, pid_alive, wait_until
from smtestbed.services.broker.cli import fetch_status
from smtestbed.services.supervisor.config import load_specs

pytestmark = pytest.mark.timeout(120)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PORT = re.compile(r"\b77\d\d\b")  # the deploy file keeps its ports in 7700..7799
WIRED_METER = "70000001"
UP_TIMEOUT_S = 60.0
# What this testbed cannot do (scaled clock, no PKI, no signing keys in the run folder):
# refused 422 naming the setting or parameter at fault, never a 5xx.
REFUSED: dict[str, dict[str, Any]] = {
    "advance": {"by": 60.0},
    "push_firmware": {"version": "1.1.0"},
    "wan_request": {"op": "status"},
    "certificate": {"csr": "-", "profile": "smgw-tls", "token": "-"},
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Relocated:
    """The deploy file in a scratch folder with its ports moved."""

    folder: Path
    config: Path
    ports: dict[int, int]  # deploy port -> free port
    endpoints: Endpoints
    controller: str  # base URL of the controller's REST API


def relocated(folder: Path) -> Relocated:
    """Copy deploy/testbed.toml and the files it names into ``folder``, ports moved."""
    text = (DEPLOY / "testbed.toml").read_text()
    ports: dict[int, int] = {}

    def move(match: re.Match[str]) -> str:
        old = int(match.group(0))
        if old not in ports:  # two deploy ports never share one
            fresh = (p for p in (free_port() for _ in range(100)) if p not in ports.values())
            ports[old] = next(fresh)
        return str(ports[old])

    moved = PORT.sub(move, text)
    (folder / "deploy").mkdir(parents=True)
    config = folder / "deploy" / "testbed.toml"
    config.write_text(moved)
    for name in ("registry.csv", "wired-meters.csv"):
        shutil.copy(DEPLOY / name, folder / "deploy" / name)
    data = tomllib.loads(moved)
    common = data["common"]
    return Relocated(
        folder=folder,
        config=config,
        ports=ports,
        endpoints=Endpoints(pub=common["bus_pub"], sub=common["bus_sub"], rpc=common["bus_rpc"]),
        controller=f"http://127.0.0.1:{data['controller']['http_port']}",
    )


@contextmanager
def smtb_up(bed: Relocated) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``smtb up --config deploy/testbed.toml`` in the scratch folder; SIGINT at the end."""
    env = {
        **os.environ,
        "SMTB_COMMON_LOG_FORMAT": "json",
        "SMTB_SUPERVISOR_LOG_DIR": str(bed.folder / "logs"),
    }
    smtb = str(Path(sys.executable).with_name("smtb"))
    with (bed.folder / "up.log").open("wb") as log:
        up = subprocess.Popen(
            [smtb, "up", "--config", "deploy/testbed.toml"],
            cwd=bed.folder,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield up
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(up.pid, signal.SIGKILL)
                up.wait(timeout=10)


async def all_alive(
    bed: Relocated, up: subprocess.Popen[bytes], names: set[str]
) -> dict[str, Any] | None:
    """Return the broker's status once every service in ``names`` is alive, else None."""
    if up.poll() is not None:
        raise AssertionError(f"smtb up exited with {up.returncode} before all were alive")
    try:
        status = await fetch_status(bed.endpoints, 1.0)
    except TestbedError:
        return None
    alive = {s["name"] for s in status["services"] if s["state"] == "alive"}
    return status if names <= alive else None


async def call(
    http: aiohttp.ClientSession, bed: Relocated, op: str, params: dict[str, Any] | None = None
) -> Any:
    """POST one operation to the controller's REST API; return (status, JSON body)."""
    async with http.post(f"{bed.controller}/api/v1/{op}", json=params or {}) as reply:
        return reply.status, await reply.json()


def test_deploy_testbed_runs_and_the_controller_switches_the_wired_line(tmp_path: Path) -> None:
    """Every service of deploy/testbed.toml comes up; the controller's REST API serves
    /openapi.json, refuses what needs a stepped clock, a PKI or signing keys naming the
    setting at fault (422), and relay 1 opened
    over REST makes the gateway report the wired meter missing; closed again, its
    readings come back."""
    bed = relocated(tmp_path)
    names = {spec.name for spec in load_specs(bed.config)} - {"broker"}

    async def scenario(up: subprocess.Popen[bytes]) -> dict[str, Any]:
        status = await wait_until(lambda: all_alive(bed, up, names), timeout=UP_TIMEOUT_S)
        timeout = aiohttp.ClientTimeout(total=40.0)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            async with http.get(f"{bed.controller}/openapi.json") as reply:
                document = await reply.json()

            async def readings() -> list[Any] | None:
                code, rows = await call(http, bed, "readings", {"meter": WIRED_METER})
                return rows if code == 200 and rows else None

            first = await wait_until(readings, timeout=20.0)
            refused = {op: await call(http, bed, op, params) for op, params in REFUSED.items()}
            _, mark = await call(http, bed, "mark")
            opened = await call(http, bed, "relay", {"relay": 1, "closed": False})
            missing = await call(
                http,
                bed,
                "wait_event",
                {
                    "kind": "gateway.meter_missing",
                    "match": {"meter": WIRED_METER},
                    "since": mark["mark"],
                    "timeout_s": 20.0,
                },
            )
            at_close = len((await call(http, bed, "readings", {"meter": WIRED_METER}))[1])
            closed = await call(http, bed, "relay", {"relay": 1, "closed": True})

            async def more() -> list[Any] | None:
                rows = await readings()
                return rows if rows and len(rows) > at_close else None

            after = await wait_until(more, timeout=20.0)
        return {
            "status": status,
            "document": document,
            "first": first,
            "refused": refused,
            "opened": opened,
            "missing": missing,
            "at_close": at_close,
            "closed": closed,
            "after": after,
        }

    with smtb_up(bed) as up:
        try:
            out = asyncio.run(scenario(up))
        except BaseException:
            sys.stderr.write((bed.folder / "up.log").read_text()[-4000:])
            raise
        pids = [s["pid"] for s in out["status"]["services"]] + [out["status"]["broker"]["pid"]]
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=30) == 0
    assert [p for p in pids if pid_alive(p)] == []
    assert "/api/v1/relay" in out["document"]["paths"]
    assert out["first"][0]["meter"] == WIRED_METER
    assert {op: (code, body["field"]) for op, (code, body) in out["refused"].items()} == {
        "advance": (422, "clock_mode"),
        "push_firmware": (422, "signer"),
        "wan_request": (422, "operation"),
        "certificate": (422, "operation"),
    }
    assert out["opened"] == (200, {**out["opened"][1], "closed": False, "changed": True})
    found = out["missing"][1]
    assert found["found"] is True
    assert found["event"]["body"]["meter"] == WIRED_METER
    assert found["event"]["body"]["line"] == f"tcp://127.0.0.1:{bed.ports[7721]}"
    assert out["closed"][1]["closed"] is True
    assert len(out["after"]) > out["at_close"]
    assert json.dumps(out["after"][-1]).count(WIRED_METER) >= 1
