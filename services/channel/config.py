"""Configuration of the channel service and the typed radio scene it describes.

Receivers, obstacles, interferers and echoes are lists of TOML tables::

    [channel]
    seed = 7
    receivers = [{name = "gw0", x = 0.0, y = 0.0, gain_dbi = 2.0, sensitivity_dbm = -105.0}]
    obstacles = [{kind = "rect", x0 = 10.0, y0 = -5.0, x1 = 12.0, y1 = 5.0, loss_db = 12.0}]
    interferers = [{x = 50.0, y = 0.0, power_dbm = 10.0, burst_s = 0.01, period_s = 1.0}]
    echoes = [{delay_s = 2e-5, loss_db = 10.0}]

Positions are metres, powers dBm, gains and losses dB, times s. A bad entry raises a
:class:`ConfigError` naming it, e.g. ``channel.receivers[1].x``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from smtestbed.services._runtime.config import ServiceConfig, doc
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.channel import physics

_MISSING: Any = object()


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelConfig(ServiceConfig):
    """Settings of the channel service."""

    input_endpoint: str = doc("tcp://127.0.0.1:7710", "PULL endpoint (bound) for sim.frames")
    output_endpoint: str = doc("tcp://127.0.0.1:7711", "PUSH endpoint (connected) for sim.received")
    seed: int = doc(1, "seed of shadowing, interferer timing and bit errors")
    path_loss_exponent: float = doc(2.7, "log-distance path-loss exponent")
    reference_loss_db: float = doc(31.2, "path loss at 1 m, dB (free space at 868.95 MHz)")
    shadowing_sigma_db: float = doc(4.0, "log-normal shadowing per link, standard deviation, dB")
    noise: bool = doc(True, "add the receivers' thermal noise (kTB + noise figure)")
    noise_figure_db: float = doc(6.0, "receiver noise figure, dB")
    capture: bool = doc(True, "the strongest frame survives a collision by the threshold")
    capture_threshold_db: float = doc(6.0, "capture margin over the sum of colliding frames, dB")
    interference_margin_db: float = doc(
        10.0,
        "signals this far under a receiver's noise floor neither interfere nor are received"
        " there, dB (10 dB under the noise moves no SINR by more than 0.4 dB)",
    )
    receivers: tuple[dict[str, Any], ...] = doc(
        ({"name": "gw0", "x": 0.0, "y": 0.0},),
        "gateways: tables of name, x, y (m), gain_dbi, sensitivity_dbm",
    )
    obstacles: tuple[dict[str, Any], ...] = doc(
        (), "tables of kind (rect|segment), x0, y0, x1, y1 (m), loss_db"
    )
    interferers: tuple[dict[str, Any], ...] = doc(
        (), "ISM interferers: x, y (m), power_dbm, frequency_hz, burst_s, period_s"
    )
    echoes: tuple[dict[str, Any], ...] = doc((), "delayed copies: delay_s, loss_db")


@dataclass(frozen=True, slots=True, kw_only=True)
class Receiver:
    """A gateway's antenna: position (m), gain (dBi) and sensitivity (dBm)."""

    name: str
    x: float
    y: float
    gain_dbi: float = 0.0
    sensitivity_dbm: float = -105.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Obstacle:
    """A wall (segment) or building (axis-aligned rectangle) costing ``loss_db`` when crossed."""

    KINDS: ClassVar[tuple[str, ...]] = ("segment", "rect")
    kind: str
    x0: float
    y0: float
    x1: float
    y1: float
    loss_db: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Interferer:
    """An ISM transmitter sending one ``burst_s`` burst at a seeded time in every ``period_s``."""

    x: float
    y: float
    power_dbm: float
    frequency_hz: float = 868.95e6
    burst_s: float = 0.01
    period_s: float = 1.0

    @property
    def channel(self) -> int:
        """Return the index of the wM-Bus channel the interferer falls on."""
        return _channel_of(self.frequency_hz)


@dataclass(frozen=True, slots=True, kw_only=True)
class Echo:
    """A copy of every frame arriving ``delay_s`` later, ``loss_db`` weaker."""

    delay_s: float
    loss_db: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Scene:
    """The radio scene: what the kernels need beyond the frames themselves."""

    seed: int
    path_loss_exponent: float
    reference_loss_db: float
    shadowing_sigma_db: float
    noise: bool
    noise_figure_db: float
    capture: bool
    capture_threshold_db: float
    receivers: tuple[Receiver, ...]
    interference_margin_db: float = 10.0
    obstacles: tuple[Obstacle, ...] = ()
    interferers: tuple[Interferer, ...] = ()
    echoes: tuple[Echo, ...] = ()


def scene_from_config(config: ChannelConfig) -> Scene:
    """Validate the model settings and tables; raise ConfigError naming the bad field."""
    _check_model(config)
    return Scene(
        seed=config.seed,
        path_loss_exponent=config.path_loss_exponent,
        reference_loss_db=config.reference_loss_db,
        shadowing_sigma_db=config.shadowing_sigma_db,
        noise=config.noise,
        noise_figure_db=config.noise_figure_db,
        capture=config.capture,
        capture_threshold_db=config.capture_threshold_db,
        interference_margin_db=config.interference_margin_db,
        receivers=_receivers(config.receivers),
        obstacles=tuple(_obstacle(t, f"obstacles[{i}]") for i, t in enumerate(config.obstacles)),
        interferers=tuple(
            _interferer(t, f"interferers[{i}]") for i, t in enumerate(config.interferers)
        ),
        echoes=tuple(_echo(t, f"echoes[{i}]") for i, t in enumerate(config.echoes)),
    )


