"""The defined initial state of a scenario: what the testbed looks like before it acts.

A :class:`TestbedState` is a frozen value built from a dict (or a TOML file) by
:func:`state_from_dict`; every bad entry raises :class:`ConfigError` naming its dotted
key (``state.population.count``). The :class:`~.testbed.Testbed` turns it into
configuration files, starts the services and confirms that they report this state.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from smtestbed.services._runtime.config import read_toml
from smtestbed.services._runtime.errors import ConfigError

DEFAULT_MIX = "electricity=0.5,gas=0.25,water=0.25"
DEFAULT_START = datetime(2026, 11, 30, 12, tzinfo=UTC).timestamp()
CLOCK_MODES = ("stepped", "scaled", "realtime")
STEP_CONTROLS = ("free", "request")
SECURITY_MODES = (0, 5, 7)
TAFS = ("taf1", "taf2", "taf6", "taf7")
CERTIFICATES = ("gateway", "gwa", "emt", "timeservice")
SERVICES = (
    "broker",
    "sensorfarm",
    "channel",
    "gateway",
    "ca",
    "timeservice",
    "iohw",
    "controller",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockState:
    """The shared simulation clock: mode, start (s since the epoch) and window (s)."""

    mode: str = "stepped"
    start: float = DEFAULT_START
    window_s: float = 60.0
    scale: float = 1.0
    step_control: str = "request"  # stepped only; "free": the farm runs windows by itself


@dataclass(frozen=True, slots=True, kw_only=True)
class PopulationState:
    """Generated meters: count, kind mix, security mode, sending interval (s), area side (m)."""

    count: int = 6
    mix: str = DEFAULT_MIX
    security: int = 5
    interval_s: float = 300.0
    area_m: float = 100.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiverState:
    """A gateway's antenna in the channel: instance name and position (m)."""

    name: str
    x: float
    y: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelState:
    """The radio: receivers (one per gateway instance), faults per receiver, interferers."""

    receivers: tuple[ReceiverState, ...] = ()
    faults: tuple[dict[str, Any], ...] = ()
    interferers: tuple[dict[str, Any], ...] = ()
    shadowing_sigma_db: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryState:
    """Which meters the gateway knows: ``all``, ``none`` or a list of ids; TAFs; the EMT."""

    meters: str | tuple[str, ...] = "all"
    tafs: tuple[str, ...] = TAFS
    emt: str = "emt-a"
    assign: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class WiredState:
    """Wired M-Bus meters of the population served on one TCP line the gateway polls."""

    enabled: bool = False
    interval_s: float = 60.0
    relay: str = ""  # an iohw relay sitting in the line ("" : none)


@dataclass(frozen=True, slots=True, kw_only=True)
class PkiState:
    """Whether a CA runs, and which end-entity certificates are made before the start."""

    enabled: bool = False
    certificates: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class TestbedState:
    """Everything a scenario's initial state consists of (see the module docstring)."""

    __test__ = False  # not a pytest test class

    seed: int = 1
    clock: ClockState = field(default_factory=ClockState)
    population: PopulationState = field(default_factory=PopulationState)
    meters: tuple[dict[str, Any], ...] = ()  # explicit [[meter]] rows instead of population
    keys: dict[str, str] = field(default_factory=dict)  # meter -> key set at the meter only
    channel: ChannelState = field(default_factory=ChannelState)
    registry: RegistryState = field(default_factory=RegistryState)
    wired: WiredState = field(default_factory=WiredState)
    pki: PkiState = field(default_factory=PkiState)
    relays: dict[str, bool] = field(default_factory=dict)  # iohw relay -> closed
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def gateways(self) -> tuple[str, ...]:
        """Return the gateway instance names (one per receiver)."""
        return tuple(r.name for r in self.receivers())

    def receivers(self) -> tuple[ReceiverState, ...]:
        """Return the receivers; one ``gw0`` in the middle of the area by default."""
        if self.channel.receivers:
            return self.channel.receivers
        half = self.population.area_m / 2
        return (ReceiverState(name="gw0", x=half, y=half),)

    def with_overrides(self, overrides: Mapping[str, Any]) -> TestbedState:
        """Return this state with ``overrides`` merged in (nested dicts merge key by key)."""
        return state_from_dict(merge(as_dict(self), overrides))


