"""The testbed at a glance: one JSON-ready summary for the dashboard and ``smtb top``."""

from __future__ import annotations

from typing import Any

from smtestbed.services.telemetry.aggregate import Aggregator
from smtestbed.services.telemetry.catalogue import CHANNEL_OUTCOMES


def _i(value: float) -> int:
    return round(value)


def meters(agg: Aggregator) -> dict[str, int]:
    """Return the sensor farms' totals: meters, telegrams sent, skipped, corrupted."""
    return {
        "meters": _i(agg.total("meters")),
        "sent": _i(agg.total("telegrams_sent")),
        "skipped": _i(agg.total("telegrams_skipped")),
        "corrupted": _i(agg.total("telegrams_corrupted")),
    }


def channel(agg: Aggregator) -> dict[str, Any]:
    """Return frames offered and each outcome, in total and per receiver."""
    out: dict[str, Any] = {"offered": _i(agg.total("frames_offered"))}
    receivers: dict[str, dict[str, int]] = {}
    for field, metric in CHANNEL_OUTCOMES.items():
        per_rx = agg.by_label(metric)
        out[field] = _i(sum(per_rx.values()))
        for rx, value in per_rx.items():
            receivers.setdefault(rx, {})[field] = _i(value)
    out["receivers"] = receivers
    return out


def gateway(agg: Aggregator) -> dict[str, Any]:
    """Return frames accepted and rejected (by reason and per gateway instance)."""
    accepted = agg.by_instance("frames_accepted")
    rejected = agg.by_instance("frames_rejected")
    names = sorted(set(accepted) | set(rejected))
    return {
        "accepted": _i(sum(accepted.values())),
        "rejected": _i(sum(rejected.values())),
        "by_reason": {k: _i(v) for k, v in sorted(agg.by_label("frames_rejected").items())},
        "instances": {
            n: {"accepted": _i(accepted.get(n, 0)), "rejected": _i(rejected.get(n, 0))}
            for n in names
        },
    }


def certificates(agg: Aggregator) -> dict[str, Any]:
    """Return the CA counters and the latest certificate events."""
    return {
        "issued": _i(agg.total("certs_issued")),
        "revoked": _i(agg.total("certs_revoked")),
        "crls": _i(agg.total("crls_published")),
        "refused": _i(agg.total("requests_refused")),
        "recent": [{"t": e.t, "ca": e.ca, "what": e.what, "subject": e.subject} for e in agg.certs],
    }


def services(agg: Aggregator) -> list[dict[str, Any]]:
    """Return every known service instance with its state and events published."""
    events = agg.by_instance("events")
    return [
        {
            "name": m.instance,
            "service": m.service,
            "state": m.state,
            "restarts": m.restarts,
            "events": _i(events.get(m.instance, 0)),
        }
        for m in sorted(agg.members.values(), key=lambda m: m.instance)
    ]


def summary(agg: Aggregator, t: float) -> dict[str, Any]:
    """Return everything the dashboard shows, stamped with wall time ``t`` (s)."""
    return {
        "t": t,
        "events": {"total": agg.events_total, "malformed": agg.malformed},
        "meters": meters(agg),
        "channel": channel(agg),
        "gateway": gateway(agg),
        "certificates": certificates(agg),
        "services": services(agg),
    }
