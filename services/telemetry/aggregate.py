"""Fold bus events and broker status into counters per service instance.

The aggregator is a plain object fed one event at a time (cheap: a few dict
updates) and read at a fixed rate by the MQTT bridge, the Prometheus
collector, the dashboard and ``smtb top``. A body that is not what its kind
promises is counted in :attr:`Aggregator.malformed` and changes nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from smtestbed.proto import topics
from smtestbed.services.telemetry.catalogue import CHANNEL_OUTCOMES, SPECS, MetricSpec

ALIVE = "alive"

# the service an instance most likely belongs to, from the area of the kinds it publishes
_AREAS = {
    "sample": "sample",
    "sensorfarm": "sensorfarm",
    "meter": "sensorfarm",
    "channel": "channel",
    "gateway": "gateway",
    "wan": "gateway",
    "ca": "ca",
    "broker": "broker",
    "supervisor": "supervisor",
}

_FARM_FIELDS = {
    "meters": "meters",
    "windows": "windows",
    "sent": "telegrams_sent",
    "skipped_duty_cycle": "telegrams_skipped",
    "corrupted": "telegrams_corrupted",
    "bytes": "bytes_sent",
}

_CA_KINDS = {
    topics.CA_CERT_ISSUED: ("certs_issued", "issued"),
    topics.CA_CERT_REVOKED: ("certs_revoked", "revoked"),
    topics.CA_CRL_PUBLISHED: ("crls_published", "crl"),
    topics.CA_REQUEST_REFUSED: ("requests_refused", "refused"),
}

_MEMBER_STATES = {
    topics.BROKER_SERVICE_UP: ALIVE,
    topics.BROKER_SERVICE_DEAD: "dead",
    topics.BROKER_SERVICE_GONE: "stopped",
}


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """Where a value lives: instance, metric name and extra label value."""

    instance: str
    metric: str
    label: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """One metric value of one instance, ready to publish."""

    service: str
    instance: str
    spec: MetricSpec
    label: str
    value: float


@dataclass(slots=True, kw_only=True)
class Member:
    """A service instance as the broker sees it."""

    instance: str
    service: str
    state: str
    restarts: int = 0

    @property
    def alive(self) -> bool:
        """Return True while the broker sees the instance alive."""
        return self.state == ALIVE


@dataclass(frozen=True, slots=True, kw_only=True)
class CertEvent:
    """A certificate event for the dashboard's list (newest first)."""

    t: float
    ca: str
    what: str
    subject: str


def _count(body: Mapping[str, Any], key: str) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} is not a count: {value!r}")
    return value


def _text(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} is not a name: {value!r}")
    return value


