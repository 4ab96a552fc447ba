"""TestbedState: built from dicts and TOML, every bad entry refused naming its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.controller.state import (
    DEFAULT_START,
    TestbedState,
    as_dict,
    load_state,
    state_from_dict,
)


def test_empty_dict_gives_the_defaults() -> None:
    """An empty table is the default state: stepped clock under controller, one gateway."""
    state = state_from_dict({})
    assert state == TestbedState()
    assert state.clock.mode == "stepped"
    assert state.clock.step_control == "request"
    assert state.clock.start == DEFAULT_START
    assert state.gateways == ("gw0",)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"seed": -1}, "state.seed"),
        ({"seed": True}, "state.seed"),
        ({"colour": 1}, "state.colour"),
        ({"clock": {"mode": "fast"}}, "state.clock.mode"),
        ({"clock": {"window_s": 0}}, "state.clock.window_s"),
        ({"population": {"count": "six"}}, "state.population.count"),
        ({"population": {"security": 3}}, "state.population.security"),
        ({"population": {"interval_s": float("nan")}}, "state.population.interval_s"),
        ({"keys": {"12345678": "00"}}, "state.keys.12345678"),
        ({"channel": {"receivers": [{"x": 1.0, "y": 2.0}]}}, "state.channel.receivers[0].name"),
        (
            {"channel": {"receivers": [{"name": "a", "x": 1, "y": 1, "z": 0}]}},
            "state.channel.receivers[0].z",
        ),
        ({"registry": {"meters": "some"}}, "state.registry.meters"),
        ({"registry": {"tafs": ["taf9"]}}, "state.registry.tafs"),
        ({"registry": {"assign": {"12345678": ["taf3"]}}}, "state.registry.assign.12345678"),
        ({"pki": {"certificates": ["gateway"]}}, "state.pki.certificates"),
        ({"pki": {"enabled": True, "certificates": ["printer"]}}, "state.pki.certificates"),
        ({"wired": {"relay": "k1"}}, "state.wired.relay"),
        ({"relays": {"3": "on"}}, "state.relays.3"),
        ({"settings": {"toaster": {}}}, "state.settings.toaster"),
        ({"settings": {"gateway": 5}}, "state.settings.gateway"),
    ],
)
def test_bad_entry_is_refused_naming_its_key(data: dict[str, Any], key: str) -> None:
    """Each bad value raises ConfigError whose key is the dotted path of the entry."""
    with pytest.raises(ConfigError) as info:
        state_from_dict(data)
    assert info.value.key == key


def test_overrides_merge_tables_and_keep_the_rest() -> None:
    """A control's overrides change only what they name; nested tables merge."""
    state = state_from_dict(
        {"seed": 3, "settings": {"gateway": {"billing_day": 1, "tariff_every_s": 900.0}}}
    )
    control = state.with_overrides({"settings": {"gateway": {"billing_day": 2}}})
    assert control.settings == {"gateway": {"billing_day": 2, "tariff_every_s": 900.0}}
    assert control.seed == 3
    assert state.settings["gateway"]["billing_day"] == 1


def test_state_round_trips_through_a_dict() -> None:
    """as_dict then state_from_dict gives the same state."""
    state = state_from_dict(
        {
            "seed": 9,
            "channel": {"receivers": [{"name": "gw1", "x": 1.0, "y": 2.0}]},
            "registry": {"meters": ["00000001"], "assign": {"00000001": ["taf1"]}},
            "keys": {"00000001": "00" * 16},
        }
    )
    assert state_from_dict(as_dict(state)) == state
    assert state.gateways == ("gw1",)


def test_state_loads_from_toml(tmp_path: Path) -> None:
    """A TOML file with the same tables gives the same state; a bad one names the key."""
    path = tmp_path / "state.toml"
    path.write_text("seed = 4\n[population]\ncount = 2\n[clock]\nwindow_s = 30.0\n")
    state = load_state(path)
    assert (state.seed, state.population.count, state.clock.window_s) == (4, 2, 30.0)
    path.write_text("[population]\ncount = -2\n")
    with pytest.raises(ConfigError, match=r"state\.population\.count"):
        load_state(path)
