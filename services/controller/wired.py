"""The wired M-Bus line of a testbed: its meters, the gateway's poller, the board's relay.

With ``wired.enabled`` the sensor farm serves the wired meters of the state's explicit
``meters`` rows (``interface = "wired_mbus"``) on one M-Bus/TCP line. The gateway's
first instance polls every one of them by primary address and has them registered
(security mode 0: wired readouts are plaintext). With ``wired.relay`` set, relay
:data:`LINE_RELAY` of the I/O board sits in that line under that name: the board
listens on its own port and the gateway polls through it, so opening the relay cuts
the line (``relay`` operation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smtestbed.services.controller.state import TestbedState

LINE_RELAY = 1
"""The board's relay in the wired line (relays count 1..16 as printed)."""
REPLY_TIMEOUT_S = 0.3
"""The gateway's wait for a reply on the line: a local TCP line answers in milliseconds."""


def wired_rows(state: TestbedState) -> list[Mapping[str, Any]]:
    """Return the state's explicit meter rows that are wired M-Bus meters."""
    return [row for row in state.meters if row.get("interface") == "wired_mbus"]


def meter_id(row: Mapping[str, Any]) -> str:
    """Return a row's meter ID as the gateway names it (8 digits)."""
    return f"{int(row['id']):08d}"


def line_table(state: TestbedState, url: str) -> dict[str, Any]:
    """Return the gateway's ``wired_lines`` entry polling every wired meter at ``url``."""
    return {
        "instance": state.gateways[0],
        "url": f"tcp://{url}",
        "interval_s": state.wired.interval_s,
        "reply_timeout_s": REPLY_TIMEOUT_S,
        "meters": [
            {"meter": meter_id(row), "primary": int(row.get("primary_address", 0)) or 1}
            for row in wired_rows(state)
        ],
    }


def board_table(state: TestbedState, listen: str, target: str) -> dict[str, Any]:
    """Return the ``[iohw]`` settings with the line relay between ``listen`` and ``target``."""
    line = {
        "kind": "line",
        "name": state.wired.relay,
        "relay": LINE_RELAY,
        "closed": True,
        "listen": listen,
        "target": target,
    }
    return {"wiring": [line]}


def registry_rows(state: TestbedState) -> list[dict[str, str]]:
    """Return the gateway registry rows of the wired meters (mode 0, no key)."""
    return [
        {
            "gateway": state.gateways[0],
            "meter": meter_id(row),
            "manufacturer": str(row.get("manufacturer", "")),
            "key_hex": "",
            "security": "0",
            "tafs": ";".join(state.registry.tafs),
            "consumer": f"wired-{meter_id(row)}",
            "emt": state.registry.emt,
        }
        for row in wired_rows(state)
    ]
