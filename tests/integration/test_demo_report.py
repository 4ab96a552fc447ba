"""The run report from a real run, opened in headless Chromium.

Sensor farm (scaled clock), channel and gateway run as processes; the test records their
events from the bus into ``scenarios/<name>/events.jsonl`` as the scenario runner does,
writes ``results.json`` with one scenario that has those events and one failed scenario
that has none, builds ``report.html`` and takes a screenshot of it with the system's
Chromium.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib import image
from smtestbed.proto import topics
from smtestbed.services._runtime.bus import Endpoints, Event, Subscription
from smtestbed.services._runtime.testing import (
    bus_client,
    endpoint_settings,
    free_port,
    random_endpoints,
    service_process,
    wait_until,
)
from smtestbed.services.controller.report import NO_EVENTS, write_html_report
from smtestbed.services.controller.report_data import read_events
from smtestbed.services.controller.report_plots import channel_series, totals

from tests.integration.gateway_helpers import configured_process, smtb

pytestmark = pytest.mark.timeout(120)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOT_SIZE = (1280, 2000)
METERS = 300
WINDOWS = 30  # channel windows to record (5 s each, 50 x real time: about 3 s)
GATEWAY_BATCHES = 10  # gateway.frame_accepted events to record (one per batch it ingested)
UNREGISTERED_EVERY = 5  # every fifth meter is left out of the gateway's registry


def write_config(folder: Path, endpoints: Endpoints) -> Path:
    """Write a testbed TOML: a scaled farm, 300 meters every 10 s near one stepped gateway."""
    farm_out, lmn = (f"tcp://127.0.0.1:{free_port()}" for _ in range(2))
    lines = ["[common]", *(f'{k} = "{v}"' for k, v in endpoint_settings(endpoints).items())]
    lines += ['clock_mode = "scaled"', "clock_scale = 50.0", "heartbeat_s = 0.2"]
    lines += ["", "[sensorfarm]", "seed = 5", f"meters = {METERS}", "security = 5"]
    lines += ["interval_s = 10.0", "window_s = 5.0", "area_m = 100.0", f'output = "{farm_out}"']
    lines += ["", "[channel]", f'input_endpoint = "{farm_out}"', f'output_endpoint = "{lmn}"']
    lines += ["seed = 5", 'receivers = [{name = "gw0", x = 50.0, y = 50.0}]']
    # a stepped gateway follows the windows' simulated time, so its events and the
    # channel's share one time axis (scaled clocks start with their own process)
    lines += ["", "[gateway]", 'clock_mode = "stepped"', f'input_endpoint = "{lmn}"']
    lines += [f'data_dir = "{folder / "gw"}"']
    lines += [f'registry_file = "{folder / "registry.csv"}"', 'synchronous = "NORMAL"']
    path = folder / "testbed.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_registry(folder: Path, config: Path) -> None:
    """Register the population's meters at gw0, all but every fifth one."""
    everyone = folder / "registry-all.csv"
    done = smtb("sensorfarm", "registry", "--config", str(config), "--out", str(everyone))
    assert done.returncode == 0, done.stderr
    with everyone.open(newline="") as handle:
        rows = list(csv.reader(handle))
    kept = [rows[0], *(r for i, r in enumerate(rows[1:]) if i % UNREGISTERED_EVERY)]
    with (folder / "registry.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(kept)


def line(event: Event) -> dict[str, Any]:
    """Return the events.jsonl object of one bus event."""
    env = event.envelope
    return {
        "kind": env.kind,
        "src": env.src,
        "seq": env.seq,
        "t_sim": env.t_sim,
        "t_wall": env.t_wall,
        "body": env.body,
    }


async def _drain(sub: Subscription, into: list[Event]) -> None:
    while True:
        into.append(await sub.recv())


def _enough(events: list[Event]) -> bool:
    kinds = [e.kind for e in events]
    return (
        kinds.count(topics.CHANNEL_WINDOW) >= WINDOWS
        and kinds.count(topics.SENSORFARM_WINDOW) >= 2
        and kinds.count(topics.GATEWAY_FRAME_ACCEPTED) >= GATEWAY_BATCHES
        and topics.GATEWAY_FRAME_REJECTED in kinds
    )


async def _record(endpoints: Endpoints, config: Path, folder: Path) -> list[Event]:
    events: list[Event] = []
    async with bus_client(endpoints) as client:
        sub = client.subscribe(["channel.", "sensorfarm.", "gateway."])
        await sub.wait_connected()
        drain = asyncio.create_task(_drain(sub, events))
        try:
            with configured_process("sensorfarm", endpoints, config, folder / "farm.log"):
                await wait_until(lambda: _enough(events), timeout=60, interval=0.1)
        finally:
            drain.cancel()
    return events


def record_run(folder: Path) -> list[Event]:
    """Run farm, channel and gateway until 30 windows and 10 gateway batches went through."""
    endpoints = random_endpoints()
    config = write_config(folder, endpoints)
    write_registry(folder, config)
    with contextlib.ExitStack() as stack:
        stack.enter_context(service_process("broker", endpoints, log_path=folder / "broker.log"))
        stack.enter_context(configured_process("gateway", endpoints, config, folder / "gw.log"))
        stack.enter_context(configured_process("channel", endpoints, config, folder / "ch.log"))
        return asyncio.run(_record(endpoints, config, folder))


def write_report_folder(report: Path, events: list[Event]) -> None:
    """Write the run's events and a results.json with a passed and a failed scenario."""
    events_file = "scenarios/radio-chain/events.jsonl"
    (report / "scenarios" / "radio-chain").mkdir(parents=True)
    (report / events_file).write_text("".join(json.dumps(line(e)) + "\n" for e in events))
    check = {"what": "frames accepted", "ok": True, "detail": "gw0"}
    scenarios = [
        {
            "name": "radio-chain",
            "description": "300 meters, the channel and one gateway",
            "outcome": "passed",
            "duration_s": 3.0,
            "message": "",
            "checks": [check],
            "control": {"outcome": "failed-as-expected", "duration_s": 1.0, "message": ""},
            "events_file": events_file,
        },
        {
            "name": "never-started",
            "description": "a scenario whose testbed did not come up",
            "outcome": "error",
            "duration_s": 0.1,
            "message": "gateway not ready",
            "checks": [],
            "control": {"outcome": "not-run", "duration_s": 0.0, "message": ""},
            "events_file": "scenarios/never-started/events.jsonl",
        },
    ]
    doc: dict[str, Any] = {"testbed": "smtestbed", "version": "0.1.0"}
    doc |= {"started": "2026-01-01T00:00:00+00:00", "duration_s": 3.1}
    doc |= {"scenarios": scenarios, "summary": {}}
    (report / "results.json").write_text(json.dumps(doc))


def screenshot(page: Path, shot: Path, profile: Path) -> None:
    """Open ``page`` in headless Chromium and save a 1280 x 2000 screenshot."""
    argv = [
        CHROMIUM,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        f"--user-data-dir={profile}",
        f"--screenshot={shot}",
        f"--window-size={SHOT_SIZE[0]},{SHOT_SIZE[1]}",
        page.resolve().as_uri(),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report folder built from one real run (shared by the tests here)."""
    folder = tmp_path_factory.mktemp("demo-report")
    events = record_run(folder)
    out = folder / "report"
    out.mkdir()
    write_report_folder(out, events)
    write_html_report(out)
    return out


def test_report_plots_the_recorded_run_and_lists_every_scenario(report: Path) -> None:
    """The page has both scenario rows, the totals and the run's figure, and the run's counts."""
    page = (report / "report.html").read_text()
    events = read_events(report / "scenarios" / "radio-chain" / "events.jsonl")
    channel = channel_series(events)
    sums = totals(events)
    assert len(channel.t) >= WINDOWS
    assert sums.offered > 0
    assert sums.collided > 0  # G is about 0.2: collisions are certain in 30 windows
    assert sums.accepted > 0
    assert sums.rejected > 0  # every fifth meter is not registered
    for name in ("radio-chain", "never-started"):
        assert f"id='row-{name}'" in page
    images = re.findall(r"<img class='plot' alt='([^']*)' src='data:image/png;base64,", page)
    assert images == ["totals of every scenario", "radio-chain: load, collisions, throughput"]
    assert f"{topics.CHANNEL_WINDOW} &times; {len(channel.t)}" in page
    assert NO_EVENTS in page.split("id='scenario-never-started'")[1]
    assert "FAILED (error)" in page


def test_report_opens_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    """Chromium renders report.html into a full-size screenshot that is not blank."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (make system-deps installs Debian's chromium)")
    shot = tmp_path / "report.png"
    screenshot(report / "report.html", shot, tmp_path / "profile")
    pixels = np.asarray(image.imread(str(shot)))
    assert pixels.shape[:2] == (SHOT_SIZE[1], SHOT_SIZE[0])
    grey = pixels[..., :3].mean(axis=2)
    assert float(grey.var()) > 1e-3  # not one flat colour
    assert float((grey < 0.9).mean()) > 0.02  # text, tables and plots cover the page
