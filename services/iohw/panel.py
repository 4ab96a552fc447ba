"""What the board's requests do: switch relays, set DACs, read ADCs, with their wiring.

A :class:`Panel` validates a request's parameters (a bad one raises
:class:`RequestError` naming the field and changes nothing), carries out the
wiring's effect in the sensor farm first (a refused effect leaves the board
as it was) and then switches the board. Every change is reported through
``on_change`` with its old and new value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

from smtestbed.proto import topics
from smtestbed.services._runtime.errors import PeerError, RequestError
from smtestbed.services.iohw.backend import Backend
from smtestbed.services.iohw.board import check_channel
from smtestbed.services.iohw.wiring import ADC_CHANNELS, DAC_CHANNELS, RELAYS, Wiring

ChangeSink = Callable[[dict[str, Any]], None]


class MeterRequester(Protocol):
    """Sends meter requests to the sensor farm (the bus in the service)."""

    async def __call__(self, method: str, params: dict[str, Any]) -> Any:
        """Send ``method`` with ``params``; return the reply or raise PeerError."""
        ...


def params_map(params: Any) -> dict[str, Any]:
    """Return ``params`` as a map; RequestError naming ``params`` otherwise."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise RequestError(f"must be a map, got {type(params).__name__}", field="params")
    return params


def _flag(p: dict[str, Any], key: str) -> bool:
    value = p.get(key)
    if not isinstance(value, bool):
        raise RequestError(f"must be true or false, got {value!r}", field=key)
    return value


def _volts(p: dict[str, Any], key: str) -> float:
    value = p.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RequestError(f"must be a finite number of volts, got {value!r}", field=key)
    return float(value)


