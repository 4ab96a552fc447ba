"""The gateway's bus API: management, readings, TAF data and logs as request handlers.

Every request names its instance in ``gateway`` (optional when the service
hosts one instance). Parameters are checked here; a bad one raises
:class:`RequestError` naming the field and changes nothing.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smtestbed.services._runtime.errors import ConfigError, RequestError
from smtestbed.services.gateway.instance import GatewayInstance
from smtestbed.services.gateway.logchain import LogError, read_entries, verify
from smtestbed.services.gateway.schema import MeterEntry, Reading
from smtestbed.services.gateway.unsafe import SkippedChecks


def params_map(params: Any) -> dict[str, Any]:
    """Return the parameters as a map, or raise naming ``params``."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise RequestError(f"must be a map, got {type(params).__name__}", field="params")
    return params


def pick(instances: Mapping[str, GatewayInstance], params: dict[str, Any]) -> GatewayInstance:
    """Return the instance named by ``params["gateway"]``."""
    name = params.get("gateway")
    if name is None and len(instances) == 1:
        return next(iter(instances.values()))
    if not isinstance(name, str) or name not in instances:
        raise RequestError(
            f"no gateway instance {name!r} here ({', '.join(instances)})", field="gateway"
        )
    return instances[name]


def text(params: dict[str, Any], field: str, default: str | None = None) -> str:
    """Return a string parameter."""
    value = params.get(field, default)
    if not isinstance(value, str):
        raise RequestError(f"must be a string, got {value!r}", field=field)
    return value


def entry_from(params: dict[str, Any]) -> MeterEntry:
    """Build a registry entry from request parameters (validated by the registry)."""
    key_hex = text(params, "key", "")
    try:
        key = bytes.fromhex(key_hex)
    except ValueError:
        raise RequestError("must be hex digits", field="key") from None
    security = params.get("security", 5)
    if not isinstance(security, int) or isinstance(security, bool):
        raise RequestError(f"must be 0, 5 or 7, got {security!r}", field="security")
    tafs = params.get("tafs", [])
    if not isinstance(tafs, list) or not all(isinstance(t, str) for t in tafs):
        raise RequestError("must be a list of TAF names", field="tafs")
    return MeterEntry(
        meter=text(params, "meter"),
        manufacturer=text(params, "manufacturer"),
        key=key,
        security=security,
        tafs=frozenset(tafs),
        consumer=text(params, "consumer", ""),
        emt=text(params, "emt", ""),
    )


def entry_map(entry: MeterEntry) -> dict[str, Any]:
    """Return a registry entry as a reply body (the key is not disclosed)."""
    return {
        "meter": entry.meter,
        "manufacturer": entry.manufacturer,
        "security": entry.security,
        "tafs": sorted(map(str, entry.tafs)),
        "consumer": entry.consumer,
        "emt": entry.emt,
    }


def reading_map(rid: int, reading: Reading) -> dict[str, Any]:
    """Return a stored reading as a reply body."""
    return {
        "id": rid,
        "meter": reading.meter,
        "t_sim": reading.t_sim,
        "access_number": reading.access_number,
        "message_counter": reading.message_counter,
        "values": [
            {
                "quantity": v.quantity,
                "unit": v.unit,
                "value": v.value,
                "storage_number": v.storage_number,
                "tariff": v.tariff,
                "subunit": v.subunit,
                "function": v.function,
            }
            for v in reading.values
        ],
    }


def number(params: dict[str, Any], field: str, default: float | None) -> float | None:
    """Return an optional number parameter."""
    value = params.get(field, default)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise RequestError(f"must be a number, got {value!r}", field=field)
    return float(value)


def count(params: dict[str, Any], field: str, default: int, high: int) -> int:
    """Return an integer parameter in 1..high."""
    value = params.get(field, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high:
        raise RequestError(f"must be an integer 1..{high}, got {value!r}", field=field)
    return value


def read_log(instance: GatewayInstance, params: dict[str, Any]) -> dict[str, Any]:
    """Return entries of one log (``system``, ``calibration`` or ``consumer-<id>``)."""
    name = text(params, "log", "system")
    logs = {log.log_name: log for log in instance.logs.logs()}
    if name not in logs:
        raise RequestError(f"no log {name!r} ({', '.join(sorted(logs))})", field="log")
    start = count(params, "from_seq", 1, 2**62) - 1 if "from_seq" in params else 0
    limit = count(params, "limit", 1000, 100_000)
    rows = [e.to_json() for e in read_entries(logs[name].path) if e.seq >= start]
    return {"log": name, "entries": rows[:limit], "public_key": instance.key.fingerprint}


def verify_log(
    instance: GatewayInstance, params: dict[str, Any], skipped: SkippedChecks
) -> dict[str, Any]:
    """Verify one log of the instance as ``smtb gateway verify-log`` does.

    ``log`` is ``system``, ``calibration`` or ``consumer`` (with ``consumer`` naming
    whose). Answers ``{"ok", "entries", "first_bad", "problem"}``; ``first_bad`` is the
    sequence number expected where the chain first breaks. With the ``log_chain`` check
    switched off (unsafe_skip_checks) a broken log is answered as intact.
    """
    kind = text(params, "log", "system")
    if kind not in ("system", "calibration", "consumer"):
        raise RequestError(f"must be system, calibration or consumer, got {kind!r}", field="log")
    name = kind
    if kind == "consumer":
        consumer = text(params, "consumer")
        if consumer not in instance.logs.consumer_ids():
            raise RequestError(f"no consumer log {consumer!r}", field="consumer")
        name = f"consumer-{consumer}"
    path = instance.logs.folder / f"{name}.jsonl"
    try:
        result = verify(path, instance.key.public_key)
    except LogError as exc:
        raise RequestError(f"cannot read log {name!r}: {exc}", field="log") from exc
    if not result.ok and skipped.skips("log_chain"):
        lines = sum(1 for line in path.read_bytes().splitlines() if line.strip())
        return {"ok": True, "entries": lines, "first_bad": None, "problem": None}
    return {
        "ok": result.ok,
        "entries": result.count,
        "first_bad": None if result.first_bad is None else result.first_bad.seq,
        "problem": None if result.problem is None else str(result.problem),
    }


REGISTRY_FIELDS = (
    "gateway",
    "meter",
    "manufacturer",
    "key_hex",
    "security",
    "tafs",
    "consumer",
    "emt",
)


def load_registry_file(path: Path) -> list[tuple[str, MeterEntry]]:
    """Read ``gateway,meter,manufacturer,key_hex,security,tafs,consumer,emt`` rows.

    ``tafs`` lists TAF names separated by ``;``. A bad row raises ConfigError
    naming its line and field.
    """
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", key="registry_file") from exc
    out = []
    for line, row in enumerate(rows, start=2):
        missing = [f for f in REGISTRY_FIELDS if row.get(f) is None]
        if missing:
            raise ConfigError(f"line {line} lacks {', '.join(missing)}", key="registry_file")
        try:
            entry = entry_from(
                {
                    "meter": row["meter"],
                    "manufacturer": row["manufacturer"],
                    "key": row["key_hex"],
                    "security": int(row["security"] or 0),
                    "tafs": [t for t in row["tafs"].split(";") if t],
                    "consumer": row["consumer"],
                    "emt": row["emt"],
                }
            )
        except (RequestError, ValueError) as exc:
            raise ConfigError(f"line {line}: {exc}", key="registry_file") from exc
        out.append((row["gateway"], entry))
    return out