def _check_model(config: ChannelConfig) -> None:
    checks = {
        "path_loss_exponent": config.path_loss_exponent > 0,
        "shadowing_sigma_db": config.shadowing_sigma_db >= 0,
        "capture_threshold_db": config.capture_threshold_db >= 0,
        "interference_margin_db": 0 <= config.interference_margin_db <= 1000,
        "seed": 0 <= config.seed < 2**63,
    }
    for key, ok in checks.items():
        if not ok:
            raise ConfigError(f"out of range: {getattr(config, key)!r}", key=f"channel.{key}")
    for key in ("path_loss_exponent", "reference_loss_db", "noise_figure_db"):
        if not math.isfinite(getattr(config, key)):
            raise ConfigError("must be finite", key=f"channel.{key}")


def _receivers(tables: tuple[dict[str, Any], ...]) -> tuple[Receiver, ...]:
    if not tables:
        raise ConfigError("at least one receiver is needed", key="channel.receivers")
    out = tuple(_receiver(t, f"receivers[{i}]") for i, t in enumerate(tables))
    names = [r.name for r in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"receiver names repeat: {names}", key="channel.receivers")
    if len(out) > 0xFFFF:
        raise ConfigError("at most 65535 receivers", key="channel.receivers")
    return out


def _receiver(table: Mapping[str, Any], where: str) -> Receiver:
    _only(table, where, ("name", "x", "y", "gain_dbi", "sensitivity_dbm"))
    name = table.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError("needs a non-empty string", key=f"channel.{where}.name")
    return Receiver(
        name=name,
        x=_number(table, "x", where),
        y=_number(table, "y", where),
        gain_dbi=_number(table, "gain_dbi", where, 0.0),
        sensitivity_dbm=_number(table, "sensitivity_dbm", where, -105.0),
    )


def _obstacle(table: Mapping[str, Any], where: str) -> Obstacle:
    _only(table, where, ("kind", "x0", "y0", "x1", "y1", "loss_db"))
    kind = table.get("kind", "segment")
    if kind not in Obstacle.KINDS:
        raise ConfigError(f"{kind!r} is not rect or segment", key=f"channel.{where}.kind")
    coords = {k: _number(table, k, where) for k in ("x0", "y0", "x1", "y1")}
    return Obstacle(kind=kind, loss_db=_number(table, "loss_db", where, lo=0.0), **coords)


def _interferer(table: Mapping[str, Any], where: str) -> Interferer:
    _only(table, where, ("x", "y", "power_dbm", "frequency_hz", "burst_s", "period_s"))
    frequency = _number(table, "frequency_hz", where, 868.95e6)
    try:
        _channel_of(frequency)
    except ValueError as exc:
        raise ConfigError(str(exc), key=f"channel.{where}.frequency_hz") from None
    period = _number(table, "period_s", where, 1.0, lo=1e-6)
    burst = _number(table, "burst_s", where, 0.01, lo=0.0)
    if burst > period:
        raise ConfigError(f"{burst} s is longer than period_s", key=f"channel.{where}.burst_s")
    return Interferer(
        x=_number(table, "x", where),
        y=_number(table, "y", where),
        power_dbm=_number(table, "power_dbm", where),
        frequency_hz=frequency,
        burst_s=burst,
        period_s=period,
    )


def _echo(table: Mapping[str, Any], where: str) -> Echo:
    _only(table, where, ("delay_s", "loss_db"))
    return Echo(
        delay_s=_number(table, "delay_s", where, lo=0.0),
        loss_db=_number(table, "loss_db", where, lo=0.0),
    )


def _only(table: Any, where: str, keys: tuple[str, ...]) -> None:
    if not isinstance(table, Mapping):
        raise ConfigError(f"must be a table, got {table!r}", key=f"channel.{where}")
    for key in table:
        if key not in keys:
            raise ConfigError(
                f"unknown key (allowed: {', '.join(keys)})", key=f"channel.{where}.{key}"
            )


def _number(
    table: Mapping[str, Any], key: str, where: str, default: Any = _MISSING, lo: float | None = None
) -> float:
    value = table.get(key, default)
    if value is _MISSING:
        raise ConfigError("missing", key=f"channel.{where}.{key}")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"needs a finite number, got {value!r}", key=f"channel.{where}.{key}")
    if lo is not None and value < lo:
        raise ConfigError(f"{value} is below {lo}", key=f"channel.{where}.{key}")
    return float(value)


def _channel_of(frequency_hz: float) -> int:
    for index, centre in enumerate(physics.CHANNELS):
        if abs(frequency_hz - centre) <= 150e3:
            return index
    raise ValueError(f"{frequency_hz} Hz is on no wM-Bus channel ({physics.CHANNELS} +/- 150 kHz)")
