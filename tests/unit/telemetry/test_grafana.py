"""deploy/grafana-dashboard.json queries only metrics the telemetry service exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from smtestbed.services.telemetry.catalogue import COUNTER, SPECS

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana-dashboard.json"


def _exposed() -> dict[str, set[str]]:
    out = {}
    for spec in SPECS.values():
        name = f"smtb_{spec.name}" + ("_total" if spec.kind == COUNTER else "")
        out[name] = {"service", "instance", *([spec.label] if spec.label else [])}
    return out


def test_every_query_names_an_exposed_metric_and_its_labels() -> None:
    """Each panel expression uses smtb_* names and by-labels that /metrics really has."""
    exposed = _exposed()
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    assert len(exprs) >= 9
    for expr in exprs:
        names = re.findall(r"smtb_[a-z_]+", expr)
        assert names, expr
        for name in names:
            assert name in exposed, f"{name} in {expr!r} is not exposed"
            for label in re.findall(r"by \(([a-z, ]+)\)", expr):
                assert set(label.replace(" ", "").split(",")) <= exposed[name], expr


def test_the_dashboard_covers_meters_channel_gateway_certificates_and_services() -> None:
    """What the issue asks to watch has a panel."""
    text = DASHBOARD.read_text()
    for name in (
        "smtb_telegrams_sent_total",
        "smtb_frames_collided_total",
        "smtb_frames_rejected_total",
        "smtb_certs_issued_total",
        "smtb_up",
    ):
        assert name in text
