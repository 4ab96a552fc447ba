"""``smtb fuzz --quick`` on the service targets, each against real sockets on 127.0.0.1.

The CA's HTTP API, the GWA command interface and the wired M-Bus master.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from smtestbed.services.campaigns.fuzz_cli import command

pytestmark = pytest.mark.timeout(60)


def _quick(target: str, folder: Path) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(command, [target, "--quick", "--out", str(folder)])
    report = json.loads((folder / f"fuzz-{target}.json").read_text())
    assert "exec/s" in result.output
    return result.exit_code, report


def test_ca_http_refusals_are_json_4xx_and_leave_the_ca_unchanged(tmp_path: Path) -> None:
    """Mutated requests to the CA: no 5xx or dropped connection; refusals change no count."""
    code, report = _quick("ca-http", tmp_path)
    proof = report["gateway"]
    assert report["inputs"] > 100
    assert report["exec_per_s"] > 10
    assert proof["refused"] > 0
    assert proof["unchanged"] is True
    assert proof["status_before"]["certificates"] == proof["status_after"]["certificates"]
    assert report["hangs"] == 0
    assert report["unique_crashes"] == 0, report["crashes"]
    assert proof["alive"] is True
    assert code == 0


def test_mbus_master_stores_nothing_from_replies_that_fail_the_checksum(tmp_path: Path) -> None:
    """Garbled slave replies over TCP: poll never raises or hangs; bad rounds store nothing."""
    code, report = _quick("mbus-master", tmp_path)
    proof = report["gateway"]
    assert report["inputs"] > 20
    assert report["unique_crashes"] == 0, report["crashes"]
    assert report["hangs"] == 0
    assert proof["alive"] is True
    assert proof["unchanged"] is True
    assert proof["rounds_refused"] > 0
    assert proof["garbage_bytes"] > 0
    assert proof["readings"] >= 1  # the genuine round before the mutated ones
    assert code == 0


def test_gwa_frames_are_answered_and_refusals_leave_registry_and_store(tmp_path: Path) -> None:
    """Mutated frames over mutual TLS: each gets its reply in time; refusals change nothing."""
    code, report = _quick("gwa", tmp_path)
    proof = report["gateway"]
    assert report["inputs"] > 20
    assert report["unique_crashes"] == 0, report["crashes"]
    assert report["hangs"] == 0
    assert proof["alive"] is True
    assert proof["unchanged"] is True
    assert proof["refused"] > 0
    assert proof["digest_before"] == proof["digest_after"]
    assert proof["meters_before"] == 4
    assert code == 0
