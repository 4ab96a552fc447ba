"""The meter population: one struct of numpy arrays, one row per meter.

A :class:`Population` holds every per-meter field the kernels read or write as a
column of length ``n`` (10^6 meters take about 120 bytes each). It comes from
:func:`generate` (seeded) or from a TOML or CSV file (:func:`load_toml`,
:func:`load_csv`).

Units: ``interval_s`` s, ``jitter`` fraction of the interval, ``x_m``/``y_m`` m,
``tx_power_dbm`` dBm, ``next_tx`` simulation time in s since the Unix epoch,
``airtime_s`` s of air time spent in hour ``airtime_hour`` (``floor(t / 3600)``,
-1 = none yet). ``ident`` is the decimal meter number 0..99999999, sent as 8 BCD
digits on the wire. ``values`` columns follow :data:`schema.VALUE_COLUMNS`.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import numpy as np
import numpy.typing as npt
from smtestbed.proto.wmbus.fields import manufacturer_value
from smtestbed.services._runtime.config import read_toml
from smtestbed.services._runtime.errors import ConfigError, ProtocolError
from smtestbed.services.sensorfarm.schema import (
    COUNTER_COLUMNS,
    DEVICE_TYPE,
    N_VALUES,
    VALUE_COLUMNS,
    Interface,
    MeterKind,
    RadioMode,
)

MAX_IDENT = 99_999_999
SECURITY_MODES = (0, 5, 7)
KEY_BYTES = 16

# Manufacturers (FLAG codes) that build each kind of meter.
MANUFACTURERS: dict[MeterKind, tuple[str, ...]] = {
    MeterKind.ELECTRICITY: ("EMH", "ESY", "EBZ", "LGB", "ITR", "APA"),
    MeterKind.GAS: ("ELS", "ITR", "APA", "PIP"),
    MeterKind.WATER: ("ZRI", "DME", "KAM", "ITW", "SEN", "APA"),
    MeterKind.HEAT: ("KAM", "LUG", "ZRI", "DME", "EFE", "TCH", "QDS"),
}

DEFAULT_MIX = {"electricity": 0.5, "gas": 0.2, "water": 0.2, "heat": 0.1}
DEFAULT_MODES = {"c1": 0.6, "t1": 0.35, "s1": 0.05}

U8 = npt.NDArray[np.uint8]
U16 = npt.NDArray[np.uint16]
U32 = npt.NDArray[np.uint32]
I32 = npt.NDArray[np.int32]
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True, kw_only=True)
class Population:
    """All meters as columns; row ``i`` of every array is meter ``i``.

    The arrays are mutated in place by the kernels and by manipulation requests;
    the dataclass is frozen so that no column is ever replaced by one of another
    length or dtype.
    """

    ident: U32
    manufacturer: U16
    version: U8
    kind: U8
    device_type: U8
    mode: U8
    interface: U8
    security: U8
    key: U8  # shape (n, 16)
    interval_s: F32
    jitter: F32
    x_m: F32
    y_m: F32
    tx_power_dbm: F32
    values: F64  # shape (n, N_VALUES)
    scale: F32
    next_tx: F64
    access_number: U8
    message_counter: U32
    airtime_s: F32
    airtime_hour: I32
    stopped: Bools
    corrupt_next: U16
    primary_address: U8

    def __post_init__(self) -> None:
        n = len(self.ident)
        for f in dataclasses.fields(self):
            column = getattr(self, f.name)
            dtype = np.dtype(_DTYPES[f.name])
            if column.dtype != dtype or column.shape != _shape(f.name, n):
                raise ConfigError(
                    f"column {f.name} is {column.dtype}{column.shape}, "
                    f"expected {dtype}{_shape(f.name, n)}",
                    key=f.name,
                )

    def __len__(self) -> int:
        return len(self.ident)

    def index_of(self, ident: int) -> int:
        """Return the row of the meter numbered ``ident``.

        Raises:
            ConfigError: no meter has that number.
        """
        rows = np.flatnonzero(self.ident == ident)
        if len(rows) == 0:
            raise ConfigError(f"no meter with ID {ident:08d}", key="ident")
        return int(rows[0])

    def memory_bytes(self) -> int:
        """Return the bytes held by all columns (the numpy buffers)."""
        return sum(getattr(self, f.name).nbytes for f in dataclasses.fields(self))


_DTYPES: dict[str, type[np.generic]] = {
    "ident": np.uint32,
    "manufacturer": np.uint16,
    "version": np.uint8,
    "kind": np.uint8,
    "device_type": np.uint8,
    "mode": np.uint8,
    "interface": np.uint8,
    "security": np.uint8,
    "key": np.uint8,
    "interval_s": np.float32,
    "jitter": np.float32,
    "x_m": np.float32,
    "y_m": np.float32,
    "tx_power_dbm": np.float32,
    "values": np.float64,
    "scale": np.float32,
    "next_tx": np.float64,
    "access_number": np.uint8,
    "message_counter": np.uint32,
    "airtime_s": np.float32,
    "airtime_hour": np.int32,
    "stopped": np.bool_,
    "corrupt_next": np.uint16,
    "primary_address": np.uint8,
}


def _shape(name: str, n: int) -> tuple[int, ...]:
    if name == "key":
        return (n, KEY_BYTES)
    if name == "values":
        return (n, N_VALUES)
    return (n,)


def empty(n: int) -> Population:
    """Return a population of ``n`` zeroed meters (``airtime_hour`` -1)."""
    columns = {name: np.zeros(_shape(name, n), dtype) for name, dtype in _DTYPES.items()}
    columns["airtime_hour"][:] = -1
    return Population(**columns)


def parse_mix(text: str) -> dict[str, float]:
    """Parse ``"electricity=0.5,gas=0.2"`` into kind name -> share.

    Raises:
        ConfigError: an item is not ``NAME=NUMBER``, names an unknown kind, repeats
            one, is negative, or all shares are 0.
    """
    mix: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, share = item.partition("=")
        name = name.strip().lower()
        if not sep:
            raise ConfigError(f"{item!r} is not KIND=SHARE", key="mix")
        if name in mix:
            raise ConfigError(f"kind {name!r} given twice", key="mix")
        try:
            mix[name] = float(share)
        except ValueError as exc:
            raise ConfigError(f"share {share!r} of {name} is not a number", key="mix") from exc
    _shares(mix, MeterKind, "mix")
    return mix


def _shares(mix: Mapping[str, float], names: type[MeterKind | RadioMode], key: str) -> F64:
    """Return the normalised shares of ``mix`` in enum order; validate names and values."""
    known = {member.name.lower(): int(member) for member in names}
    shares = np.zeros(len(known))
    for name, share in mix.items():
        if name.lower() not in known:
            raise ConfigError(f"unknown name {name!r}; known: {', '.join(known)}", key=key)
        if not np.isfinite(share) or share < 0:
            raise ConfigError(f"share of {name} must be >= 0, got {share}", key=key)
        shares[known[name.lower()]] = share
    if shares.sum() <= 0:
        raise ConfigError("all shares are 0", key=key)
    return np.asarray(shares / shares.sum(), dtype=np.float64)


@dataclass(frozen=True, slots=True, kw_only=True)
class Area:
    """The rectangle meters are placed in, in m, from the origin."""

    width_m: float = 2000.0
    height_m: float = 2000.0


def generate(
    n: int,
    *,
    seed: int,
    mix: Mapping[str, float] | None = None,
    modes: Mapping[str, float] | None = None,
    security: int = 5,
    interface: Interface = Interface.WIRELESS,
    interval_s: float = 900.0,
    jitter: float = 0.1,
    area: Area = Area(),
    start_s: float = 0.0,
) -> Population:
    """Draw ``n`` meters from a seeded generator.

    Args:
        n: number of meters, 0..10^8.
        seed: seed of the ``numpy.random.Generator``; same seed, same population.
        mix: kind name -> share (normalised), default :data:`DEFAULT_MIX`.
        modes: radio mode name -> share, default :data:`DEFAULT_MODES`.
        security: security mode (0, 5 or 7) of every meter; keys are random anyway.
        interface: how every meter is attached.
        interval_s: mean send interval in s.
        jitter: send interval spread, fraction of the interval (0 <= jitter < 1).
        area: rectangle the meters are spread over uniformly.
        start_s: simulation time the first transmissions are spread after.

    Raises:
        ConfigError: any argument out of range.
    """
    _check_generate(n, security, interval_s, jitter)
    rng = np.random.default_rng(seed)
    pop = empty(n)
    pop.ident[:] = rng.choice(MAX_IDENT + 1, size=n, replace=False)
    pop.kind[:] = rng.choice(
        len(MeterKind), size=n, p=_shares(mix or DEFAULT_MIX, MeterKind, "mix")
    )
    pop.mode[:] = rng.choice(
        len(RadioMode), size=n, p=_shares(modes or DEFAULT_MODES, RadioMode, "modes")
    )
    _fill_identity(pop, rng)
    pop.interface[:] = interface
    pop.security[:] = security
    pop.key[:] = rng.integers(0, 256, size=(n, KEY_BYTES), dtype=np.uint8)
    pop.interval_s[:] = interval_s
    pop.jitter[:] = jitter
    pop.x_m[:] = rng.uniform(0.0, area.width_m, n)
    pop.y_m[:] = rng.uniform(0.0, area.height_m, n)
    pop.tx_power_dbm[:] = rng.choice(np.array([10.0, 12.0, 14.0]), size=n)
    pop.scale[:] = rng.lognormal(0.0, 0.4, n)
    pop.values[:, 0] = pop.scale * rng.uniform(0.0, 5.0, n) * _YEARLY[pop.kind]
    pop.values[:, 1] = np.where(pop.kind == MeterKind.HEAT, pop.values[:, 0] / 40_000.0, 0.0)
    pop.next_tx[:] = start_s + rng.uniform(0.0, interval_s, n)
    pop.access_number[:] = rng.integers(0, 256, n, dtype=np.uint8)
    pop.message_counter[:] = rng.integers(0, 1000, n, dtype=np.uint32)
    if interface != Interface.WIRELESS:
        pop.primary_address[:] = np.arange(n) % 250 + 1
    return pop


# One year of mean consumption in counter-0 units (Wh or m^3) per kind, for starting levels.
_YEARLY = np.array([3_500_000.0, 1_500.0, 130.0, 13_000_000.0])


def _check_generate(n: int, security: int, interval_s: float, jitter: float) -> None:
    if not 0 <= n <= MAX_IDENT + 1:
        raise ConfigError(f"meter count must be 0..{MAX_IDENT + 1}, got {n}", key="meters")
    if security not in SECURITY_MODES:
        raise ConfigError(f"security must be 0, 5 or 7, got {security}", key="security")
    if not interval_s > 0:
        raise ConfigError(f"interval must be > 0 s, got {interval_s}", key="interval_s")
    if not 0 <= jitter < 1:
        raise ConfigError(f"jitter must be in [0, 1), got {jitter}", key="jitter")


def _fill_identity(pop: Population, rng: np.random.Generator) -> None:
    """Draw manufacturer and version per meter from its kind's makers; set device types."""
    for kind in MeterKind:
        rows = np.flatnonzero(pop.kind == kind)
        codes = np.array([manufacturer_value(c) for c in MANUFACTURERS[kind]], np.uint16)
        pop.manufacturer[rows] = rng.choice(codes, size=len(rows))
        pop.device_type[rows] = DEVICE_TYPE[kind]
    pop.version[:] = rng.integers(1, 0x40, len(pop), dtype=np.uint8)