class Aggregator:
    """Counters and gauges per service instance, fed by bus events and broker status.

    Args:
        recent: how many certificate events to keep for the dashboard.
    """

    def __init__(self, *, recent: int = 12) -> None:
        self.values: dict[SeriesKey, float] = {}
        self.members: dict[str, Member] = {}
        self.certs: deque[CertEvent] = deque(maxlen=recent)
        self.events_total = 0
        self.malformed = 0
        self._services: dict[str, str] = {}
        self._hints: dict[str, str] = {}
        self._handlers: dict[str, Callable[[str, str, Mapping[str, Any], float], None]] = {
            topics.SENSORFARM_WINDOW: self._farm,
            topics.CHANNEL_WINDOW: self._channel,
            topics.GATEWAY_FRAME_ACCEPTED: self._accepted,
            topics.GATEWAY_FRAME_REJECTED: self._rejected,
            topics.SERVICE_READY: self._ready,
            **dict.fromkeys(_CA_KINDS, self._ca),
            **dict.fromkeys(_MEMBER_STATES, self._member),
        }

    # -- input ----------------------------------------------------------------

    def observe(self, kind: str, src: str, body: Any, t: float) -> None:
        """Account one bus event published by instance ``src`` at wall time ``t`` (s)."""
        self.events_total += 1
        self._add(src, "events", 1, kind)
        area = _AREAS.get(kind.partition(".")[0])
        if area is not None:
            self._hints.setdefault(src, area)
        handler = self._handlers.get(kind)
        if handler is None:
            return
        if not isinstance(body, Mapping):
            self.malformed += 1
            return
        try:
            handler(kind, src, body, t)
        except (TypeError, ValueError):
            self.malformed += 1

    def apply_status(self, status: Any) -> None:
        """Take the broker's answer to ``broker.status``: its counters and the registry."""
        try:
            broker = status["broker"]
            name = str(broker["name"])
            rows = [_member_row(row) for row in status["services"]]
            counts = {
                "events_forwarded": _count(broker, "events_forwarded"),
                "requests_routed": _count(broker, "requests_routed"),
                "events_rejected": sum(int(v) for v in dict(broker["events_rejected"]).values()),
            }
        except (TypeError, ValueError, KeyError):
            self.malformed += 1
            return
        for member in rows:
            self.members[member.instance] = member
            self._services[member.instance] = member.service
        self.members[name] = Member(instance=name, service="broker", state=ALIVE)
        self._services[name] = "broker"
        for metric, value in counts.items():
            self.values[SeriesKey(name, metric)] = float(value)

    # -- output ---------------------------------------------------------------

    def service_of(self, instance: str) -> str:
        """Return the service ``instance`` belongs to (``unknown`` when no clue)."""
        return self._services.get(instance) or self._hints.get(instance, "unknown")

    def samples(self) -> Iterator[Sample]:
        """Yield every value, then ``up`` and ``restarts`` of every known member."""
        for key, value in self.values.items():
            yield Sample(
                service=self.service_of(key.instance),
                instance=key.instance,
                spec=SPECS[key.metric],
                label=key.label,
                value=value,
            )
        for m in self.members.values():
            yield Sample(
                service=m.service, instance=m.instance, spec=SPECS["up"], label="", value=m.alive
            )
            yield Sample(
                service=m.service,
                instance=m.instance,
                spec=SPECS["restarts"],
                label="",
                value=m.restarts,
            )

    def total(self, metric: str, *, label: str | None = None) -> float:
        """Return the sum of ``metric`` over instances (and labels unless ``label`` given)."""
        return sum(
            v
            for k, v in self.values.items()
            if k.metric == metric and (label is None or k.label == label)
        )

    def by_label(self, metric: str) -> dict[str, float]:
        """Return ``metric`` summed over instances, per label value."""
        out: dict[str, float] = {}
        for k, v in self.values.items():
            if k.metric == metric:
                out[k.label] = out.get(k.label, 0.0) + v
        return out

    def by_instance(self, metric: str) -> dict[str, float]:
        """Return ``metric`` summed over labels, per instance."""
        out: dict[str, float] = {}
        for k, v in self.values.items():
            if k.metric == metric:
                out[k.instance] = out.get(k.instance, 0.0) + v
        return out

    # -- handlers -------------------------------------------------------------

    def _add(self, instance: str, metric: str, n: float, label: str = "") -> None:
        key = SeriesKey(instance, metric, label)
        self.values[key] = self.values.get(key, 0.0) + n

    def _farm(self, kind: str, src: str, body: Mapping[str, Any], t: float) -> None:
        # the farm publishes running totals, so they are taken as they are
        read = {metric: _count(body, field) for field, metric in _FARM_FIELDS.items()}
        for metric, value in read.items():
            self.values[SeriesKey(src, metric)] = float(value)

    def _channel(self, kind: str, src: str, body: Mapping[str, Any], t: float) -> None:
        offered = _count(body, "offered")
        receivers = body.get("receivers")
        if not isinstance(receivers, Mapping):
            raise ValueError("receivers is not a table")
        rows = [
            (str(rx), metric, _count(row, field))
            for rx, row in receivers.items()
            if isinstance(row, Mapping)
            for field, metric in CHANNEL_OUTCOMES.items()
        ]
        self._add(src, "frames_offered", offered)
        for rx, metric, n in rows:
            self._add(src, metric, n, rx)

    def _accepted(self, kind: str, src: str, body: Mapping[str, Any], t: float) -> None:
        gateway, count = _text(body, "gateway"), _count(body, "count")
        self._hints.setdefault(gateway, "gateway")
        self._add(gateway, "frames_accepted", count)

    def _rejected(self, kind: str, src: str, body: Mapping[str, Any], t: float) -> None:
        gateway, reason = _text(body, "gateway"), _text(body, "reason")
        self._hints.setdefault(gateway, "gateway")
        self._add(gateway, "frames_rejected", 1, reason)

    def _ca(self, kind: str, src: str, body: Mapping[str, Any], t: float) -> None:
        metric, what = _CA_KINDS[kind]
        subject = body.get("subject") or body.get("ca") or body.get("serial") or ""
        self._add(src, metric, 1)
        self.certs.appendleft(CertEvent(t=t, ca=src, what=what, subject=str(subject)))

    def _ready(self, kind: str, src: str, body: Mapping[str, Any], t: float) -> None:
        self._services[src] = _text(body, "service")

    def _member(self, kind: str, src: str, body: Mapping[str, Any], t: float) -> None:
        name = _text(body, "name")
        restarts = _count(body, "restarts") if kind == topics.BROKER_SERVICE_UP else None
        member = self.members.get(name)
        service = body.get("service")
        if isinstance(service, str) and service:
            self._services[name] = service
        if member is None:
            member = Member(instance=name, service=self.service_of(name), state=ALIVE)
            self.members[name] = member
        member.service = self.service_of(name)
        member.state = _MEMBER_STATES[kind]
        if restarts is not None:
            member.restarts = restarts


def _member_row(row: Any) -> Member:
    if not isinstance(row, Mapping):
        raise ValueError(f"a service row is not a table: {row!r}")
    return Member(
        instance=_text(row, "name"),
        service=_text(row, "service"),
        state=_text(row, "state"),
        restarts=_count(row, "restarts"),
    )
