"""The Prometheus exposition of the aggregator, parsed back with prometheus-client."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from smtestbed.proto import topics
from smtestbed.services.telemetry.aggregate import Aggregator
from smtestbed.services.telemetry.prometheus import exposition, make_registry


def _parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def test_counters_and_gauges_carry_service_instance_and_extra_label() -> None:
    """Counters end in _total; labels are service, instance and the metric's own."""
    agg = Aggregator()
    agg.observe(topics.GATEWAY_FRAME_ACCEPTED, "gw", {"gateway": "smgw-1", "count": 3}, 1.0)
    body = {"gateway": "smgw-1", "reason": "replay", "message": "", "meter": ""}
    agg.observe(topics.GATEWAY_FRAME_REJECTED, "gw", body, 1.0)
    up = {"name": "gw", "service": "gateway", "restarts": 0}
    agg.observe(topics.BROKER_SERVICE_UP, "broker", up, 1.0)
    values = _parse(exposition(make_registry(agg)).decode())
    gw1 = {("service", "gateway"), ("instance", "smgw-1")}
    assert values[("smtb_frames_accepted_total", frozenset(gw1))] == 3
    assert values[("smtb_frames_rejected_total", frozenset(gw1 | {("reason", "replay")}))] == 1
    gw = frozenset({("service", "gateway"), ("instance", "gw")})
    assert values[("smtb_up", gw)] == 1
    kind = {("service", "broker"), ("instance", "broker"), ("kind", topics.BROKER_SERVICE_UP)}
    assert values[("smtb_events_total", frozenset(kind))] == 1


def test_registry_holds_only_telemetry_metrics() -> None:
    """The registry is our own: every family is smtb_*, no process or Python collectors."""
    agg = Aggregator()
    agg.observe(topics.SAMPLE_TICK, "tick", {"n": 1}, 1.0)
    families = list(text_string_to_metric_families(exposition(make_registry(agg)).decode()))
    assert [f.name for f in families] == ["smtb_events"]
