"""Validation of ``[iohw] wiring``: every error names the entry and the field."""

from __future__ import annotations

from typing import Any

import pytest
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.iohw.wiring import parse_wiring

LINE = {"kind": "line", "relay": 1, "listen": "127.0.0.1:7720", "target": "127.0.0.1:7730"}
POWER = {"kind": "power", "relay": 2, "meter": "12345678", "closed": False}
LOAD = {"kind": "load", "dac": 1, "meter": 12345678, "factor_per_volt": 0.2, "volts": 5.0}
OUTPUT = {"kind": "meter_output", "adc": 1, "meter": "12345678", "value": "power_w"}


def test_a_complete_wiring_is_parsed_with_defaults() -> None:
    """Each kind becomes its typed entry; names default to relayN/dacN/adcN; meters 8 digits."""
    w = parse_wiring([LINE, POWER, LOAD, OUTPUT, {"kind": "relay", "relay": 16, "name": "x"}])
    line = w.relay(1)
    assert line is not None
    assert (line.kind, line.name, line.closed) == ("line", "relay1", True)
    assert (line.listen, line.target) == (("127.0.0.1", 7720), ("127.0.0.1", 7730))
    power = w.relay(2)
    assert power is not None
    assert (power.meter, power.closed) == ("12345678", False)
    load = w.load(1)
    assert load is not None
    assert (load.meter, load.factor(5.0), load.factor(0.0)) == ("12345678", 1.0, 0.0)
    output = w.output(1)
    assert output is not None
    assert (output.value, output.volts(400.0)) == ("power_w", 400.0)
    assert w.relay_named("x") == 16
    assert [x.name for x in w.lines()] == ["relay1"]
    assert w.relay(3) is None


BAD: list[tuple[list[dict[str, Any]], str]] = [
    ([{"relay": 1}], "iohw.wiring[0].kind"),
    ([{"kind": "fan", "relay": 1}], "iohw.wiring[0].kind"),
    ([{**LINE, "relay": 17}], "iohw.wiring[0].relay"),
    ([{**LINE, "relay": True}], "iohw.wiring[0].relay"),
    ([{**LINE, "listen": "7720"}], "iohw.wiring[0].listen"),
    ([{**LINE, "target": "host:99999"}], "iohw.wiring[0].target"),
    ([{**LINE, "closed": "yes"}], "iohw.wiring[0].closed"),
    ([{**LINE, "meter": "12345678"}], "iohw.wiring[0].meter"),
    ([LINE, {**POWER, "relay": 1}], "iohw.wiring[1].relay"),
    ([LINE, {**POWER, "name": "relay1"}], "iohw.wiring[1].name"),
    ([LINE, {**LINE, "relay": 3}], "iohw.wiring[1].listen"),
    ([{**POWER, "meter": "123456789"}], "iohw.wiring[0].meter"),
    ([{**LOAD, "dac": 5}], "iohw.wiring[0].dac"),
    ([{**LOAD, "volts": 11.0}], "iohw.wiring[0].volts"),
    ([{**LOAD, "factor_per_volt": 50.0}], "iohw.wiring[0].factor_per_volt"),
    ([{**LOAD, "factor_per_volt": float("inf")}], "iohw.wiring[0].factor_per_volt"),
    ([{**OUTPUT, "adc": 0}], "iohw.wiring[0].adc"),
    ([{**OUTPUT, "value": "power w"}], "iohw.wiring[0].value"),
    ([{**OUTPUT, "volts_per_unit": "1"}], "iohw.wiring[0].volts_per_unit"),
    ([LOAD, OUTPUT, {**OUTPUT, "name": "b"}], "iohw.wiring[2].adc"),
    ([LINE, "relay 2"], "iohw.wiring[1]"),  # type: ignore[list-item]
]


@pytest.mark.parametrize(("tables", "key"), BAD)
def test_a_bad_entry_is_refused_naming_the_entry_and_field(
    tables: list[dict[str, Any]], key: str
) -> None:
    """ConfigError whose key is iohw.wiring[i].<field>."""
    with pytest.raises(ConfigError) as info:
        parse_wiring(tables)
    assert info.value.key == key
