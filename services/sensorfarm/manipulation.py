"""Manipulation of single meters through bus requests.

Each function validates the request's parameters (a bad one raises
:class:`RequestError` naming the field; nothing is changed then), applies
the change to the population and returns what the reply and the
``meter.manipulated`` event carry. A meter is named by its 8-digit
identification number (int or string), as printed on its label.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from smtestbed.services._runtime.errors import ConfigError, RequestError
from smtestbed.services.sensorfarm.farm import Farm
from smtestbed.services.sensorfarm.models import MAX_LOAD_FACTOR, LoadInputs
from smtestbed.services.sensorfarm.population import Population
from smtestbed.services.sensorfarm.schema import COUNTER_COLUMNS, VALUE_COLUMNS, MeterKind
from smtestbed.services.sensorfarm.telegrams import MAX_ABS_VALUE

MAX_INTERVAL_S = 7 * 86400.0


def _params(params: Any) -> dict[str, Any]:
    if not isinstance(params, dict):
        raise RequestError(f"parameters must be a map, got {type(params).__name__}", field="params")
    return params


def meter_index(pop: Population, params: Any) -> int:
    """Return the population index of the meter named by ``params["meter"]``."""
    raw = _params(params).get("meter")
    if isinstance(raw, str) and raw.isdigit() and len(raw) <= 8:
        raw = int(raw)
    if not isinstance(raw, int) or isinstance(raw, bool) or not 0 <= raw <= 99_999_999:
        raise RequestError(f"must be an 8-digit meter id, got {raw!r}", field="meter")
    try:
        return pop.index_of(raw)
    except ConfigError:
        raise RequestError(f"no meter {raw:08d} in this sensor farm", field="meter") from None


def describe(pop: Population, i: int) -> dict[str, Any]:
    """Return the state of meter ``i`` as a reply body."""
    kind = MeterKind(int(pop.kind[i]))
    columns = VALUE_COLUMNS[kind]
    return {
        "meter": f"{int(pop.ident[i]):08d}",
        "kind": kind.name.lower(),
        "values": {name: float(pop.values[i, c]) for c, name in enumerate(columns) if name},
        "interval_s": float(pop.interval_s[i]),
        "security": int(pop.security[i]),
        "stopped": bool(pop.stopped[i]),
        "corrupt_next": int(pop.corrupt_next[i]),
        "access_number": int(pop.access_number[i]),
        "next_tx": float(pop.next_tx[i]),
    }


def _column(pop: Population, i: int, params: dict[str, Any]) -> int:
    kind = MeterKind(int(pop.kind[i]))
    names = VALUE_COLUMNS[kind]
    name = params.get("column")
    if not isinstance(name, str) or name not in names or not name:
        valid = ", ".join(n for n in names if n)
        raise RequestError(
            f"{name!r} is not a value of a {kind.name.lower()} meter ({valid})", field="column"
        )
    return names.index(name)


def set_counter(pop: Population, params: Any) -> dict[str, Any]:
    """Set one value; a counter may go back only with ``allow_backwards``."""
    i = meter_index(pop, params)
    p = _params(params)
    column = _column(pop, i, p)
    value = p.get("value")
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise RequestError(f"must be a finite number, got {value!r}", field="value")
    if abs(value) > MAX_ABS_VALUE:  # the telegram builder refuses it: every window would fail
        raise RequestError(f"must be within +-{MAX_ABS_VALUE:g}, got {value!r}", field="value")
    backwards = p.get("allow_backwards", False)
    if not isinstance(backwards, bool):
        raise RequestError("must be true or false", field="allow_backwards")
    is_counter = column in COUNTER_COLUMNS[MeterKind(int(pop.kind[i]))]
    old = float(pop.values[i, column])
    if is_counter and value < old and not backwards:
        raise RequestError(
            f"{value} is below the counter's {old}; set allow_backwards", field="value"
        )
    if is_counter and value < 0:
        raise RequestError("a counter cannot be negative", field="value")
    pop.values[i, column] = float(value)
    return {**describe(pop, i), "changed": p["column"], "old": old}


def set_key(pop: Population, params: Any) -> dict[str, Any]:
    """Give the meter a new AES-128 key (32 hex digits)."""
    i = meter_index(pop, params)
    key = _params(params).get("key")
    try:
        raw = bytes.fromhex(key) if isinstance(key, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != 16:
        raise RequestError("must be 32 hex digits (an AES-128 key)", field="key")
    pop.key[i, :] = np.frombuffer(raw, dtype=np.uint8)
    return describe(pop, i)


def set_stopped(pop: Population, params: Any, *, stopped: bool) -> dict[str, Any]:
    """Stop or resume sending; the meter keeps counting meanwhile."""
    i = meter_index(pop, params)
    pop.stopped[i] = stopped
    return describe(pop, i)


def corrupt(pop: Population, params: Any) -> dict[str, Any]:
    """Corrupt the meter's next ``frames`` telegrams (last byte inverted: the last CRC fails)."""
    i = meter_index(pop, params)
    frames = _params(params).get("frames", 1)
    if not isinstance(frames, int) or isinstance(frames, bool) or not 1 <= frames <= 65535:
        raise RequestError(f"must be an integer 1..65535, got {frames!r}", field="frames")
    pop.corrupt_next[i] = frames
    return describe(pop, i)


