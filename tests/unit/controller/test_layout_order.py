"""Start order of a testbed's services: what waits for what in each kind of state."""

from __future__ import annotations

from typing import Any

import pytest
from smtestbed.services.controller.layout import services_of
from smtestbed.services.controller.state import state_from_dict


def _after(state: dict[str, Any]) -> dict[str, list[str]]:
    specs = services_of(state_from_dict(state), controller=False)
    return {s["name"]: s.get("after", []) for s in specs}


def test_request_stepping_starts_farm_channel_and_gateway_together() -> None:
    """Nothing flows before the controller advances: the three wait for the broker only."""
    after = _after({})
    assert after["gateway"] == after["channel"] == after["sensorfarm"] == ["broker"]


@pytest.mark.parametrize(
    "state",
    [
        {"clock": {"mode": "stepped", "step_control": "free"}},
        {"clock": {"mode": "scaled", "scale": 10.0}},
        {"wired": {"enabled": True}},
    ],
    ids=["free-stepping", "scaled", "wired-line"],
)
def test_frames_flowing_at_start_keep_downstream_first(state: dict[str, Any]) -> None:
    """When frames can move at once, the gateway is ready before the channel, the channel
    before the farm."""
    after = _after(state)
    assert after["channel"] == ["broker", "gateway"]
    assert after["sensorfarm"] == ["broker", "channel"]
