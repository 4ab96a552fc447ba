"""What each channel of the board is wired to: ``[iohw] wiring = [...]``.

Each entry is a table with a ``kind``:

- ``relay``: a relay that drives nothing in the testbed (its position only),
  ``{kind = "relay", relay = N, closed = true}``;
- ``line``: a relay in a wired M-Bus TCP line. The board listens on ``listen``
  (HOST:PORT, where the gateway's master connects) and passes bytes to
  ``target`` (HOST:PORT, the sensor farm's ``mbus_tcp``) while the relay is closed;
- ``power``: a relay in a meter's supply; open = ``meter.stop``, closed = ``meter.resume``;
- ``load``: a DAC driving a meter's consumption-rate input; the load factor is
  ``factor_at_0v + factor_per_volt * volts`` (``meter.set_load``);
- ``meter_output``: an ADC reading a meter output through ``meter.get``:
  ``offset_v + volts_per_unit * value`` where ``value`` names one of the meter's
  values (``power_w``, ``flow_m3h``, ...) or ``running`` (1 while sending, else 0).

Relays count 1..16, DAC and ADC channels 1..4, as printed on the board. Every
entry may have a ``name`` (unique) by which requests can address its relay.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from smtestbed.services._runtime.config import parse_host_port
from smtestbed.services._runtime.errors import ConfigError

RELAYS = 16
DAC_CHANNELS = 4
ADC_CHANNELS = 4
KINDS = ("relay", "line", "power", "load", "meter_output")
MAX_LOAD_FACTOR = 100.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayWire:
    """A relay and what it switches (``kind`` relay, line or power)."""

    kind: str
    relay: int
    name: str
    closed: bool
    listen: tuple[str, int] | None = None
    target: tuple[str, int] | None = None
    meter: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadWire:
    """A DAC channel driving a meter's consumption-rate input."""

    dac: int
    name: str
    meter: str
    factor_per_volt: float
    factor_at_0v: float
    volts: float

    def factor(self, volts: float) -> float:
        """Return the load factor the meter sees at ``volts`` (never below 0)."""
        return max(0.0, self.factor_at_0v + self.factor_per_volt * volts)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputWire:
    """An ADC channel reading one output of a meter."""

    adc: int
    name: str
    meter: str
    value: str
    volts_per_unit: float
    offset_v: float

    def volts(self, value: float) -> float:
        """Return the voltage the meter's output puts on the ADC input."""
        return self.offset_v + self.volts_per_unit * value


@dataclass(frozen=True, slots=True, kw_only=True)
class Wiring:
    """All validated entries."""

    relays: tuple[RelayWire, ...] = ()
    loads: tuple[LoadWire, ...] = ()
    outputs: tuple[OutputWire, ...] = ()

    def relay(self, number: int) -> RelayWire | None:
        """Return the wiring of relay ``number``, or None when it is free."""
        return next((w for w in self.relays if w.relay == number), None)

    def load(self, dac: int) -> LoadWire | None:
        """Return the wiring of DAC channel ``dac``, or None."""
        return next((w for w in self.loads if w.dac == dac), None)

    def output(self, adc: int) -> OutputWire | None:
        """Return the wiring of ADC channel ``adc``, or None."""
        return next((w for w in self.outputs if w.adc == adc), None)

    def relay_named(self, name: str) -> int | None:
        """Return the relay number of the entry named ``name``, or None."""
        return next((w.relay for w in self.relays if w.name == name), None)

    def lines(self) -> tuple[RelayWire, ...]:
        """Return the relays sitting in wired M-Bus lines."""
        return tuple(w for w in self.relays if w.kind == "line")


class _Entry:
    """One wiring table with the key prefix its errors name."""

    def __init__(self, table: Any, where: str) -> None:
        if not isinstance(table, Mapping):
            raise ConfigError("must be a table", key=where)
        self.table = table
        self.where = where

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, key=f"{self.where}.{key}")

    def integer(self, key: str, low: int, high: int) -> int:
        value = self.table.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(key, f"must be an integer {low}..{high}, got {value!r}")
        return value

    def number(self, key: str, default: float) -> float:
        value = self.table.get(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self.fail(key, f"must be a finite number, got {value!r}")
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, got {value!r}")
        return value

    def text(self, key: str, default: str | None = None) -> str:
        value = self.table.get(key, default)
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"must be a non-empty string, got {value!r}")
        return value

    def meter(self) -> str:
        value = self.table.get("meter")
        if isinstance(value, str) and value.isdigit() and len(value) <= 8:
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 99_999_999:
            raise self.fail("meter", f"must be an 8-digit meter id, got {value!r}")
        return f"{value:08d}"

    def endpoint(self, key: str) -> tuple[str, int]:
        return parse_host_port(self.text(key), f"{self.where}.{key}")

    def only(self, allowed: Sequence[str]) -> None:
        for key in self.table:
            if key not in allowed:
                raise self.fail(str(key), f"unknown key (allowed: {', '.join(allowed)})")


