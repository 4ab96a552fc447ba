"""Settings of the telemetry service."""

from __future__ import annotations

from dataclasses import dataclass

from smtestbed.services._runtime.config import ServiceConfig, doc
from smtestbed.services._runtime.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class TelemetryConfig(ServiceConfig):
    """Where telemetry publishes (MQTT, Prometheus, web dashboard) and how often."""

    mqtt: str = doc("", "HOST:PORT of an MQTT broker; empty: an embedded broker on 127.0.0.1")
    mqtt_port: int = doc(7781, "port of the embedded MQTT broker (0: a free one, logged)")
    mqtt_prefix: str = doc("smtb", "first level of every MQTT topic")
    http_host: str = doc("127.0.0.1", "address of the dashboard and /metrics")
    http_port: int = doc(7780, "port of the dashboard and /metrics (0: a free one, logged)")
    publish_every_s: float = doc(1.0, "time between aggregated publications, s")
    status_every_s: float = doc(1.0, "time between broker.status polls, s")

    def mqtt_address(self) -> tuple[str, int] | None:
        """Return (host, port) of the outside MQTT broker, or None for the embedded one."""
        if not self.mqtt:
            return None
        host, _, port = self.mqtt.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{self.mqtt!r} is not HOST:PORT", key="telemetry.mqtt")
        return host, int(port)

    def check(self) -> None:
        """Raise ConfigError for values no telemetry service can run with."""
        self.mqtt_address()
        for key in ("mqtt_port", "http_port"):
            if not 0 <= getattr(self, key) < 65536:
                raise ConfigError("must be a port 0..65535", key=f"telemetry.{key}")
        for key in ("publish_every_s", "status_every_s"):
            if not getattr(self, key) > 0:
                raise ConfigError("must be > 0", key=f"telemetry.{key}")
        if not self.mqtt_prefix or any(c in self.mqtt_prefix for c in "/+#"):
            raise ConfigError("must be one topic level", key="telemetry.mqtt_prefix")
