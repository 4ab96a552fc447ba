"""Telemetry settings: the MQTT address and value checks."""

from __future__ import annotations

import pytest
from smtestbed.services._runtime.config import load_config
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.telemetry.config import TelemetryConfig


def _config(**overrides: str) -> TelemetryConfig:
    return load_config(TelemetryConfig, "telemetry", env={}, overrides=overrides)


def test_mqtt_host_port_selects_an_outside_broker() -> None:
    """``--set mqtt=HOST:PORT`` names the broker; empty means the embedded one."""
    assert _config(mqtt="10.0.0.5:1883").mqtt_address() == ("10.0.0.5", 1883)
    assert _config().mqtt_address() is None


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("mqtt", "localhost", "not HOST:PORT"),
        ("mqtt", "host:99999", "not HOST:PORT"),
        ("http_port", "70000", "port"),
        ("publish_every_s", "0", "> 0"),
        ("mqtt_prefix", "a/b", "one topic level"),
    ],
)
def test_bad_values_are_refused_naming_the_key(key: str, value: str, match: str) -> None:
    """A value no telemetry service could run with is a ConfigError naming its key."""
    with pytest.raises(ConfigError, match=match) as info:
        _config(**{key: value}).check()
    assert info.value.key == f"telemetry.{key}"
