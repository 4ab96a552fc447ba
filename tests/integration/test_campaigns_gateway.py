"""``smtb fuzz gateway-lmn``: mutated batches into the real gateway leave its data unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from smtestbed.services.campaigns.fuzz_cli import command
from smtestbed.services.campaigns.gateway_lmn import fuzz_gateway
from smtestbed.services.campaigns.mutation_engine import Budget

pytestmark = pytest.mark.timeout(60)


def test_mutated_frames_leave_store_and_logs_unchanged(tmp_path: Path) -> None:
    """Mutated frames (batch parts intact) are all refused: same digest, service alive."""
    report = fuzz_gateway(Budget(seconds=4.0, per_input_s=5.0), seed=1, out=tmp_path, wire_share=0)
    proof = report.gateway
    assert proof is not None
    assert report.inputs > 100
    assert report.crashes == []
    assert report.hangs == []
    assert proof["alive"] is True
    assert proof["unchanged"] is True
    assert proof["digest_before"] == proof["digest_after"]
    assert proof["logs_before"]["consumer_log"] == proof["logs_after"]["consumer_log"]
    assert proof["logs_before"]["accepted"] == 12  # the genuine telegrams, stored before
    assert proof["system_log_added"] == ["frames_rejected"]


def test_quick_campaign_finds_no_crash(tmp_path: Path) -> None:
    """``smtb fuzz gateway-lmn --quick``: no crash, no hang, store and logs unchanged."""
    result = CliRunner().invoke(command, ["gateway-lmn", "--quick", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "fuzz-gateway-lmn.json").read_text())
    assert report["inputs"] > 100
    assert report["unique_crashes"] == 0, report["crashes"]
    assert report["hangs"] == 0
    assert report["gateway"]["unchanged"] is True
    assert report["gateway"]["alive"] is True
    assert result.exit_code == 0
