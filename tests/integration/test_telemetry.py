"""The telemetry service as a process: Prometheus /metrics, the live dashboard, smtb top."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import zmq.asyncio
from prometheus_client.parser import text_string_to_metric_families
from smtestbed.proto import topics
from smtestbed.services._runtime import process
from smtestbed.services._runtime.bus import BatchPuller, Endpoints
from smtestbed.services._runtime.testing import (
    bus_client,
    endpoint_env,
    free_port,
    service_process,
)

pytestmark = pytest.mark.timeout(90)

FAST = {"heartbeat_s": 0.2, "publish_every_s": 0.2, "status_every_s": 0.2, "mqtt_port": 0}
CHROMIUM = [
    "/usr/bin/chromium",
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
FARM = {
    "clock_mode": "scaled",
    "clock_scale": 100,
    "seed": 3,
    "meters": 20,
    "interval_s": 10.0,
    "window_s": 1.0,
    "heartbeat_s": 0.2,
}

Metrics = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _telemetry(endpoints: Endpoints, tmp_path: Path, http_port: int) -> Any:
    return service_process(
        "telemetry",
        endpoints,
        settings={**FAST, "http_port": http_port},
        log_path=tmp_path / "telemetry.log",
    )


def _sample(endpoints: Endpoints, tmp_path: Path) -> Any:
    return service_process(
        "sample",
        endpoints,
        instance="tick",
        settings={"heartbeat_s": 0.2, "interval_s": 0.05},
        log_path=tmp_path / "sample.log",
    )


def scrape(port: int) -> Metrics:
    """Read /metrics and parse the Prometheus text format."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def _scrape_until(port: int, check: Callable[[Metrics], bool], timeout: float) -> Metrics:
    deadline = time.monotonic() + timeout
    while True:
        metrics = scrape(port)
        if check(metrics):
            return metrics
        if time.monotonic() > deadline:
            raise TimeoutError(f"metrics not as expected within {timeout} s: {metrics}")
        time.sleep(0.1)


async def _publish_known_events(endpoints: Endpoints) -> None:
    rx = {"delivered": 6, "lost_to_noise": 1, "collided": 2, "receiver_down": 0, "corrupted": 1}
    async with bus_client(endpoints) as client:
        for _ in range(2):
            client.publish(topics.GATEWAY_FRAME_ACCEPTED, {"gateway": "smgw-1", "count": 5})
        for reason in ("replay", "replay", "bad_crc"):
            body = {"gateway": "smgw-1", "reason": reason, "message": "", "meter": "m"}
            client.publish(topics.GATEWAY_FRAME_REJECTED, body)
        client.publish(topics.GATEWAY_FRAME_ACCEPTED, {"gateway": "smgw-1", "count": "many"})
        window = {"window": 1, "offered": 9, "receivers": {"gw-rx": rx}}
        client.publish(topics.CHANNEL_WINDOW, window)
        client.publish(topics.CA_CERT_ISSUED, {"subject": "smgw-1.example", "serial": "0a"})
        await asyncio.sleep(0.2)  # let the sockets drain before they close