def load_toml(path: Path, *, seed: int = 0, start_s: float = 0.0) -> Population:
    """Load meters from the ``[[meter]]`` tables of a TOML file (fields: :data:`FIELDS`).

    Raises:
        ConfigError: the file is unreadable or not TOML, has no ``meter`` array, or a
            meter has a bad field (the key names the row, 1-based, and the field).
    """
    document = read_toml(path)
    meters = document.get("meter")
    if not isinstance(meters, list) or not all(isinstance(m, dict) for m in meters):
        raise ConfigError(f"{path} needs an array of [[meter]] tables", key="meter")
    return from_rows(meters, seed=seed, start_s=start_s)


def load_csv(path: Path, *, seed: int = 0, start_s: float = 0.0) -> Population:
    """Load meters from a CSV file with a header row, one meter per row.

    Empty cells take the field's default.

    Raises:
        ConfigError: the file is unreadable, or a row has a bad field or more cells
            than the header (the key names the row, 1-based after the header, and the field).
    """
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows: list[dict[str, object]] = []
            for number, row in enumerate(csv.DictReader(handle), start=1):
                if None in row:
                    raise ConfigError("more cells than header fields", key=f"row {number}")
                rows.append({name.strip(): value for name, value in row.items()})
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"population file {path} unreadable: {exc}") from exc
    return from_rows(rows, seed=seed, start_s=start_s)