def as_dict(state: TestbedState) -> dict[str, Any]:
    """Return ``state`` as plain dicts and lists (the inverse of :func:`state_from_dict`)."""
    out: dict[str, Any] = _plain(dataclasses.asdict(state))
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``overrides`` into ``base``; tables merge recursively, other values replace."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_state(path: Path) -> TestbedState:
    """Read a state from a TOML file (the same tables as :func:`state_from_dict`)."""
    return state_from_dict(read_toml(path))


def state_from_dict(data: Mapping[str, Any]) -> TestbedState:
    """Build and validate a state; ConfigError names the key at fault (``state.<key>``)."""
    d = _Table(data, "state")
    state = TestbedState(
        seed=d.integer("seed", 1, 0, 2**31 - 1),
        clock=_clock(d.table("clock")),
        population=_population(d.table("population")),
        meters=tuple(d.tables("meters")),
        keys=_keys(d.table("keys")),
        channel=_channel(d.table("channel")),
        registry=_registry(d.table("registry")),
        wired=_wired(d.table("wired")),
        pki=_pki(d.table("pki")),
        relays={k: v for k, v in d.table("relays").data.items() if _flag(v, f"state.relays.{k}")},
        settings=_settings(d.table("settings")),
    )
    d.done()
    _check_cross(state)
    return state


def _flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"must be true or false, got {value!r}", key=key)
    return True


