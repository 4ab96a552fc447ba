"""Telemetry over MQTT: a real mosquitto (and the embedded amqtt broker), read by mosquitto_sub."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from smtestbed.proto import topics
from smtestbed.services._runtime import process
from smtestbed.services._runtime.bus import Endpoints
from smtestbed.services._runtime.testing import bus_client, free_port, service_process

pytestmark = pytest.mark.timeout(90)

MOSQUITTO = "/usr/sbin/mosquitto"
TICKS = "smtb/sample/tick/events.sample.tick"
FAST = {"heartbeat_s": 0.2, "publish_every_s": 0.2, "status_every_s": 0.2}


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[int]:
    """A mosquitto on a free loopback port, without queue limits; yields the port."""
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\nmax_inflight_messages 0\nlog_dest stderr\n"
    )
    with (tmp_path / "mosquitto.log").open("wb") as log:
        proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=log)
        try:
            _wait_listening(port, proc, timeout=5.0)
            yield port
        finally:
            proc.terminate()
            proc.wait(timeout=5)


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"mosquitto not listening on {port} within {timeout} s")


class MqttLines:
    """A running ``mosquitto_sub -v`` whose lines are read as (topic, payload)."""

    def __init__(self, port: int, *topic_filters: str) -> None:
        argv = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-v"]
        for t in topic_filters:
            argv += ["-t", t]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.lines: queue.Queue[tuple[str, str]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            topic, _, data = raw.decode().rstrip("\n").partition(" ")
            self.lines.put((topic, data))

    def until(self, check: Callable[[str, str], bool], timeout: float) -> tuple[str, str]:
        """Return the first line for which ``check(topic, payload)`` holds."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                topic, data = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if check(topic, data):
                return topic, data
        raise TimeoutError(f"no matching MQTT message within {timeout} s")

    def close(self) -> None:
        """Stop mosquitto_sub."""
        self.proc.terminate()
        self.proc.wait(timeout=5)


def retained(port: int, topic_filter: str, seconds: float = 1.5) -> dict[str, str]:
    """Return the retained messages under ``topic_filter`` as a fresh subscriber sees them."""
    argv = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-v", "--retained-only"]
    argv += ["-t", topic_filter, "-W", str(seconds)]
    out = subprocess.run(argv, capture_output=True, timeout=seconds + 10).stdout.decode()
    return dict(line.partition(" ")[::2] for line in out.splitlines() if line)


def _value_is(expected: int) -> Callable[[str, str], bool]:
    return lambda topic, data: json.loads(data)["value"] == expected


