"""How far a gateway service has come in simulated time, for ``gateway.sync``.

In a stepped simulation the controller advances the sensor farm and then asks each
gateway service to sync: ``{"until": t_sim, "timeout_s": s}`` is answered once the
gateway has ingested and committed every received batch up to ``until`` (its followed
clock reached ``until``; empty windows move it too) and every tariff run due by
``until`` has finished. The wait is an ``await`` on :class:`StepTracker`, so the
service's other requests are served meanwhile; past ``timeout_s`` wall seconds the
request fails with :class:`SyncTimeoutError` saying how far the gateway got.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from smtestbed.services._runtime.errors import RequestError

DEFAULT_TIMEOUT_S = 10.0
MAX_TIMEOUT_S = 3600.0


class SyncTimeoutError(RequestError):
    """The gateway did not reach the requested simulation time within the timeout."""


def sync_params(params: dict[str, Any]) -> tuple[float, float]:
    """Return ``until`` (t_sim, s) and ``timeout_s`` (wall s) of a ``gateway.sync`` request.

    Raises:
        RequestError: naming the field: an unknown field, a missing or non-finite
            ``until``, a ``timeout_s`` outside (0, MAX_TIMEOUT_S].
    """
    for key in params:
        if key not in ("until", "timeout_s"):
            raise RequestError("unknown field (allowed: until, timeout_s)", field=str(key))
    until = params.get("until")
    if isinstance(until, bool) or not isinstance(until, int | float) or not math.isfinite(until):
        raise RequestError(f"must be a finite simulation time, s; got {until!r}", field="until")
    timeout = params.get("timeout_s", DEFAULT_TIMEOUT_S)
    ok = isinstance(timeout, int | float) and not isinstance(timeout, bool)
    if not ok or not 0 < timeout <= MAX_TIMEOUT_S:
        raise RequestError(
            f"must be a number of s in (0, {MAX_TIMEOUT_S:g}], got {timeout!r}", field="timeout_s"
        )
    return float(until), float(timeout)


def next_due(due: float, now: float, every_s: float) -> float:
    """Return the first tariff time on the grid ``due + k * every_s`` that lies after ``now``."""
    if now < due:
        return due
    return due + every_s * (math.floor((now - due) / every_s) + 1)


class StepTracker:
    """The simulation time ingested and the next tariff run due, with waiters on both."""

    def __init__(self, start: float, tariffs_due: float) -> None:
        self.ingested = start
        self.tariffs_due = tariffs_due
        self._changed = asyncio.Event()

    def ingested_to(self, t_sim: float) -> None:
        """Record that every batch up to ``t_sim`` is committed."""
        if t_sim > self.ingested:
            self.ingested = t_sim
            self._notify()

    def tariffs_ran(self, next_due: float) -> None:
        """Record that the tariff runs due before ``next_due`` have finished."""
        self.tariffs_due = next_due
        self._notify()

    def reached(self, until: float) -> bool:
        """Return True when batches and tariff runs up to ``until`` are done."""
        return self.ingested >= until and self.tariffs_due > until

    async def wait(self, until: float, timeout_s: float) -> None:
        """Return once :meth:`reached` holds; SyncTimeoutError after ``timeout_s`` wall s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self.reached(until):
            left = deadline - loop.time()
            changed = self._changed
            try:
                if left <= 0:
                    raise TimeoutError
                await asyncio.wait_for(changed.wait(), left)
            except TimeoutError:
                raise SyncTimeoutError(
                    f"not reached within {timeout_s:g} s: batches ingested up to"
                    f" {self.ingested!r}, next tariff run due at {self.tariffs_due!r},"
                    f" requested {until!r}",
                    field="until",
                ) from None

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
