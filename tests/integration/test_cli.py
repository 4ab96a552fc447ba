"""The smtb command line: version, show-config, one-line errors, tap."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from smtestbed.services._runtime import process
from smtestbed.services._runtime.bus import Endpoints
from smtestbed.services._runtime.testing import endpoint_env, free_port, service_process
from smtestbed.services._runtime.version import VERSION

pytestmark = pytest.mark.timeout(60)
SMTB = str(Path(sys.executable).with_name("smtb"))


def smtb(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [SMTB, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_version_prints_the_package_version() -> None:
    """`smtb --version` names the installed version."""
    result = smtb("--version")
    assert result.returncode == 0
    assert VERSION in result.stdout


def test_show_config_shows_values_and_their_origin(tmp_path: Path) -> None:
    """show-config resolves file, environment and --set, and says where each came from."""
    path = tmp_path / "t.toml"
    path.write_text("[sample]\ninterval_s = 2.5\n")
    result = smtb(
        "sample",
        "show-config",
        "--config",
        str(path),
        "--set",
        "payload_bytes=9",
        env={"SMTB_COMMON_HEARTBEAT_S": "0.7"},
    )
    assert result.returncode == 0, result.stderr
    lines = {line.split(" = ")[0]: line for line in result.stdout.splitlines() if " = " in line}
    assert lines["interval_s"].startswith("interval_s = 2.5")
    assert "[sample]" in lines["interval_s"]
    assert "SMTB_COMMON_*" in lines["heartbeat_s"]
    assert "0.7" in lines["heartbeat_s"]
    assert "command line" in lines["payload_bytes"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["broker", "run", "--set", "heartbeat_s=abc"], "broker.heartbeat_s: expected a number"),
        (["sample", "run", "--set", "nonsense"], "is not KEY=VALUE"),
        (["broker", "show-config", "--set", "livenes=3"], "broker.livenes: unknown key"),
        (["up", "--config", "/nonexistent/testbed.toml"], "not found"),
    ],
)
def test_bad_option_prints_one_line_and_exits_1(args: list[str], needle: str) -> None:
    """A bad option or config prints a single line naming the key; exit code 1."""
    result = smtb(*args)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]


def test_status_without_broker_fails_within_its_timeout() -> None:
    """`smtb status` with nobody listening says so in one line after --timeout."""
    port = free_port()
    result = smtb("status", "--timeout", "0.5", "--set", f"bus_rpc=tcp://127.0.0.1:{port}")
    assert result.returncode == 1
    assert "no reply from 'broker'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_broker_refuses_a_port_in_use(endpoints: Endpoints, broker: process.Popen) -> None:
    """A second broker on the same endpoints exits 1 with the reason, no traceback."""
    result = subprocess.run(
        process.service_argv("broker"),
        capture_output=True,
        text=True,
        timeout=30,
        env={**endpoint_env(endpoints), "SMTB_COMMON_LOG_FORMAT": "json"},
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "cannot bind" in result.stderr


def test_tap_prints_live_events(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """`smtb bus tap sample.` prints ticks with kind, source and sequence number."""
    with service_process(
        "sample", endpoints, settings={"interval_s": 0.05}, log_path=tmp_path / "s.log"
    ):
        result = smtb(
            "bus", "tap", "sample.", "--count", "3", "--seconds", "20", env=endpoint_env(endpoints)
        )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    assert all(" sample.tick " in line and " sample#" in line for line in lines)
