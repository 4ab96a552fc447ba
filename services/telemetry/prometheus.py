"""Prometheus side of telemetry: a collector over the aggregator, in its own registry.

Every metric is ``smtb_<name>`` (counters end in ``_total`` in the text format)
with labels ``service`` and ``instance`` and, where the metric has one, its
extra label (``reason``, ``receiver`` or ``kind``). Values are read when
Prometheus scrapes, so they are never older than the last event.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from smtestbed.services.telemetry.aggregate import Aggregator, Sample
from smtestbed.services.telemetry.catalogue import COUNTER, MetricSpec

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def family_name(spec: MetricSpec) -> str:
    """Return the Prometheus family name of a metric (without ``_total``)."""
    return f"smtb_{spec.name}"


def _family(spec: MetricSpec) -> Metric:
    labels = ["service", "instance", *([spec.label] if spec.label else [])]
    text = f"{spec.help} ({spec.unit})"
    if spec.kind == COUNTER:
        return CounterMetricFamily(family_name(spec), text, labels=labels)
    return GaugeMetricFamily(family_name(spec), text, labels=labels)


def _labels(sample: Sample) -> list[str]:
    extra = [sample.label] if sample.spec.label else []
    return [sample.service, sample.instance, *extra]


class AggregateCollector(Collector):
    """Expose the aggregator's current values as metric families."""

    def __init__(self, agg: Aggregator) -> None:
        self.agg = agg

    def collect(self) -> Iterator[Metric]:
        """Yield one family per metric name with every instance's sample."""
        families: dict[str, Metric] = {}
        for sample in self.agg.samples():
            family = families.get(sample.spec.name)
            if family is None:
                family = families[sample.spec.name] = _family(sample.spec)
            family.add_metric(_labels(sample), sample.value)  # type: ignore[attr-defined]
        yield from families.values()


def make_registry(agg: Aggregator) -> CollectorRegistry:
    """Return a registry of its own holding only the telemetry metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AggregateCollector(agg))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """Return the registry in the Prometheus text format."""
    return generate_latest(registry)
