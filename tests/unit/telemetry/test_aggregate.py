"""The aggregator: bus events and broker status folded into per-instance values."""

from __future__ import annotations

from typing import Any

from smtestbed.proto import topics
from smtestbed.services.telemetry import view
from smtestbed.services.telemetry.aggregate import Aggregator, SeriesKey

T = 1_700_000_000.0


def _channel_body(offered: int, **receivers: dict[str, int]) -> dict[str, Any]:
    return {"window": 1, "offered": offered, "receivers": receivers}


def _rx(delivered: int, collided: int, corrupted: int = 0) -> dict[str, int]:
    return {
        "delivered": delivered,
        "lost_to_noise": 0,
        "collided": collided,
        "receiver_down": 0,
        "corrupted": corrupted,
    }


def test_events_are_counted_per_instance_and_kind() -> None:
    """Every event counts once under its publisher and kind; the area hints the service."""
    agg = Aggregator()
    for _ in range(3):
        agg.observe(topics.SAMPLE_TICK, "ticker-a", {"n": 1}, T)
    agg.observe(topics.SAMPLE_TICK, "ticker-b", {"n": 1}, T)
    assert agg.values[SeriesKey("ticker-a", "events", topics.SAMPLE_TICK)] == 3
    assert agg.values[SeriesKey("ticker-b", "events", topics.SAMPLE_TICK)] == 1
    assert agg.events_total == 4
    assert agg.service_of("ticker-a") == "sample"


def test_channel_windows_add_up_per_receiver() -> None:
    """Channel windows are per-window counts: offered and outcomes are summed per receiver."""
    agg = Aggregator()
    agg.observe(topics.CHANNEL_WINDOW, "channel", _channel_body(10, gw1=_rx(7, 3, 1)), T)
    agg.observe(topics.CHANNEL_WINDOW, "channel", _channel_body(4, gw1=_rx(4, 0), gw2=_rx(2, 2)), T)
    ch = view.channel(agg)
    assert ch["offered"] == 14
    assert ch["delivered"] == 13
    assert ch["collided"] == 5
    assert ch["corrupted"] == 1
    assert ch["receivers"]["gw1"] == {
        "delivered": 11,
        "collided": 3,
        "corrupted": 1,
        "lost_to_noise": 0,
        "receiver_down": 0,
    }


def test_farm_totals_are_taken_as_published() -> None:
    """The farm publishes running totals, so the latest one wins (no double counting)."""
    agg = Aggregator()
    body = {"windows": 5, "sent": 40, "skipped_duty_cycle": 2, "corrupted": 1, "bytes": 900}
    agg.observe(topics.SENSORFARM_WINDOW, "farm", {**body, "meters": 8}, T)
    agg.observe(topics.SENSORFARM_WINDOW, "farm", {**body, "sent": 55, "meters": 8}, T)
    assert view.meters(agg) == {"meters": 8, "sent": 55, "skipped": 2, "corrupted": 1}


def test_gateway_frames_count_per_gateway_instance_and_reason() -> None:
    """Accepted frames add their count; each rejection counts under its reason."""
    agg = Aggregator()
    agg.observe(topics.GATEWAY_FRAME_ACCEPTED, "gateway", {"gateway": "smgw-1", "count": 4}, T)
    agg.observe(topics.GATEWAY_FRAME_ACCEPTED, "gateway", {"gateway": "smgw-2", "count": 1}, T)
    for reason in ("replay", "replay", "bad_crc"):
        body = {"gateway": "smgw-1", "reason": reason, "message": "", "meter": "m"}
        agg.observe(topics.GATEWAY_FRAME_REJECTED, "gateway", body, T)
    gw = view.gateway(agg)
    assert gw["accepted"] == 5
    assert gw["rejected"] == 3
    assert gw["by_reason"] == {"bad_crc": 1, "replay": 2}
    assert gw["instances"]["smgw-1"] == {"accepted": 4, "rejected": 3}
    assert agg.service_of("smgw-1") == "gateway"


def test_certificate_events_are_counted_and_listed_newest_first() -> None:
    """CA events count per CA instance and the latest ones are kept for the dashboard."""
    agg = Aggregator(recent=2)
    agg.observe(topics.CA_CERT_ISSUED, "ca", {"subject": "gw-1", "serial": "01"}, T)
    agg.observe(topics.CA_CERT_REVOKED, "ca", {"subject": "gw-1", "serial": "01"}, T + 1)
    agg.observe(topics.CA_CRL_PUBLISHED, "ca", {"ca": "smgw-ca", "number": 2}, T + 2)
    certs = view.certificates(agg)
    assert (certs["issued"], certs["revoked"], certs["crls"]) == (1, 1, 1)
    assert [(e["what"], e["subject"]) for e in certs["recent"]] == [
        ("crl", "smgw-ca"),
        ("revoked", "gw-1"),
    ]


def test_malformed_bodies_are_counted_and_change_nothing() -> None:
    """A body that does not fit its kind is counted as malformed; no value moves."""
    agg = Aggregator()
    agg.observe(topics.GATEWAY_FRAME_ACCEPTED, "gateway", {"gateway": "g", "count": "7"}, T)
    agg.observe(topics.GATEWAY_FRAME_ACCEPTED, "gateway", [1, 2], T)
    agg.observe(topics.CHANNEL_WINDOW, "channel", {"offered": 3, "receivers": {"r": {}}}, T)
    agg.observe(topics.SENSORFARM_WINDOW, "farm", {"sent": -1}, T)
    agg.observe(topics.BROKER_SERVICE_UP, "broker", {"name": 5}, T)
    assert agg.malformed == 5
    assert agg.total("frames_accepted") == 0
    assert agg.total("frames_offered") == 0
    assert agg.total("telegrams_sent") == 0
    assert agg.members == {}
    assert agg.events_total == 5


def test_broker_events_and_status_track_services_alive() -> None:
    """service_up/dead/gone change a member's state; a status poll replaces the registry view."""
    agg = Aggregator()
    up = {"name": "tick", "service": "sample", "pid": 1, "restarts": 2}
    agg.observe(topics.BROKER_SERVICE_UP, "broker", up, T)
    assert agg.members["tick"].alive
    assert agg.members["tick"].restarts == 2
    agg.observe(topics.BROKER_SERVICE_DEAD, "broker", {"name": "tick", "pid": 1}, T)
    assert agg.members["tick"].state == "dead"
    status = {
        "broker": {
            "name": "broker",
            "events_forwarded": 120,
            "requests_routed": 7,
            "events_rejected": {"version": 1, "frames": 2},
        },
        "services": [{"name": "tick", "service": "sample", "state": "alive", "restarts": 3}],
    }
    agg.apply_status(status)
    rows = {r["name"]: r for r in view.services(agg)}
    assert rows["tick"]["state"] == "alive"
    assert rows["tick"]["restarts"] == 3
    assert rows["broker"]["service"] == "broker"
    assert agg.values[SeriesKey("broker", "events_rejected")] == 3
    up_samples = {s.instance: s.value for s in agg.samples() if s.spec.name == "up"}
    assert up_samples == {"tick": 1, "broker": 1}


def test_a_broken_status_answer_is_counted_and_ignored() -> None:
    """A status answer without the expected fields leaves the registry as it was."""
    agg = Aggregator()
    agg.apply_status({"broker": {"name": "b"}, "services": []})
    agg.apply_status("nonsense")
    assert agg.malformed == 2
    assert agg.members == {}