def set_interval(pop: Population, params: Any) -> dict[str, Any]:
    """Change the sending interval (s); the next send keeps its time."""
    i = meter_index(pop, params)
    interval = _params(params).get("interval_s")
    if (
        not isinstance(interval, int | float)
        or isinstance(interval, bool)
        or not 1.0 <= interval <= MAX_INTERVAL_S
    ):
        raise RequestError(
            f"must be a number of seconds in 1..{MAX_INTERVAL_S:g}", field="interval_s"
        )
    pop.interval_s[i] = float(interval)
    return describe(pop, i)


def set_load(pop: Population, loads: LoadInputs, params: Any) -> dict[str, Any]:
    """Drive the meter's consumption-rate input: ``factor`` times its usual consumption."""
    i = meter_index(pop, params)
    factor = _params(params).get("factor")
    if (
        not isinstance(factor, int | float)
        or isinstance(factor, bool)
        or not math.isfinite(factor)
        or not 0 <= factor <= MAX_LOAD_FACTOR
    ):
        raise RequestError(
            f"must be a number 0..{MAX_LOAD_FACTOR:g}, got {factor!r}", field="factor"
        )
    old = loads.set(i, float(factor))
    return {**describe(pop, i), "load_factor": float(factor), "old": old}


MAX_REPLAYS = 16


def replay(farm: Farm, params: Any, now: float) -> dict[str, Any]:
    """Send the meter's last ``count`` telegrams again, byte-identical, from ``at`` (s) on.

    ``at`` defaults to ``now`` (the next window); an earlier time is refused, so is a
    meter none of whose telegrams the farm still keeps.
    """
    pop = farm.pop
    i = meter_index(pop, params)
    p = _params(params)
    count = p.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_REPLAYS:
        raise RequestError(f"must be an integer 1..{MAX_REPLAYS}, got {count!r}", field="count")
    at = p.get("at")
    if at is None:
        at = now
    if not isinstance(at, int | float) or isinstance(at, bool) or not math.isfinite(at):
        raise RequestError(f"must be a finite time in s, got {at!r}", field="at")
    if at < now:
        raise RequestError(f"{at} is before the farm's time {now}", field="at")
    telegrams = farm.recorder.last(i, count)
    if not telegrams:
        raise RequestError(
            f"no telegram of meter {int(pop.ident[i]):08d} among the last"
            f" {farm.recorder.windows} windows the farm keeps",
            field="meter",
        )
    queued = farm.replays.schedule(telegrams, float(at), float(farm.airtime[i]))
    frames = [
        {
            "t_sent": r.telegram.t_sent,
            "access_number": r.telegram.access_number,
            "at": r.due,
            "frame": r.telegram.frame.hex(),
        }
        for r in queued
    ]
    return {**describe(pop, i), "replays": frames}
