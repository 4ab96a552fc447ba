"""``smtb load --quick``: the sweep's table, files and the measured ALOHA curve."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from smtestbed.services.campaigns.load_cli import command, quick_points

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    """Run ``smtb load --quick`` once; return its folder, load.json and its output."""
    out = tmp_path_factory.mktemp("load")
    result = CliRunner().invoke(command, ["--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "load.json").read_text()), result.output


def test_every_point_accounts_for_every_delivered_frame(
    campaign: tuple[Path, dict[str, Any], str],
) -> None:
    """Each point: delivered = accepted + rejected + duplicates, lost 0, sent = heard + not."""
    _, doc, _ = campaign
    assert [p["label"] for p in doc["points"]] == [p.label() for p in quick_points()]
    for p in doc["points"]:
        assert p["offered"] > 0
        assert p["accepted"] > 0
        assert p["lost"] == 0
        assert p["delivered"] == p["accepted"] + p["rejected"] + p["duplicates"]
        assert p["offered"] == p["delivered"] + p["collided"] + p["lost_to_noise"]
        assert p["rejected"] == sum(p["reasons"].values())
        for stage in ("farm", "channel", "gateway", "end_to_end"):
            assert 0 < p[f"{stage}_p50_ms"] <= p[f"{stage}_p99_ms"]
    assert doc["lost_total"] == 0


def test_success_follows_pure_aloha_without_capture(
    campaign: tuple[Path, dict[str, Any], str],
) -> None:
    """Without capture the success fraction is within 0.03 of e^(-2G); capture beats it."""
    _, doc, _ = campaign
    plain = [p for p in doc["points"] if not p["capture"] and not p["noise"]]
    assert len(plain) >= 5
    assert max(p["offered_load_g"] for p in plain) > 1.0
    for p in plain:
        assert p["aloha"] == pytest.approx(math.exp(-2 * p["offered_load_g"]), abs=1e-4)
        assert p["success"] == pytest.approx(p["aloha"], abs=0.03)
    captured = [p for p in doc["points"] if p["capture"]]
    assert captured
    assert all(p["success"] > p["aloha"] + 0.03 for p in captured)


def test_aloha_curve_and_files_are_written(campaign: tuple[Path, dict[str, Any], str]) -> None:
    """load.json holds the analytic curve; CSV rows, PNG, self-contained HTML and the table."""
    out, doc, output = campaign
    curve = doc["aloha_curve"]
    assert len(curve) >= 50
    assert curve[0] == [0.0, 1.0]
    assert all(s == pytest.approx(math.exp(-2 * g)) for g, s in curve)
    with (out / "load.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["label"] for r in rows] == [p["label"] for p in doc["points"]]
    assert (out / "load.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "load.html").read_text()
    assert "data:image/png;base64," in page
    assert "http" not in page.replace("<!doctype html>", "")
    assert "load campaign" in output
    assert f"json: {out / 'load.json'}" in output