class Panel:
    """The board's request handlers over one backend and one wiring."""

    def __init__(
        self,
        backend: Backend,
        wiring: Wiring,
        *,
        meters: MeterRequester,
        on_change: ChangeSink,
    ) -> None:
        self.backend = backend
        self.wiring = wiring
        self._meters = meters
        self._on_change = on_change
        # The line relays are read on every chunk of bytes: keep their positions at hand.
        self.positions = [False] * RELAYS

    async def load_positions(self) -> None:
        """Read the relay positions from the board."""
        self.positions = await self.backend.relays()

    def is_closed(self, relay: int) -> Callable[[], bool]:
        """Return a check of relay ``relay``'s position (for the line pass-through)."""
        return lambda: self.positions[relay - 1]

    def relay_number(self, value: Any) -> int:
        """Return the relay a request names by number (1..16) or wiring name."""
        if isinstance(value, str):
            number = self.wiring.relay_named(value)
            if number is not None:
                return number
            if not value.isdigit():
                names = ", ".join(w.name for w in self.wiring.relays) or "none"
                raise RequestError(f"no relay named {value!r} (names: {names})", field="relay")
            value = int(value)
        return check_channel(value, RELAYS, "relay")

    def describe_relay(self, relay: int) -> dict[str, Any]:
        """Return a relay's number, wiring and position."""
        wire = self.wiring.relay(relay)
        out: dict[str, Any] = {
            "relay": relay,
            "name": wire.name if wire else f"relay{relay}",
            "kind": wire.kind if wire else "free",
            "closed": self.positions[relay - 1],
        }
        if wire is not None and wire.meter:
            out["meter"] = wire.meter
        return out

    async def relay(self, params: Any, by: str) -> dict[str, Any]:
        """``iohw.relay`` {relay, closed}: switch a relay (without ``closed``: read it)."""
        p = params_map(params)
        relay = self.relay_number(p.get("relay"))
        if "closed" not in p:
            return self.describe_relay(relay)
        return await self.switch(relay, _flag(p, "closed"), by)

    async def switch(self, relay: int, closed: bool, by: str) -> dict[str, Any]:
        """Switch ``relay`` to ``closed``: the wiring's effect first, then the board."""
        old = self.positions[relay - 1]
        if old != closed:
            await self._relay_effect(relay, closed)
            await self.backend.set_relay(relay, closed)
            self.positions[relay - 1] = closed
            info = self.describe_relay(relay)
            self._on_change({"what": "relay", **info, "old": old, "new": closed, "by": by})
        return {**self.describe_relay(relay), "old": old, "changed": old != closed}

    async def _relay_effect(self, relay: int, closed: bool) -> None:
        wire = self.wiring.relay(relay)
        if wire is None or wire.kind != "power":
            return  # a line relay acts through positions; a free relay drives nothing
        method = topics.METER_RESUME if closed else topics.METER_STOP
        await self._meter(method, {"meter": wire.meter}, wire.name)

    async def _meter(self, method: str, params: dict[str, Any], entry: str) -> Any:
        try:
            return await self._meters(method, params)
        except PeerError as exc:
            raise PeerError(f"{entry}: the sensor farm did not take {method}: {exc}") from exc

    async def dio(self, params: Any, by: str) -> dict[str, Any]:
        """``iohw.dio`` {mask?}: the 16 digital outputs as a bit mask (bit 0 = relay 1)."""
        p = params_map(params)
        if "mask" in p:
            mask = p["mask"]
            if isinstance(mask, bool) or not isinstance(mask, int) or not 0 <= mask < 1 << RELAYS:
                raise RequestError(f"must be an integer 0..0xFFFF, got {mask!r}", field="mask")
            for relay in range(1, RELAYS + 1):
                await self.switch(relay, bool(mask >> (relay - 1) & 1), by)
        mask_now = sum(1 << i for i, closed in enumerate(self.positions) if closed)
        return {"mask": mask_now, "lines": list(self.positions)}

    def dac_channel(self, value: Any) -> int:
        """Return the DAC channel a request names by number (1..4) or wiring name."""
        if isinstance(value, str):
            found = next((w.dac for w in self.wiring.loads if w.name == value), None)
            if found is None:
                raise RequestError(f"no DAC channel named {value!r}", field="channel")
            return found
        return check_channel(value, DAC_CHANNELS, "channel")

    async def dac(self, params: Any, by: str) -> dict[str, Any]:
        """``iohw.dac`` {channel, volts}: set a DAC output (without ``volts``: read it)."""
        p = params_map(params)
        channel = self.dac_channel(p.get("channel"))
        old = await self.backend.dac_volts(channel)
        if "volts" not in p:
            return self._dac_reply(channel, old)
        volts = _volts(p, "volts")
        conv = self.backend.dac
        if not conv.contains(volts):
            raise RequestError(
                f"must be within {conv.min_v:g}..{conv.max_v:g} V, got {volts:g}", field="volts"
            )
        await self.apply_load(channel, conv.quantise(volts))
        new = await self.backend.set_dac(channel, volts)
        if new != old:
            self._on_change(
                {"what": "dac", **self._dac_reply(channel, new), "old": old, "new": new, "by": by}
            )
        return {**self._dac_reply(channel, new), "requested": volts, "old": old}

    async def apply_load(self, channel: int, volts: float) -> None:
        """Tell the meter wired to DAC ``channel`` the load factor ``volts`` stands for."""
        wire = self.wiring.load(channel)
        if wire is not None:
            params = {"meter": wire.meter, "factor": wire.factor(volts)}
            await self._meter(topics.METER_SET_LOAD, params, wire.name)

    def _dac_reply(self, channel: int, volts: float) -> dict[str, Any]:
        wire = self.wiring.load(channel)
        out: dict[str, Any] = {
            "channel": channel,
            "volts": volts,
            "code": self.backend.dac.code(volts),
        }
        if wire is not None:
            out.update(name=wire.name, meter=wire.meter, load_factor=wire.factor(volts))
        return out

    async def adc(self, params: Any, by: str) -> dict[str, Any]:
        """``iohw.adc`` {channel}: read an ADC input (a wired meter output is sampled first)."""
        p = params_map(params)
        raw = p.get("channel")
        if isinstance(raw, str):
            raw = next((w.adc for w in self.wiring.outputs if w.name == raw), raw)
        channel = check_channel(raw, ADC_CHANNELS, "channel")
        out: dict[str, Any] = {"channel": channel}
        wire = self.wiring.output(channel)
        if wire is not None:
            state = await self._meter(topics.METER_GET, {"meter": wire.meter}, wire.name)
            value = output_value(state, wire.value, wire.name)
            await self.backend.drive_input(channel, wire.volts(value))
            out.update(name=wire.name, meter=wire.meter, value=wire.value, source=value)
        volts = await self.backend.read_adc(channel)
        return {**out, "volts": volts, "code": self.backend.adc.code(volts)}


def output_value(state: Any, name: str, entry: str) -> float:
    """Return the meter output ``name`` from a ``meter.get`` reply."""
    if not isinstance(state, dict) or not isinstance(state.get("values"), dict):
        raise PeerError(f"{entry}: meter.get answered without values")
    if name == "running":
        return 0.0 if state.get("stopped") else 1.0
    values = state["values"]
    if name not in values:
        have = ", ".join(sorted(values)) or "none"
        raise PeerError(f"{entry}: meter {state.get('meter')} has no value {name!r} ({have})")
    return float(values[name])
