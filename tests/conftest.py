"""Shared fixtures: real brokers and services on random loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from smtestbed.services._runtime import process
from smtestbed.services._runtime.bus import Endpoints
from smtestbed.services._runtime.testing import random_endpoints, service_process


@pytest.fixture
def endpoints() -> Endpoints:
    """Broker endpoints on free 127.0.0.1 ports."""
    return random_endpoints()


@pytest.fixture
def broker(endpoints: Endpoints, tmp_path: Path) -> Iterator[process.Popen]:
    """A broker process (fast liveness: dead after 3 x 0.2 s without heartbeats)."""
    with service_process("broker", endpoints, log_path=tmp_path / "broker.log") as proc:
        yield proc
