"""Controller-driven time of the sensor farm: the parameters of ``sensorfarm.advance``.

With ``clock_mode = "stepped"`` and ``step_control = "request"`` the farm stands still
until a controller asks it to advance. A request ``{"to": t_sim}`` (s since the Unix epoch)
or ``{"by": seconds}`` names the end of the span; the span is cut into windows of
``window_s`` from the farm's current time, the last one shorter when the span is not a
whole number of windows, so that it ends exactly at ``to``.
"""

from __future__ import annotations

import math
from typing import Any

from smtestbed.services._runtime.errors import RequestError

# A bound on one request's loop: a day of 1 s windows is 86,400 of them.
MAX_WINDOWS = 1_000_000
FIELDS = ("to", "by")


def parse_advance(params: Any) -> tuple[str, float]:
    """Return the field given (``to`` or ``by``) and its value (s).

    Raises:
        RequestError: naming ``params``, ``to`` or ``by``: not a map, an unknown field,
            neither or both of the two, a value that is not a finite number, a negative ``by``.
    """
    if not isinstance(params, dict):
        raise RequestError(f"must be a map with 'to' or 'by', got {params!r}", field="params")
    unknown = sorted(str(k) for k in params if k not in FIELDS)
    if unknown:
        raise RequestError("unknown field (allowed: to, by)", field=unknown[0])
    given = [k for k in FIELDS if k in params]
    if len(given) != 1:
        raise RequestError("give exactly one of 'to' (t_sim, s) and 'by' (s)", field="to")
    name = given[0]
    value = params[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RequestError(f"must be a finite number of s, got {value!r}", field=name)
    if name == "by" and value < 0:
        raise RequestError(f"must be >= 0 s, got {value!r}", field="by")
    return name, float(value)


def target(name: str, value: float, now: float) -> float:
    """Return the simulation time (s) that ``to``/``by`` = ``value`` asks for at ``now``.

    Raises:
        RequestError: naming ``to`` when it lies before ``now``, or ``by`` when the sum
            is not finite.
    """
    if name == "by":
        if not math.isfinite(now + value):
            raise RequestError(f"{value!r} s after {now!r} is not a finite time", field="by")
        return now + value
    if value < now:
        raise RequestError(f"{value!r} is before the farm's time {now!r}", field="to")
    return value


def window_ends(now: float, to: float, window_s: float, *, field: str = "to") -> list[float]:
    """Return the end of each window from ``now`` to ``to``: ``now + k * window_s``, then ``to``.

    A remainder shorter than a millionth of a window is merged into the window before,
    so that rounding in ``to`` never produces a window of almost no time.

    Raises:
        RequestError: naming ``field`` when the span needs more than MAX_WINDOWS windows.
    """
    span = to - now
    if span <= 0:
        return []
    whole = math.floor(span / window_s)
    if whole + 1 > MAX_WINDOWS:
        raise RequestError(
            f"would run {whole + 1} windows of {window_s:g} s; at most {MAX_WINDOWS} per request",
            field=field,
        )
    ends = [now + k * window_s for k in range(1, whole + 1)]
    if ends and to - ends[-1] < 1e-6 * window_s:
        ends[-1] = to
    else:
        ends.append(to)
    return ends
