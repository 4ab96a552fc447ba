"""Service configuration: dataclass defaults <- TOML <- SMTB_* environment <- CLI.

Every service has a frozen dataclass derived from :class:`ServiceConfig`.
Values are taken, each layer overriding the one before, from

1. the dataclass defaults,
2. a TOML file: table ``[common]``, then the table named after the service,
3. the environment: ``SMTB_COMMON_<KEY>``, then ``SMTB_<SERVICE>_<KEY>``,
4. command-line options (``--set key=value`` and the service's own flags).

Unknown keys in the file's ``[common]`` or service table, values of the wrong
type and values outside a field's ``choices`` raise :class:`ConfigError`
naming the key and where it came from.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from smtestbed.services._runtime.errors import ConfigError

C = TypeVar("C", bound="ServiceConfig")

DEFAULT_PUB = "tcp://127.0.0.1:7701"
DEFAULT_SUB = "tcp://127.0.0.1:7702"
DEFAULT_RPC = "tcp://127.0.0.1:7703"


def choice(default: str, *choices: str, help: str = "") -> Any:
    """Declare a string field that only takes one of ``choices``."""
    return field(default=default, metadata={"choices": choices, "help": help})


def doc(default: Any, help: str) -> Any:
    """Declare a field with a help text shown by ``show-config``."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceConfig:
    """Settings every service has: identity, bus endpoints, clock, logging."""

    instance: str = doc("", "instance name on the bus (default: the service name)")
    log_level: str = choice("info", "debug", "info", "warning", "error", help="log level")
    log_format: str = choice("auto", "auto", "console", "json", help="console on a tty, else JSON")
    bus_pub: str = doc(DEFAULT_PUB, "broker XSUB endpoint that publishers connect to")
    bus_sub: str = doc(DEFAULT_SUB, "broker XPUB endpoint that subscribers connect to")
    bus_rpc: str = doc(DEFAULT_RPC, "broker ROUTER endpoint for requests")
    heartbeat_s: float = doc(1.0, "heartbeat interval towards the broker, s")
    clock_mode: str = choice("realtime", "realtime", "scaled", "stepped", help="simulation clock")
    clock_scale: float = doc(1.0, "simulated seconds per wall second in scaled mode")
    clock_start: float = doc(0.0, "simulation start, s since the Unix epoch (0: now)")
    clock_epoch: float = doc(
        0.0, "wall time at which the clock reads clock_start (0: at start; smtb up shares its own)"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Resolved:
    """A resolved configuration with the origin of every value."""

    values: dict[str, Any]
    sources: dict[str, str]


def load_config(
    cls: type[C],
    service: str,
    *,
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> C:
    """Build ``cls`` from defaults, file, environment and overrides."""
    resolved = resolve(cls, service, path=path, env=env, overrides=overrides)
    config = cls(**resolved.values)
    if not config.instance:
        config = dataclasses.replace(config, instance=service)
    return config


def resolve(
    cls: type[ServiceConfig],
    service: str,
    *,
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Resolved:
    """Merge the four layers; every value is checked against its field."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {name: _default(f) for name, f in fields.items()}
    sources = dict.fromkeys(fields, "default")
    layers: list[tuple[str, Mapping[str, Any], bool]] = []
    if path is not None:
        data = read_toml(path)
        for table in ("common", service):
            section = data.get(table, {})
            if not isinstance(section, dict):
                raise ConfigError(f"[{table}] in {path} must be a table", key=table)
            layers.append((f"{path}[{table}]", section, True))
    environ = os.environ if env is None else env
    for prefix in ("COMMON", _env_name(service)):
        found = {
            n: environ[f"SMTB_{prefix}_{n.upper()}"]
            for n in fields
            if f"SMTB_{prefix}_{n.upper()}" in environ
        }
        layers.append((f"SMTB_{prefix}_*", found, False))
    layers.append(("command line", dict(overrides or {}), True))
    for origin, layer, strict in layers:
        for key, raw in layer.items():
            if key not in fields:
                if strict:
                    raise ConfigError(f"unknown key (from {origin})", key=f"{service}.{key}")
                continue
            values[key] = _convert(raw, hints[key], fields[key], f"{service}.{key}", origin)
            sources[key] = origin
    return Resolved(values=values, sources=sources)


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file; a missing or broken file is a ConfigError."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} unreadable: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def parse_assignments(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Turn ``("key=value", ...)`` from ``--set`` into a dict."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r} is not KEY=VALUE", key=item)
        out[key.strip().replace("-", "_")] = value
    return out


def _env_name(service: str) -> str:
    return service.upper().replace("-", "_").replace(".", "_")


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _convert(raw: Any, hint: Any, f: dataclasses.Field[Any], key: str, origin: str) -> Any:
    try:
        value = _coerce(raw, hint)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{exc} (from {origin})", key=key) from exc
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{value!r} is not one of {', '.join(choices)} (from {origin})", key=key)
    return value


def _coerce(raw: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if raw is None or raw == "":
            return None
        return _coerce(raw, args[0])
    if origin in (tuple, list):
        (item,) = typing.get_args(hint)[:1]
        items = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(items, list | tuple):
            raise TypeError(f"expected a list, got {raw!r}")
        seq = [_coerce(x.strip() if isinstance(x, str) else x, item) for x in items if x != ""]
        return tuple(seq) if origin is tuple else seq
    if origin is dict:
        if not isinstance(raw, dict):
            raise TypeError(f"expected a table, got {raw!r}")
        return dict(raw)
    return _scalar(raw, hint)


def _scalar(raw: Any, hint: Any) -> Any:
    if hint is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in (
            "1",
            "true",
            "yes",
            "on",
            "0",
            "false",
            "no",
            "off",
        ):
            return raw.lower() in ("1", "true", "yes", "on")
        raise TypeError(f"expected true or false, got {raw!r}")
    if hint is int:
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise TypeError(f"expected an integer, got {raw!r}")
        return int(raw)
    if hint is float:
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise TypeError(f"expected a number, got {raw!r}")
        try:
            return float(raw)
        except ValueError:
            raise TypeError(f"expected a number, got {raw!r}") from None
    if hint is str:
        if not isinstance(raw, str):
            raise TypeError(f"expected a string, got {raw!r}")
        return raw
    if hint is Path:
        return Path(str(raw))
    raise TypeError(f"unsupported config type {hint!r}")


def describe(cls: type[ServiceConfig], resolved: Resolved) -> list[tuple[str, str, str, str]]:
    """Return (key, value, source, help) rows for ``show-config``."""
    rows = []
    for f in dataclasses.fields(cls):
        rows.append(
            (
                f.name,
                repr(resolved.values[f.name]),
                resolved.sources[f.name],
                str(f.metadata.get("help", "")),
            )
        )
    return rows


def parse_host_port(value: str, key: str) -> tuple[str, int]:
    """Split a ``HOST:PORT`` setting (port 0: any free port); ConfigError naming ``key``."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"must be HOST:PORT, got {value!r}", key=key)
    return host, int(port)
