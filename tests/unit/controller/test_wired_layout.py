"""The run folder of a state with a wired line: the gateway polls the wired meters through
the board's relay, the board relays to the farm's M-Bus server, the registry has them."""

from __future__ import annotations

import csv
import tomllib
from pathlib import Path
from typing import Any

import pytest
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.controller.layout import write_run_folder
from smtestbed.services.controller.state import state_from_dict
from smtestbed.services.controller.wired import LINE_RELAY

WIRED = {"id": 12345678, "manufacturer": "EMH", "kind": "electricity", "interface": "wired_mbus"}
RADIO = {"id": 23456789, "manufacturer": "ESY", "kind": "water", "security": 0}


def _state(relay: str, registry: Any = "all") -> Any:
    return state_from_dict(
        {
            "meters": [{**WIRED, "primary_address": 5}, RADIO],
            "wired": {"enabled": True, "interval_s": 0.5, "relay": relay},
            "registry": {"meters": registry},
        }
    )


def test_the_gateway_polls_the_wired_meter_through_the_relay(tmp_path: Path) -> None:
    """wired_lines points at the board's listen address, which relays to the farm's mbus_tcp."""
    run = write_run_folder(_state("wired-line"), tmp_path)
    config = tomllib.loads(run.config.read_text())
    (line,) = config["gateway"]["wired_lines"]
    (wire,) = config["iohw"]["wiring"]
    assert line["meters"] == [{"meter": "12345678", "primary": 5}]
    assert line["interval_s"] == 0.5
    assert line["url"] == f"tcp://{wire['listen']}"
    assert (wire["kind"], wire["name"], wire["relay"], wire["closed"]) == (
        "line",
        "wired-line",
        LINE_RELAY,
        True,
    )
    assert wire["target"] == config["sensorfarm"]["mbus_tcp"] == run.mbus_tcp
    assert wire["listen"] != wire["target"]
    assert ("iohw", "iohw") in run.services
    with (tmp_path / "registry.csv").open(newline="") as handle:
        rows = {r["meter"]: r for r in csv.DictReader(handle)}
    assert (rows["12345678"]["security"], rows["12345678"]["manufacturer"]) == ("0", "EMH")
    assert set(rows) == {"12345678", "23456789"}
    assert set(run.registered["gw0"]) == {"12345678", "23456789"}
    assert run.meters == ("23456789",)


def test_without_a_relay_the_gateway_polls_the_farm_directly(tmp_path: Path) -> None:
    """No relay: no board, and the line goes to the farm's M-Bus server."""
    run = write_run_folder(_state(""), tmp_path)
    config = tomllib.loads(run.config.read_text())
    assert config["gateway"]["wired_lines"][0]["url"] == f"tcp://{run.mbus_tcp}"
    assert "iohw" not in config
    assert all(kind != "iohw" for _, kind in run.services)


def test_a_registry_list_may_name_the_wired_meter_but_not_a_stranger(tmp_path: Path) -> None:
    """Listing only the wired meter registers it alone; an unknown ID names the key."""
    run = write_run_folder(_state("", ["12345678"]), tmp_path / "a")
    assert run.registered["gw0"] == ("12345678",)
    with pytest.raises(ConfigError) as info:
        write_run_folder(_state("", ["99999999"]), tmp_path / "b")
    assert info.value.key == "state.registry.meters"