_KEYS = {
    "relay": ("kind", "name", "relay", "closed"),
    "line": ("kind", "name", "relay", "closed", "listen", "target"),
    "power": ("kind", "name", "relay", "closed", "meter"),
    "load": ("kind", "name", "dac", "meter", "factor_per_volt", "factor_at_0v", "volts"),
    "meter_output": ("kind", "name", "adc", "meter", "value", "volts_per_unit", "offset_v"),
}


def _relay(e: _Entry, kind: str) -> RelayWire:
    relay = e.integer("relay", 1, RELAYS)
    return RelayWire(
        kind=kind,
        relay=relay,
        name=e.text("name", f"relay{relay}"),
        closed=e.flag("closed", True),
        listen=e.endpoint("listen") if kind == "line" else None,
        target=e.endpoint("target") if kind == "line" else None,
        meter=e.meter() if kind == "power" else "",
    )


def _load(e: _Entry, dac_range: tuple[float, float]) -> LoadWire:
    dac = e.integer("dac", 1, DAC_CHANNELS)
    low, high = dac_range
    volts = e.number("volts", low)
    if not low <= volts <= high:
        raise e.fail("volts", f"must be within the DAC range {low:g}..{high:g} V, got {volts:g}")
    wire = LoadWire(
        dac=dac,
        name=e.text("name", f"dac{dac}"),
        meter=e.meter(),
        factor_per_volt=e.number("factor_per_volt", 0.2),
        factor_at_0v=e.number("factor_at_0v", 0.0),
        volts=volts,
    )
    if max(wire.factor(low), wire.factor(high)) > MAX_LOAD_FACTOR:
        raise e.fail("factor_per_volt", f"gives a load factor above {MAX_LOAD_FACTOR:g}")
    return wire


def _output(e: _Entry) -> OutputWire:
    adc = e.integer("adc", 1, ADC_CHANNELS)
    value = e.text("value")
    if not value.isidentifier():
        raise e.fail("value", f"must name a meter value (power_w, running, ...), got {value!r}")
    return OutputWire(
        adc=adc,
        name=e.text("name", f"adc{adc}"),
        meter=e.meter(),
        value=value,
        volts_per_unit=e.number("volts_per_unit", 1.0),
        offset_v=e.number("offset_v", 0.0),
    )


def parse_wiring(tables: Sequence[Any], *, dac_range: tuple[float, float] = (0.0, 10.0)) -> Wiring:
    """Validate every wiring entry; errors name ``iohw.wiring[i].<key>``.

    Raises:
        ConfigError: an entry is not a table, has an unknown kind or key, a value
            out of range, or uses a relay, channel, name or listen address twice.
    """
    relays: list[RelayWire] = []
    loads: list[LoadWire] = []
    outputs: list[OutputWire] = []
    for i, table in enumerate(tables):
        e = _Entry(table, f"iohw.wiring[{i}]")
        kind = e.table.get("kind")
        if kind not in KINDS:
            raise e.fail("kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
        e.only(_KEYS[kind])
        if kind == "load":
            loads.append(_load(e, dac_range))
        elif kind == "meter_output":
            outputs.append(_output(e))
        else:
            relays.append(_relay(e, kind))
        _check_unique(relays, loads, outputs, e)
    return Wiring(relays=tuple(relays), loads=tuple(loads), outputs=tuple(outputs))


def _check_unique(
    relays: Sequence[RelayWire], loads: Sequence[LoadWire], outputs: Sequence[OutputWire], e: _Entry
) -> None:
    """Check the newest entry against the ones before it."""
    names = [w.name for w in relays] + [w.name for w in loads] + [w.name for w in outputs]
    for key, values in (
        ("relay", [w.relay for w in relays]),
        ("dac", [w.dac for w in loads]),
        ("adc", [w.adc for w in outputs]),
        ("listen", [w.listen for w in relays if w.listen is not None]),
        ("name", names),
    ):
        if len(set(values)) != len(values):
            raise e.fail(key, f"{e.table.get(key, names[-1])!r} is wired twice")
