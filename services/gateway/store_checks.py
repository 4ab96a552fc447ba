"""What the gateway store accepts: type and range checks of readings and queue records.

Readings of exactly the usual types pass one fast check; anything else goes
through the per-field rules, which name the first field at fault, so bad
input is refused before a transaction starts and never reaches the file.
"""

from __future__ import annotations

import json
from typing import Any

from smtestbed.services._runtime.errors import RequestError
from smtestbed.services.gateway.schema import Reading, Taf, Value

MAX_INT = 2**63 - 1
TEXT = object()  # rule: a non-empty string
_INF = float("inf")
_READING_RULES = (
    ("meter", TEXT),
    ("t_sim", float),
    ("access_number", 0xFF),
    ("message_counter", 0xFFFF_FFFF),
)
_VALUE_RULES = (
    ("quantity", TEXT),
    ("unit", str),
    ("function", TEXT),
    ("value", float),
    ("storage_number", MAX_INT),
    ("tariff", MAX_INT),
    ("subunit", MAX_INT),
)


def reading_row(reading: Any, index: int) -> tuple[Any, ...]:
    """Check one reading's types and ranges; return its row without id.

    Raises:
        RequestError: naming the field, e.g. ``readings[3].values[1].value``.
    """
    r = reading
    if _plain(r):
        return (r.meter, r.t_sim, r.access_number, r.message_counter, r.frame_digest)
    where = f"readings[{index}]"
    check(r, Reading, where)
    row = tuple(check(getattr(r, name), rule, f"{where}.{name}") for name, rule in _READING_RULES)
    digest = r.frame_digest
    if not isinstance(digest, bytes) or len(digest) != 32:
        raise RequestError("must be 32 bytes (SHA-256)", field=f"{where}.frame_digest")
    check(r.values, tuple, f"{where}.values")
    for k, value in enumerate(r.values):
        check(value, Value, f"{where}.values[{k}]")
        for name, rule in _VALUE_RULES:
            check(getattr(value, name), rule, f"{where}.values[{k}].{name}")
    return (*row, bytes(digest))


def processed_row(reading: Reading, index: int) -> tuple[Any, ...]:
    """Return the row of a reading that measurement processing built, without id.

    Processing builds the meter ID, access number, message counter, digest and values
    itself, with the usual types and ranges (values through the record layouts, finite by
    its plausibility check); only the time stamp came from its caller, so only that is
    checked here. A reading that is not of that kind goes through :func:`reading_row`.

    Raises:
        RequestError: from :func:`reading_row`.
    """
    t = reading.t_sim
    if type(reading) is Reading and type(t) is float and -_INF < t < _INF:
        return (
            reading.meter,
            t,
            reading.access_number,
            reading.message_counter,
            reading.frame_digest,
        )
    return reading_row(reading, index)


def _plain(r: Any) -> bool:
    """Return True for a reading of exactly the usual types within range (the fast path)."""
    return (
        type(r) is Reading
        and type(r.meter) is str
        and r.meter != ""
        and type(r.t_sim) is float
        and -_INF < r.t_sim < _INF
        and type(r.access_number) is int
        and 0 <= r.access_number <= 0xFF
        and type(r.message_counter) is int
        and 0 <= r.message_counter <= 0xFFFF_FFFF
        and type(r.frame_digest) is bytes
        and len(r.frame_digest) == 32
        and type(r.values) is tuple
        and all(map(_plain_value, r.values))
    )


def _plain_value(v: Any) -> bool:
    return (
        type(v) is Value
        and type(v.quantity) is str
        and type(v.unit) is str
        and type(v.function) is str
        and v.quantity != ""
        and v.function != ""
        and type(v.value) is float
        and -_INF < v.value < _INF
        and type(v.storage_number) is int
        and type(v.tariff) is int
        and type(v.subunit) is int
        and 0 <= v.storage_number <= MAX_INT
        and 0 <= v.tariff <= MAX_INT
        and 0 <= v.subunit <= MAX_INT
    )


def check(value: Any, rule: Any, field: str) -> Any:
    """Return ``value`` (numbers as float) if it keeps ``rule``, else raise RequestError.

    Rules: a class (isinstance), ``TEXT`` (non-empty str), ``str``, ``float``
    (finite int or float), or an int (an integer in 0..rule).
    """
    if isinstance(rule, int) and not isinstance(rule, bool):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= rule:
            raise RequestError(f"must be an integer in 0..{rule}, got {value!r}", field=field)
    elif rule is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RequestError(f"must be a number, got {type(value).__name__}", field=field)
        if not -_INF < float(value) < _INF:
            raise RequestError(f"must be finite, got {value!r}", field=field)
        return float(value)
    elif rule is TEXT:
        if not isinstance(value, str) or not value:
            raise RequestError(f"must be a non-empty string, got {value!r}", field=field)
    elif not isinstance(value, rule):
        raise RequestError(f"expected {rule.__name__}, got {type(value).__name__}", field=field)
    return value


def queue_row(emt: Any, taf: Any, meter: Any, payload: Any, created: Any) -> tuple[Any, ...]:
    """Check an EMT queue record; return its row (payload as JSON text, created in s).

    Raises:
        RequestError: naming the field at fault.
    """
    try:
        text = json.dumps(payload, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise RequestError(f"not JSON-serialisable: {exc}", field="payload") from exc
    try:
        taf_value = Taf(taf).value
    except ValueError as exc:
        raise RequestError(f"unknown tariff use case {taf!r}", field="taf") from exc
    emt, meter = check(emt, TEXT, "emt"), check(meter, TEXT, "meter")
    return (emt, taf_value, meter, text, check(created, float, "created"))