def from_rows(
    rows: Sequence[Mapping[str, object]], *, seed: int = 0, start_s: float = 0.0
) -> Population:
    """Build a population from one mapping of field -> value per meter.

    First send times are drawn uniformly over each meter's interval after
    ``start_s`` from a generator seeded with ``seed``.

    Raises:
        ConfigError: a bad or unknown field, a missing required one, or a repeated ID;
            the key is ``row N.FIELD`` (N 1-based).
    """
    pop = empty(len(rows))
    seen: dict[int, int] = {}
    for i, fields in enumerate(rows):
        row = _Row(fields=fields, where=f"row {i + 1}")
        _fill_row(pop, i, row)
        first = seen.setdefault(int(pop.ident[i]), i + 1)
        if first != i + 1:
            raise row.error("id", f"ID {int(pop.ident[i]):08d} already used in row {first}")
    rng = np.random.default_rng(seed)
    pop.next_tx[:] = start_s + rng.uniform(0.0, 1.0, len(pop)) * pop.interval_s
    return pop


@dataclass(frozen=True, slots=True, kw_only=True)
class _Row:
    """One meter's fields from a file, with typed accessors that name the row on error."""

    fields: Mapping[str, object]
    where: str

    def error(self, name: str, message: str) -> ConfigError:
        return ConfigError(message, key=f"{self.where}.{name}")

    def raw(self, name: str, required: bool) -> object | None:
        value = self.fields.get(name)
        if value is None or value == "":
            if required:
                raise self.error(name, "is missing")
            return None
        return value

    def integer(self, name: str, lo: int, hi: int, default: int | None = None) -> int:
        value = self.raw(name, default is None)
        if value is None and default is not None:
            return default
        try:
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ValueError
            number = int(value)
        except ValueError:
            raise self.error(name, f"{value!r} is not an integer") from None
        if not lo <= number <= hi:
            raise self.error(name, f"{number} is not in {lo}..{hi}")
        return number

    def number(
        self, name: str, default: float, lo: float = -math.inf, hi: float = math.inf
    ) -> float:
        value = self.raw(name, False)
        if value is None:
            return default
        try:
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError
            number = float(value)
        except ValueError:
            raise self.error(name, f"{value!r} is not a number") from None
        if not (math.isfinite(number) and lo <= number <= hi):
            raise self.error(name, f"{number} is not in [{lo}, {hi}]")
        return number

    def choice(self, name: str, names: type[IntEnum], default: str | None = None) -> int:
        value = self.raw(name, default is None)
        text = str(value if value is not None else default).strip().upper()
        if text not in names.__members__:
            known = ", ".join(m.lower() for m in names.__members__)
            raise self.error(name, f"{value!r} is not one of {known}")
        return int(names[text])

    def text(self, name: str) -> str:
        value = self.raw(name, True)
        if not isinstance(value, str):
            raise self.error(name, f"{value!r} is not text")
        return value.strip()


