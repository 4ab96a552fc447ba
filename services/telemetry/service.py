"""The telemetry service: bus events in; MQTT, Prometheus and a live dashboard out.

It subscribes to every bus event and polls ``broker.status``; an
:class:`Aggregator` folds both into counters per service instance. Every
``publish_every_s`` the changed values go to MQTT and a summary to the open
dashboards; nothing is published per event. Prometheus reads the aggregator
when it scrapes ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import ClassVar

from smtestbed.proto import topics
from smtestbed.services._runtime.bus import Subscription
from smtestbed.services._runtime.config import ServiceConfig
from smtestbed.services._runtime.errors import PeerError
from smtestbed.services._runtime.lifecycle import Ready, Service
from smtestbed.services.telemetry import view
from smtestbed.services.telemetry.aggregate import Aggregator
from smtestbed.services.telemetry.config import TelemetryConfig
from smtestbed.services.telemetry.mqtt import EmbeddedBroker, MqttBridge
from smtestbed.services.telemetry.prometheus import make_registry
from smtestbed.services.telemetry.web import Hub, WebServer

MQTT_CONNECT_S = 3.0


class Telemetry(Service):
    """Aggregate the bus; publish to MQTT, Prometheus and the web dashboard."""

    service: ClassVar[str] = "telemetry"
    config_class: ClassVar[type[ServiceConfig]] = TelemetryConfig

    def __init__(self, config: TelemetryConfig) -> None:
        super().__init__(config)
        config.check()
        self.cfg = config
        self.agg = Aggregator()
        self.hub = Hub()
        self.mqtt_port = 0
        self.http_port = 0
        self.publications = 0
        self.status_failures = 0
        self.bridge: MqttBridge | None = None

    async def run(self, ready: Ready) -> None:
        """Start the MQTT side and the web server, then aggregate until cancelled."""
        sub = self.bus.subscribe()
        embedded = EmbeddedBroker(port=self.cfg.mqtt_port) if not self.cfg.mqtt else None
        web = WebServer(self.hub, make_registry(self.agg), self.cfg.http_host, self.cfg.http_port)
        bridge: MqttBridge | None = None
        try:
            await sub.wait_connected()
            bridge = await self._start_mqtt(embedded)
            self.http_port = await web.start()
            self._announce(bridge)
            ready.set()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._consume(sub))
                tg.create_task(self._poll_status())
                tg.create_task(self._publish_forever(bridge))
        finally:
            await self._close(bridge, web, embedded)

    async def _start_mqtt(self, embedded: EmbeddedBroker | None) -> MqttBridge:
        if embedded is not None:
            host, port = "127.0.0.1", await embedded.start()
        else:
            address = self.cfg.mqtt_address()
            assert address is not None
            host, port = address
        self.mqtt_port = port
        bridge = self.bridge = MqttBridge(
            host, port, prefix=self.cfg.mqtt_prefix, instance=self.cfg.instance
        )
        bridge.start()
        if not await bridge.wait_connected(MQTT_CONNECT_S):
            self.log.warning("mqtt_unreachable", host=host, port=port, retrying=True)
        return bridge

    def _announce(self, bridge: MqttBridge) -> None:
        base = f"http://{self.cfg.http_host}:{self.http_port}"
        self.log.info(
            "telemetry_listening",
            mqtt=f"{bridge.host}:{bridge.port}",
            mqtt_embedded=not self.cfg.mqtt,
            dashboard=f"{base}/",
            metrics=f"{base}/metrics",
        )

    async def _close(
        self, bridge: MqttBridge | None, web: WebServer, embedded: EmbeddedBroker | None
    ) -> None:
        if bridge is not None:
            # a last publication, so counters are complete where the service stopped
            with contextlib.suppress(Exception):
                self._publish(bridge)
            await asyncio.to_thread(bridge.stop)
        await web.stop()
        if embedded is not None:
            await embedded.stop()

    async def _consume(self, sub: Subscription) -> None:
        observe = self.agg.observe
        while True:
            event = await sub.recv()
            env = event.envelope
            observe(env.kind, env.src, env.body, env.t_wall)

    async def _poll_status(self) -> None:
        every = self.cfg.status_every_s
        while True:
            try:
                status = await self.bus.request(
                    "broker", topics.BROKER_STATUS, timeout=max(0.5, every), retries=0
                )
            except PeerError as exc:
                self.status_failures += 1
                if self.status_failures == 1:
                    self.log.warning("broker_status_failed", error=str(exc))
            else:
                self.agg.apply_status(status)
            await asyncio.sleep(every)

    async def _publish_forever(self, bridge: MqttBridge) -> None:
        while True:
            await asyncio.sleep(self.cfg.publish_every_s)
            self._publish(bridge)

    def _publish(self, bridge: MqttBridge) -> None:
        t = time.time()
        availability = {(m.service, m.instance): m.alive for m in self.agg.members.values()}
        bridge.publish(self.agg.samples(), availability, t)
        self.hub.push(json.dumps(view.summary(self.agg, t), separators=(",", ":")))
        self.publications += 1

    def counters(self) -> dict[str, int]:
        """Return events seen, publications, MQTT messages and the bound ports."""
        return {
            "events_aggregated": self.agg.events_total,
            "events_malformed": self.agg.malformed,
            "publications": self.publications,
            "status_failures": self.status_failures,
            "mqtt_messages": self.bridge.published if self.bridge is not None else 0,
            "dashboard_streams": self.hub.streams,
            "mqtt_port": self.mqtt_port,
            "http_port": self.http_port,
        }