class _Table:
    """Typed reads from one table; :meth:`done` refuses keys nobody read."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"must be a table, got {data!r}", key=where)
        self.data: Mapping[str, Any] = data
        self.where = where
        self._read: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.where}.{name}"

    def get(self, name: str, default: Any) -> Any:
        self._read.add(name)
        return self.data.get(name, default)

    def integer(self, name: str, default: int, lo: int, hi: int) -> int:
        value = self.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ConfigError(f"must be an integer {lo}..{hi}, got {value!r}", key=self.key(name))
        return value

    def number(self, name: str, default: float, lo: float, hi: float = math.inf) -> float:
        value = self.get(name, default)
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or not lo <= value <= hi:
            raise ConfigError(
                f"must be a number in [{lo:g}, {hi:g}], got {value!r}", key=self.key(name)
            )
        return float(value)

    def text(self, name: str, default: str, choices: tuple[str, ...] = ()) -> str:
        value = self.get(name, default)
        if not isinstance(value, str):
            raise ConfigError(f"must be a string, got {value!r}", key=self.key(name))
        if choices and value not in choices:
            raise ConfigError(f"{value!r} is not one of {', '.join(choices)}", key=self.key(name))
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.get(name, default)
        _flag(value, self.key(name))
        return bool(value)

    def strings(
        self, name: str, default: tuple[str, ...], choices: tuple[str, ...] = ()
    ) -> tuple[str, ...]:
        value = self.get(name, default)
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"must be a list of strings, got {value!r}", key=self.key(name))
        bad = [v for v in value if choices and v not in choices]
        if bad:
            raise ConfigError(f"{bad[0]!r} is not one of {', '.join(choices)}", key=self.key(name))
        return tuple(value)

    def table(self, name: str) -> _Table:
        return _Table(self.get(name, {}), self.key(name))

    def tables(self, name: str) -> list[dict[str, Any]]:
        value = self.get(name, [])
        if not isinstance(value, list | tuple) or not all(isinstance(v, Mapping) for v in value):
            raise ConfigError("must be a list of tables", key=self.key(name))
        return [dict(v) for v in value]

    def done(self) -> None:
        unknown = sorted(set(self.data) - self._read)
        if unknown:
            raise ConfigError("unknown key", key=self.key(unknown[0]))


def _clock(t: _Table) -> ClockState:
    out = ClockState(
        mode=t.text("mode", "stepped", CLOCK_MODES),
        start=t.number("start", DEFAULT_START, 1.0),
        window_s=t.number("window_s", 60.0, 0.001, 86_400.0),
        scale=t.number("scale", 1.0, 1e-6),
        step_control=t.text("step_control", "request", STEP_CONTROLS),
    )
    t.done()
    return out


def _population(t: _Table) -> PopulationState:
    out = PopulationState(
        count=t.integer("count", 6, 0, 1_000_000),
        mix=t.text("mix", DEFAULT_MIX),
        security=t.integer("security", 5, 0, 7),
        interval_s=t.number("interval_s", 300.0, 1.0, 7 * 86_400.0),
        area_m=t.number("area_m", 100.0, 1.0, 1e6),
    )
    if out.security not in SECURITY_MODES:
        raise ConfigError(f"must be 0, 5 or 7, got {out.security}", key=t.key("security"))
    t.done()
    return out


def _keys(t: _Table) -> dict[str, str]:
    for meter, key in t.data.items():
        t.get(meter, None)
        ok = isinstance(key, str) and len(key) == 32
        try:
            bytes.fromhex(key if ok else "")
        except ValueError:
            ok = False
        if not ok:
            raise ConfigError("must be 32 hex digits (an AES-128 key)", key=t.key(meter))
    return dict(t.data)


def _channel(t: _Table) -> ChannelState:
    receivers = []
    for i, row in enumerate(t.tables("receivers")):
        r = _Table(row, f"{t.key('receivers')}[{i}]")
        receivers.append(
            ReceiverState(
                name=r.text("name", ""), x=r.number("x", 0.0, -1e7), y=r.number("y", 0.0, -1e7)
            )
        )
        if not receivers[-1].name:
            raise ConfigError("needs a name", key=r.key("name"))
        r.done()
    names = [r.name for r in receivers]
    if len(set(names)) != len(names):
        raise ConfigError(f"receiver names repeat: {names}", key=t.key("receivers"))
    out = ChannelState(
        receivers=tuple(receivers),
        faults=tuple(t.tables("faults")),
        interferers=tuple(t.tables("interferers")),
        shadowing_sigma_db=t.number("shadowing_sigma_db", 0.0, 0.0, 40.0),
    )
    t.done()
    return out


def _registry(t: _Table) -> RegistryState:
    raw = t.get("meters", "all")
    if isinstance(raw, str):
        if raw not in ("all", "none"):
            raise ConfigError(
                f"must be 'all', 'none' or a list of meter ids, got {raw!r}", key=t.key("meters")
            )
        meters: str | tuple[str, ...] = raw
    else:
        meters = t.strings("meters", ())
    assign = t.table("assign")
    out = RegistryState(
        meters=meters,
        tafs=t.strings("tafs", TAFS, TAFS),
        emt=t.text("emt", "emt-a"),
        assign={m: assign.strings(m, (), TAFS) for m in assign.data},
    )
    t.done()
    return out


def _wired(t: _Table) -> WiredState:
    out = WiredState(
        enabled=t.boolean("enabled", False),
        interval_s=t.number("interval_s", 60.0, 0.1),
        relay=t.text("relay", ""),
    )
    t.done()
    return out


def _pki(t: _Table) -> PkiState:
    out = PkiState(
        enabled=t.boolean("enabled", False),
        certificates=t.strings("certificates", (), CERTIFICATES),
    )
    t.done()
    return out


def _settings(t: _Table) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for service in t.data:
        if service not in SERVICES:
            raise ConfigError(f"no service {service!r} ({', '.join(SERVICES)})", key=t.key(service))
        out[service] = dict(t.table(service).data)
    return out


def _check_cross(state: TestbedState) -> None:
    if state.pki.certificates and not state.pki.enabled:
        raise ConfigError("certificates need enabled = true", key="state.pki.certificates")
    if state.wired.relay and not state.wired.enabled:
        raise ConfigError("a relay in the wired line needs wired.enabled", key="state.wired.relay")