# fmt: off
FIELDS = (
    "id", "manufacturer", "kind", "version", "device_type", "mode", "interface", "security",
    "key", "interval_s", "jitter", "x_m", "y_m", "tx_power_dbm", "scale", "primary_address",
    "access_number", "message_counter",
)
# fmt: on
"""Fields of a meter in a population file; also the value column names of its kind."""
_KNOWN = FIELDS + tuple(sorted({c for cols in VALUE_COLUMNS.values() for c in cols} - {""}))


def _fill_row(pop: Population, i: int, row: _Row) -> None:
    """Parse every field of ``row`` into row ``i`` of ``pop``."""
    kind = MeterKind(row.choice("kind", MeterKind))
    for name in row.fields:
        if name not in _KNOWN:
            raise row.error(name, "unknown field")
        foreign = name not in FIELDS and name not in VALUE_COLUMNS[kind]
        if foreign and row.raw(name, False) is not None:
            raise row.error(name, f"not a field of {kind.name.lower()} meters")
    pop.ident[i] = row.integer("id", 0, MAX_IDENT)
    pop.manufacturer[i] = _manufacturer(row)
    pop.kind[i] = kind
    pop.version[i] = row.integer("version", 0, 255, 1)
    pop.device_type[i] = row.integer("device_type", 0, 255, DEVICE_TYPE[kind])
    pop.mode[i] = row.choice("mode", RadioMode, "c1")
    pop.interface[i] = row.choice("interface", Interface, "wireless")
    _fill_security(pop, i, row)
    _fill_radio(pop, i, row)
    for column, name in enumerate(VALUE_COLUMNS[kind]):
        if name:
            lowest = 0.0 if column in COUNTER_COLUMNS[kind] else -math.inf
            pop.values[i, column] = row.number(name, 0.0, lo=lowest)