def _telemetry(endpoints: Endpoints, tmp_path: Path, **settings: Any) -> Any:
    return service_process(
        "telemetry",
        endpoints,
        settings={**FAST, "http_port": free_port(), **settings},
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


async def _publish_gateway_events(endpoints: Endpoints) -> None:
    async with bus_client(endpoints) as client:
        for _ in range(2):
            client.publish(topics.GATEWAY_FRAME_ACCEPTED, {"gateway": "smgw-7", "count": 5})
        for _ in range(3):
            body = {"gateway": "smgw-7", "reason": "replay", "message": "old", "meter": "m1"}
            client.publish(topics.GATEWAY_FRAME_REJECTED, body)
        await asyncio.sleep(0.2)  # let the sockets drain before they close


def test_bus_events_reach_mosquitto_sub_as_documented_topics_and_payloads(
    endpoints: Endpoints, broker: process.Popen, mosquitto: int, tmp_path: Path
) -> None:
    """Gateway events become smtb/gateway/<gw>/<metric> with {value, unit, t} totals."""
    with _telemetry(endpoints, tmp_path, mqtt=f"127.0.0.1:{mosquitto}"):
        sub = MqttLines(mosquitto, "smtb/telemetry/+/availability", "smtb/gateway/smgw-7/#")
        try:
            # the retained availability arrives first: from then on we are subscribed
            sub.until(lambda t, d: d == "online", timeout=10)
            start = time.time()
            asyncio.run(_publish_gateway_events(endpoints))
            _, accepted = sub.until(
                lambda t, d: t == "smtb/gateway/smgw-7/frames_accepted" and _value_is(10)(t, d),
                timeout=10,
            )
            _, rejected = sub.until(
                lambda t, d: (
                    t == "smtb/gateway/smgw-7/frames_rejected.replay" and _value_is(3)(t, d)
                ),
                timeout=10,
            )
        finally:
            sub.close()
    payload = json.loads(accepted)
    assert set(payload) == {"value", "unit", "t"}
    assert payload["unit"] == "frames"
    assert start - 1 <= payload["t"] <= time.time()
    assert json.loads(rejected)["unit"] == "frames"


def test_availability_is_retained_and_turns_offline_when_services_stop(
    endpoints: Endpoints, broker: process.Popen, mosquitto: int, tmp_path: Path
) -> None:
    """A late subscriber sees online for running services, offline after they stopped."""
    with _telemetry(endpoints, tmp_path, mqtt=f"127.0.0.1:{mosquitto}"):
        with _sample(endpoints, tmp_path):
            deadline = time.monotonic() + 10
            while "smtb/sample/tick/availability" not in (seen := retained(mosquitto, "smtb/#")):
                assert time.monotonic() < deadline, f"no sample availability in {seen}"
        assert seen["smtb/sample/tick/availability"] == "online"
        assert seen["smtb/telemetry/telemetry/availability"] == "online"
        assert seen["smtb/broker/broker/availability"] == "online"
        time.sleep(1.0)  # the broker's service_gone, then one publication period
        after_sample = retained(mosquitto, "smtb/+/+/availability")
    after_telemetry = retained(mosquitto, "smtb/+/+/availability")
    assert after_sample["smtb/sample/tick/availability"] == "offline"
    assert after_sample["smtb/telemetry/telemetry/availability"] == "online"
    assert after_telemetry["smtb/telemetry/telemetry/availability"] == "offline"


def test_a_killed_telemetry_service_reads_offline_by_its_last_will(
    endpoints: Endpoints, broker: process.Popen, mosquitto: int, tmp_path: Path
) -> None:
    """SIGKILL leaves no time to say goodbye: the MQTT last will sets availability offline."""
    with _telemetry(endpoints, tmp_path, mqtt=f"127.0.0.1:{mosquitto}") as proc:
        before = retained(mosquitto, "smtb/telemetry/+/availability")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        after = retained(mosquitto, "smtb/telemetry/+/availability")
    assert before == {"smtb/telemetry/telemetry/availability": "online"}
    assert after == {"smtb/telemetry/telemetry/availability": "offline"}


async def _mqtt_port(endpoints: Endpoints) -> int:
    async with bus_client(endpoints) as client:
        counters = await client.request("telemetry", topics.SERVICE_COUNTERS_GET)
        return int(counters["mqtt_port"])


def test_embedded_broker_on_a_free_port_serves_mosquitto_sub(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """Without an MQTT setting telemetry brings its own broker; mosquitto_sub reads ticks there."""
    with _sample(endpoints, tmp_path), _telemetry(endpoints, tmp_path, mqtt_port=0):
        port = asyncio.run(_mqtt_port(endpoints))
        availability = retained(port, "smtb/+/+/availability")
        sub = MqttLines(port, TICKS)
        try:
            # amqtt 0.12 also hands a connecting client retained messages of other clients'
            # subscriptions (availability here), so the topic is checked
            _, first = sub.until(lambda t, d: t == TICKS, timeout=10)
            _, second = sub.until(lambda t, d: t == TICKS, timeout=10)
        finally:
            sub.close()
    assert port > 0
    assert availability["smtb/telemetry/telemetry/availability"] == "online"
    assert json.loads(first)["unit"] == "events"
    assert json.loads(second)["value"] > json.loads(first)["value"] > 0
    assert "mqtt" in (tmp_path / "telemetry.log").read_text()
