"""MQTT side of telemetry: the bridge (paho-mqtt) and the embedded broker (amqtt).

Topics are ``<prefix>/<service>/<instance>/<metric>`` with a JSON payload
``{"value": ..., "unit": ..., "t": ...}`` (``t``: wall time of the aggregation, s
since the Unix epoch). ``<prefix>/<service>/<instance>/availability`` is retained
and holds ``online`` or ``offline``; the telemetry service's own availability is
also its MQTT last will, so a killed telemetry service reads ``offline``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import paho.mqtt.client as paho
from amqtt.broker import Broker
from paho.mqtt.enums import CallbackAPIVersion
from smtestbed.services._runtime.errors import TestbedError
from smtestbed.services.telemetry.aggregate import Sample
from smtestbed.services.telemetry.catalogue import metric_level, topic_level

ONLINE, OFFLINE = "online", "offline"
AVAILABILITY = "availability"


class MqttError(TestbedError):
    """The MQTT broker could not be started or reached."""


def payload(value: float, unit: str, t: float) -> bytes:
    """Return the JSON payload of one value (integers stay integers)."""
    number: float | int = int(value) if float(value).is_integer() else value
    return json.dumps({"value": number, "unit": unit, "t": round(t, 3)}).encode()


class EmbeddedBroker:
    """An amqtt broker inside the current event loop, anonymous, on one TCP listener.

    Args:
        host: address to bind (127.0.0.1 keeps it on this machine).
        port: port to bind; 0 takes a free one (see :attr:`port` after :meth:`start`).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._broker: Any = None
        # amqtt and its state machine log every transition at INFO through stdlib logging
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)

    async def start(self) -> int:
        """Start listening; return the bound port."""
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        self._broker = Broker(config)
        try:
            await self._broker.start()
        except Exception as exc:  # amqtt wraps bind errors in its own BrokerError
            raise MqttError(f"embedded MQTT broker on {self.host}:{self.port}: {exc}") from exc
        # amqtt keeps the listening server only in a private attribute
        server = self._broker._servers["default"].instance
        self.port = int(server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        """Close every session and the listener."""
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None


class MqttBridge:
    """Publish aggregated samples and availability to an MQTT broker.

    paho's network loop runs in its own thread and reconnects by itself; after
    every (re)connect the next :meth:`publish` sends every value again, so a
    restarted broker is complete after one period.

    Args:
        host: broker address.
        port: broker port.
        prefix: first topic level.
        instance: this telemetry instance (its availability topic and last will).
    """

    def __init__(self, host: str, port: int, *, prefix: str, instance: str) -> None:
        self.host, self.port, self.prefix = host, port, prefix
        self.own_availability = self.topic("telemetry", instance, AVAILABILITY)
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"smtb-telemetry-{topic_level(instance)}-{os.getpid()}",
        )
        self.client.will_set(self.own_availability, OFFLINE, qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self._connected = threading.Event()
        self._resync = False
        self._last: dict[str, float] = {}
        self.published = 0

    def topic(self, service: str, instance: str, metric: str) -> str:
        """Return the topic of one metric of one instance."""
        return f"{self.prefix}/{topic_level(service)}/{topic_level(instance)}/{metric}"

    def start(self) -> None:
        """Connect in the background (and keep reconnecting)."""
        self.client.reconnect_delay_set(min_delay=1, max_delay=5)
        self.client.connect_async(self.host, self.port, keepalive=15)
        self.client.loop_start()

    @property
    def connected(self) -> bool:
        """Return True while the connection to the broker is up."""
        return self._connected.is_set()

    async def wait_connected(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the connection; return whether it is up."""
        deadline = time.monotonic() + timeout
        while not self.connected and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.connected

    def publish(
        self, samples: Iterable[Sample], availability: Mapping[tuple[str, str], bool], t: float
    ) -> int:
        """Publish changed values (all after a reconnect); return how many messages left."""
        if not self.connected:
            return 0
        full, self._resync = self._resync, False
        sent = 0
        for s in samples:
            topic = self.topic(s.service, s.instance, metric_level(s.spec.name, s.label))
            data = payload(s.value, s.spec.unit, t)
            sent += self._send(topic, data, s.value, full=full, retain=False)
        for (service, instance), online in availability.items():
            topic = self.topic(service, instance, AVAILABILITY)
            state = ONLINE if online else OFFLINE
            sent += self._send(topic, state.encode(), online, full=full, retain=True)
        self.published += sent
        return sent

    def _send(self, topic: str, data: bytes, value: float, *, full: bool, retain: bool) -> int:
        # only changes leave: a payload differs every period by its time alone
        if not full and self._last.get(topic) == value:
            return 0
        info = self.client.publish(topic, data, qos=1 if retain else 0, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            return 0
        self._last[topic] = value
        return 1

    def stop(self, timeout: float = 1.0) -> None:
        """Publish our own ``offline``, disconnect and end the network thread."""
        try:
            if self.connected:
                info = self.client.publish(self.own_availability, OFFLINE, qos=1, retain=True)
                info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            pass  # the connection went away meanwhile; the last will says the same
        finally:
            self.client.disconnect()
            self.client.loop_stop()

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            return
        client.publish(self.own_availability, ONLINE, qos=1, retain=True)
        self._resync = True
        self._connected.set()

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self._connected.clear()