def _manufacturer(row: _Row) -> int:
    try:
        return manufacturer_value(row.text("manufacturer").upper())
    except ProtocolError as exc:
        raise row.error("manufacturer", str(exc)) from exc


def _fill_security(pop: Population, i: int, row: _Row) -> None:
    security = row.integer("security", 0, 7, 0)
    if security not in SECURITY_MODES:
        raise row.error("security", f"{security} is not 0, 5 or 7")
    pop.security[i] = security
    if security == 0 and row.raw("key", False) is None:
        return
    key = row.text("key")
    try:
        raw = bytes.fromhex(key)
    except ValueError:
        raw = b""
    if len(raw) != KEY_BYTES:
        raise row.error("key", f"needs {2 * KEY_BYTES} hex digits, got {key!r}")
    pop.key[i] = np.frombuffer(raw, np.uint8)


def _fill_radio(pop: Population, i: int, row: _Row) -> None:
    pop.interval_s[i] = row.number("interval_s", 900.0, lo=1e-3)
    pop.jitter[i] = row.number("jitter", 0.1, lo=0.0, hi=0.99)
    pop.x_m[i] = row.number("x_m", 0.0)
    pop.y_m[i] = row.number("y_m", 0.0)
    pop.tx_power_dbm[i] = row.number("tx_power_dbm", 14.0, lo=-30.0, hi=30.0)
    pop.scale[i] = row.number("scale", 1.0, lo=0.0)
    pop.primary_address[i] = row.integer("primary_address", 0, 250, 0)
    pop.access_number[i] = row.integer("access_number", 0, 255, 0)
    pop.message_counter[i] = row.integer("message_counter", 0, 2**32 - 1, 0)
