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

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from smtestbed.proto.wmbus.fields import manufacturer_value
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.sensorfarm.schema import (
    DEVICE_TYPE,
    N_VALUES,
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
