"""The in-process client scenarios use: operations, typed shortcuts and assertions.

``await ctl.call("meter_counter", meter=..., column=..., value=...)`` runs one operation
of the registry (the same code the bus and REST API run). The ``expect_*`` helpers
record a check and raise :class:`ScenarioFailed` with what was expected and what was
seen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from smtestbed.services._runtime.errors import TestbedError
from smtestbed.services.controller import ops as _ops  # registers the operations
from smtestbed.services.controller.events import matches
from smtestbed.services.controller.operations import REGISTRY, OpContext

if TYPE_CHECKING:
    from smtestbed.services.controller.testbed import Testbed

__all__ = ["Check", "Controller", "ScenarioFailed"]
_ = _ops


class ScenarioFailed(TestbedError):  # noqa: N818 - the name the scenario API promises
    """A scenario's expectation was not met; the message says what was expected and seen."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """One checked expectation of a scenario run."""

    what: str
    ok: bool
    detail: str = ""

    def to_map(self) -> dict[str, Any]:
        """Return the check as in ``results.json``."""
        return {"what": self.what, "ok": self.ok, "detail": self.detail}


@dataclass(slots=True)
class Controller:
    """Operations and assertions against one running testbed."""

    ctx: OpContext
    testbed: Testbed | None = None
    checks: list[Check] = field(default_factory=list)

    @property
    def meters(self) -> tuple[str, ...]:
        """Return the population's wireless meter ids (from the run folder)."""
        return self.testbed.layout.meters if self.testbed is not None else ()

    async def call(self, name: str, /, **params: Any) -> Any:
        """Run operation ``name`` with ``params``; its result."""
        return await REGISTRY.call(self.ctx, name, params)

    # -- shortcuts ---------------------------------------------------------------------

    def mark(self) -> int:
        """Return the event log's mark (events after it are new)."""
        return self.ctx.events.mark()

    async def advance(self, *, by: float | None = None, to: float | None = None) -> float:
        """Advance simulated time; return the new time, s."""
        result = await self.call("advance", by=by, to=to)
        return float(result["now"])

    async def meter(self, meter: str) -> dict[str, Any]:
        """Return a meter's state in the sensor farm."""
        result: dict[str, Any] = await self.call("meter", meter=meter)
        return result

    async def readings(self, meter: str, **params: Any) -> list[dict[str, Any]]:
        """Return a meter's readings stored by the gateway."""
        result: list[dict[str, Any]] = await self.call("readings", meter=meter, **params)
        return result

    async def log(self, log: str = "system", **params: Any) -> list[dict[str, Any]]:
        """Return the entries of a gateway log."""
        result = await self.call("read_log", log=log, **params)
        entries: list[dict[str, Any]] = result["entries"]
        return entries

    async def emt_queue(self, emt: str, **params: Any) -> list[dict[str, Any]]:
        """Return the TAF records queued for ``emt``."""
        result: list[dict[str, Any]] = await self.call("emt_queue", emt=emt, **params)
        return result

    def events(self, kind: str = "", since: int = 0) -> list[dict[str, Any]]:
        """Return logged events (of ``kind``) from ``since``."""
        return [e.to_map() for e in self.ctx.events.since(since, kind)]

    # -- assertions --------------------------------------------------------------------

    def check(self, what: str, ok: bool, detail: str = "") -> None:
        """Record a check; raise ScenarioFailed when it failed."""
        self.checks.append(Check(what=what, ok=ok, detail=detail))
        if not ok:
            raise ScenarioFailed(f"{what}: {detail}" if detail else what)

    def expect_equal(self, what: str, seen: Any, expected: Any) -> None:
        """Check ``seen == expected``."""
        self.check(what, seen == expected, f"expected {expected!r}, saw {seen!r}")

    def expect_close(self, what: str, seen: float, expected: float, tolerance: float) -> None:
        """Check ``|seen - expected| <= tolerance``."""
        ok = abs(seen - expected) <= tolerance
        self.check(what, ok, f"expected {expected!r} +- {tolerance:g}, saw {seen!r}")

    async def expect_event(
        self,
        kind: str,
        match: Mapping[str, Any] | None = None,
        *,
        since: int,
        timeout_s: float = 10.0,
        what: str = "",
    ) -> dict[str, Any]:
        """Wait for an event after ``since``; check it came; return it."""
        result = await self.call(
            "wait_event", kind=kind, match=dict(match or {}), since=since, timeout_s=timeout_s
        )
        label = what or f"event {kind} {dict(match or {})}"
        found = result["event"]
        detail = f"event {found['index']} at t={found['t_sim']}" if found else "none"
        self.check(label, bool(found), f"{detail} within {timeout_s:g} s")
        event: dict[str, Any] = result["event"]
        return event

    def expect_no_event(
        self, kind: str, match: Mapping[str, Any] | None = None, *, since: int, what: str = ""
    ) -> None:
        """Check that no logged event after ``since`` matches."""
        seen = [e for e in self.ctx.events.since(since, kind) if matches(e, kind, match or {})]
        label = what or f"no event {kind} {dict(match or {})}"
        detail = f"saw {len(seen)}, first: {seen[0].to_map()}" if seen else "none seen"
        self.check(label, not seen, detail)
