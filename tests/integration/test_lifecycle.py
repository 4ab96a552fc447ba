"""Service life: graceful stop, second Ctrl-C, JSON logs, supervisor stop timeout."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from smtestbed.services._runtime import process
from smtestbed.services._runtime.bus import Endpoints
from smtestbed.services._runtime.testing import service_process

pytestmark = pytest.mark.timeout(60)


def test_sigterm_stops_gracefully_with_exit_code_0(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """SIGTERM ends a service cleanly: exit 0 and a service_stopped log entry."""
    log = tmp_path / "s.log"
    with service_process("sample", endpoints, log_path=log) as proc:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert events[-2:] == ["service_stopping", "service_stopped"]


def test_second_interrupt_kills_a_slow_stop(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """The first Ctrl-C begins a slow graceful stop; the second ends the process at once."""
    with service_process(
        "sample", endpoints, settings={"stop_delay_s": 30}, log_path=tmp_path / "s.log"
    ) as proc:
        os.kill(proc.pid, signal.SIGINT)
        time.sleep(0.5)
        assert proc.poll() is None  # still stopping gracefully
        start = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=5) == 130
        assert time.monotonic() - start < 3


def test_logs_are_json_lines_with_service_and_instance(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """Without a terminal every log line is a JSON object naming service and instance."""
    log = tmp_path / "s.log"
    with service_process("sample", endpoints, instance="logger", log_path=log):
        pass
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert entries
    assert all(e["service"] == "sample" and e["instance"] == "logger" for e in entries)
    assert {"service_starting", "service_ready", "service_stopped"} <= {e["event"] for e in entries}
    assert all("timestamp" in e and "level" in e for e in entries)


def test_stop_escalates_to_sigkill_after_the_timeout(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """process.stop sends SIGKILL when a service overruns its stop timeout."""
    with service_process(
        "sample", endpoints, settings={"stop_delay_s": 30}, log_path=tmp_path / "s.log"
    ) as proc:
        start = time.monotonic()
        code = process.stop(proc, timeout=0.5)
        assert code == -signal.SIGKILL
        assert time.monotonic() - start < 3
