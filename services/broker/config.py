"""Broker settings."""

from __future__ import annotations

from dataclasses import dataclass

from smtestbed.services._runtime.config import ServiceConfig, doc


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerConfig(ServiceConfig):
    """The broker binds ``bus_pub``, ``bus_sub`` and ``bus_rpc`` (clients connect there)."""

    liveness: int = doc(3, "heartbeats a service may miss before it is marked dead")
    validate: bool = doc(True, "check every event's envelope in the proxy")
    reap_interval_s: float = doc(0.1, "how often the registry looks for dead services, s")