def test_prometheus_endpoint_exposes_the_counters_of_bus_events(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """Gateway, channel and CA events appear as exact smtb_* counters; malformed ones do not."""
    port = free_port()
    with _telemetry(endpoints, tmp_path, port):
        asyncio.run(_publish_known_events(endpoints))
        gw = {"service": "gateway", "instance": "smgw-1"}
        own = _key("smtb_up", service="telemetry", instance="telemetry")
        metrics = _scrape_until(
            port,
            lambda m: own in m and any(k[0] == "smtb_certs_issued_total" for k in m),
            timeout=10,
        )
    assert metrics[_key("smtb_frames_accepted_total", **gw)] == 10
    assert metrics[_key("smtb_frames_rejected_total", **gw, reason="replay")] == 2
    assert metrics[_key("smtb_frames_rejected_total", **gw, reason="bad_crc")] == 1
    channel = [v for k, v in metrics.items() if k[0] == "smtb_frames_offered_total"]
    assert channel == [9]
    collided = [v for k, v in metrics.items() if k[0] == "smtb_frames_collided_total"]
    assert collided == [2]
    assert [v for k, v in metrics.items() if k[0] == "smtb_certs_issued_total"] == [1]
    assert metrics[own] == 1
    assert metrics[_key("smtb_up", service="broker", instance="broker")] == 1


@contextlib.asynccontextmanager
async def _drain(output: str) -> AsyncIterator[None]:
    """Take the farm's batches (nobody else does here), so the farm keeps sending."""
    ctx = zmq.asyncio.Context()
    puller = BatchPuller(ctx, output, bind=False)

    async def forever() -> None:
        while True:
            await puller.recv()

    task = asyncio.create_task(forever())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        puller.close()
        ctx.term()


async def _stream(port: int, count: int, timeout: float) -> list[dict[str, Any]]:
    """Read ``count`` summaries from the dashboard's event stream."""
    out: list[dict[str, Any]] = []
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with (
        aiohttp.ClientSession(timeout=client_timeout) as session,
        session.get(f"http://127.0.0.1:{port}/events") as resp,
    ):
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        async for raw in resp.content:
            line = raw.decode().strip()
            if line.startswith("data: "):
                out.append(json.loads(line[6:]))
                if len(out) == count:
                    return out
    raise AssertionError("the event stream ended")


async def _watch_farm(port: int, output: str) -> list[dict[str, Any]]:
    async with _drain(output):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            summaries = await _stream(port, 12, timeout=10)
            sent = [s["meters"]["sent"] for s in summaries]
            if sent[0] > 0 and sent[-1] > sent[0]:
                return summaries
        raise TimeoutError("the farm's telegrams did not grow on the dashboard stream")


def test_dashboard_stream_numbers_grow_while_a_sensor_farm_and_ticks_run(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """The server-sent summaries show telegrams sent and events growing, and the services."""
    port, output = free_port(), f"tcp://127.0.0.1:{free_port()}"
    farm = {**FARM, "output": output, "bind_output": "true"}
    with (
        _telemetry(endpoints, tmp_path, port),
        _sample(endpoints, tmp_path),
        service_process("sensorfarm", endpoints, settings=farm, log_path=tmp_path / "farm.log"),
    ):
        summaries = asyncio.run(_watch_farm(port, output))
    first, last = summaries[0], summaries[-1]
    assert last["events"]["total"] > first["events"]["total"]
    assert last["meters"]["meters"] == 20
    assert last["t"] > first["t"]
    states = {s["name"]: (s["service"], s["state"]) for s in last["services"]}
    assert states["tick"] == ("sample", "alive")
    assert states["sensorfarm"] == ("sensorfarm", "alive")


async def _devtools_page(profile: Path, timeout: float) -> str:
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while not (port_file.exists() and port_file.read_text().strip()):
        if time.monotonic() > deadline:
            raise TimeoutError("chromium did not open its DevTools port")
        await asyncio.sleep(0.1)
    devtools = int(port_file.read_text().split()[0])
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{devtools}/json/list") as resp,
    ):
        targets = await resp.json()
    return str(next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"])


READ_DOM = (
    "JSON.stringify(['updates', 'events-total', 'services-alive', 'status']"
    ".map((id) => document.getElementById(id)?.textContent ?? null)"
    ".concat([document.getElementById('services-body')?.textContent ?? null]))"
)


async def _read_page(url: str, polls: int, every: float) -> list[list[str]]:
    seen: list[list[str]] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        for n in range(1, polls + 1):
            params = {"expression": READ_DOM, "returnByValue": True}
            await ws.send_json({"id": n, "method": "Runtime.evaluate", "params": params})
            while (msg := await asyncio.wait_for(ws.receive_json(), 5))["id"] != n:
                pass
            value = msg["result"]["result"].get("value")
            if value is not None:
                seen.append(json.loads(value))
            await asyncio.sleep(every)
    return seen


def test_dashboard_renders_in_headless_chromium_and_its_numbers_change(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """The page's script fills in the numbers and they change as ticks arrive (real Chromium)."""
    port, profile = free_port(), tmp_path / "chromium"
    with _telemetry(endpoints, tmp_path, port), _sample(endpoints, tmp_path):
        argv = [*CHROMIUM, f"--user-data-dir={profile}", "--remote-debugging-port=0"]
        browser = subprocess.Popen(
            [*argv, f"http://127.0.0.1:{port}/"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = asyncio.run(_devtools_page(profile, timeout=20))
            seen = asyncio.run(_read_page(url, polls=12, every=0.5))
        finally:
            browser.terminate()
            browser.wait(timeout=10)
    live = [s for s in seen if s[3] == "live" and s[0] not in (None, "0")]
    assert len(live) >= 2, seen
    first, last = live[0], live[-1]
    assert int(last[0]) > int(first[0])  # updates received over the event stream
    assert int(last[1]) > int(first[1])  # events counted
    assert int(last[2]) >= 3  # broker, telemetry, tick
    assert "tick" in last[4]
    assert "alive" in last[4]


def test_dashboard_page_and_assets_are_served_without_outside_links(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """Chromium's --dump-dom of the page shows the dashboard; every asset comes from us."""
    port = free_port()
    with _telemetry(endpoints, tmp_path, port):
        argv = [*CHROMIUM, f"--user-data-dir={tmp_path / 'dom'}", "--dump-dom"]
        dom = subprocess.run(
            [*argv, f"http://127.0.0.1:{port}/"], capture_output=True, timeout=60
        ).stdout.decode()
        for path in ("/static/app.js", "/static/app.css", "/api/state"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                assert r.status == 200
    assert "<title>smtestbed telemetry</title>" in dom
    for element in ("events-total", "meters-sent", "ch-collided", "gw-rejected", "ca-issued"):
        assert f'id="{element}"' in dom
    assert "http://" not in dom.replace(f"http://127.0.0.1:{port}", "")
    assert "https://" not in dom


def test_smtb_top_prints_the_services_in_a_bounded_run(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """``smtb top --seconds 2`` ends by itself and shows the services with their state."""
    argv = [
        sys.executable,
        "-c",
        "from smtestbed.services.telemetry.cli import top; top(prog_name='smtb top')",
        "--seconds",
        "2",
    ]
    env = {**os.environ, **endpoint_env(endpoints), "COLUMNS": "120"}
    with _sample(endpoints, tmp_path):
        start = time.monotonic()
        done = subprocess.run(argv, env=env, capture_output=True, timeout=30)
        elapsed = time.monotonic() - start
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()
    assert 2.0 <= elapsed < 15
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 5}
    assert "alive" in rows["tick"]
    assert "sample" in rows["tick"]
    assert int(rows["tick"].split("│")[5]) > 0  # ticks seen on the bus
    assert "alive" in rows["broker"]
    assert "traffic" in out
