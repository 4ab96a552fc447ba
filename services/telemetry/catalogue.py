"""The metrics telemetry keeps, defined once for MQTT, Prometheus and the dashboard.

A metric belongs to one service instance (``smtb/<service>/<instance>/<metric>``
on MQTT, labels ``service`` and ``instance`` on Prometheus). Some carry one more
label (a gateway rejection's ``reason``, a channel ``receiver``, an event
``kind``); on MQTT its value is appended to the metric name after a dot, e.g.
``smtb/gateway/smgw-1/frames_rejected.replay``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

COUNTER = "counter"
GAUGE = "gauge"

# MQTT topic levels must not contain wildcards or separators.
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricSpec:
    """One metric: its name, unit, type and optional extra label.

    Attributes:
        name: snake_case name, the last MQTT topic level and ``smtb_<name>`` on Prometheus.
        unit: unit of the value (``frames``, ``telegrams``, ``bytes`` ...).
        kind: ``counter`` (only grows) or ``gauge``.
        help: one line for Prometheus and the README.
        label: name of the extra label, or "" for none.
    """

    name: str
    unit: str
    kind: str
    help: str
    label: str = ""


def _spec(name: str, unit: str, kind: str, help: str, label: str = "") -> MetricSpec:
    return MetricSpec(name=name, unit=unit, kind=kind, help=help, label=label)


SPECS: dict[str, MetricSpec] = {
    s.name: s
    for s in (
        _spec("events", "events", COUNTER, "bus events published by the instance", "kind"),
        _spec("meters", "meters", GAUGE, "meters simulated by the sensor farm"),
        _spec("windows", "windows", COUNTER, "simulation windows the sensor farm ran"),
        _spec("telegrams_sent", "telegrams", COUNTER, "telegrams the meters sent"),
        _spec("telegrams_skipped", "telegrams", COUNTER, "telegrams withheld by the duty cycle"),
        _spec("telegrams_corrupted", "telegrams", COUNTER, "telegrams corrupted on purpose"),
        _spec("bytes_sent", "bytes", COUNTER, "radio bytes the meters sent"),
        _spec("frames_offered", "frames", COUNTER, "frames offered to the radio channel"),
        _spec("frames_delivered", "frames", COUNTER, "frames a receiver heard", "receiver"),
        _spec("frames_collided", "frames", COUNTER, "frames lost to collisions", "receiver"),
        _spec("frames_corrupted", "frames", COUNTER, "frames heard with bit errors", "receiver"),
        _spec("frames_lost", "frames", COUNTER, "frames lost to noise", "receiver"),
        _spec("frames_receiver_down", "frames", COUNTER, "frames a down rx missed", "receiver"),
        _spec("frames_accepted", "frames", COUNTER, "frames a gateway accepted"),
        _spec("frames_rejected", "frames", COUNTER, "frames a gateway rejected", "reason"),
        _spec("certs_issued", "certificates", COUNTER, "certificates the CA issued"),
        _spec("certs_revoked", "certificates", COUNTER, "certificates the CA revoked"),
        _spec("crls_published", "CRLs", COUNTER, "CRLs the CA published"),
        _spec("requests_refused", "requests", COUNTER, "CA requests refused"),
        _spec("up", "bool", GAUGE, "1 while the broker sees the instance alive"),
        _spec("restarts", "restarts", GAUGE, "restarts the broker has seen"),
        _spec("events_forwarded", "events", COUNTER, "events the broker forwarded"),
        _spec("events_rejected", "events", COUNTER, "malformed events the broker dropped"),
        _spec("requests_routed", "requests", COUNTER, "requests the broker routed"),
    )
}

# channel.window counter name -> metric name
CHANNEL_OUTCOMES: dict[str, str] = {
    "delivered": "frames_delivered",
    "collided": "frames_collided",
    "corrupted": "frames_corrupted",
    "lost_to_noise": "frames_lost",
    "receiver_down": "frames_receiver_down",
}


def topic_level(text: str) -> str:
    """Return ``text`` safe as one MQTT topic level (no ``/``, ``+``, ``#``, spaces)."""
    return _UNSAFE.sub("_", text) or "_"


def metric_level(name: str, label: str) -> str:
    """Return the MQTT metric level: the name, with the label value after a dot."""
    return f"{name}.{topic_level(label)}" if label else name
