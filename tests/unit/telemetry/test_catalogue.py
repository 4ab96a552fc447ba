"""Metric names, MQTT topic levels and payloads."""

from __future__ import annotations

import json
import re

from smtestbed.services.channel.model import COUNTER_NAMES
from smtestbed.services.telemetry.catalogue import (
    CHANNEL_OUTCOMES,
    COUNTER,
    GAUGE,
    SPECS,
    metric_level,
    topic_level,
)
from smtestbed.services.telemetry.mqtt import payload


def test_channel_outcomes_are_the_counters_the_channel_publishes() -> None:
    """Every per-receiver counter of channel.window has a metric, and no other."""
    assert set(CHANNEL_OUTCOMES) == set(COUNTER_NAMES)


def test_metric_names_are_valid_for_prometheus_and_mqtt() -> None:
    """Names are snake_case, types known, labels valid Prometheus label names."""
    for name, spec in SPECS.items():
        assert spec.name == name
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name)
        assert spec.kind in (COUNTER, GAUGE)
        assert spec.label == "" or re.fullmatch(r"[a-z]+", spec.label)
        assert not name.endswith("_total")


def test_topic_levels_never_carry_wildcards_or_separators() -> None:
    """Names from the bus become one safe topic level."""
    assert topic_level("gw/1 +#") == "gw_1___"
    assert topic_level("") == "_"
    assert metric_level("frames_rejected", "bad mac") == "frames_rejected.bad_mac"
    assert metric_level("frames_accepted", "") == "frames_accepted"


def test_payload_is_json_with_value_unit_and_time() -> None:
    """Whole numbers stay integers; the time is rounded to milliseconds."""
    assert json.loads(payload(12.0, "frames", 1700000000.12345)) == {
        "value": 12,
        "unit": "frames",
        "t": 1700000000.123,
    }
    assert json.loads(payload(0.5, "bool", 1.0))["value"] == 0.5
