"""Scenarios: a defined state, a run against it, and a negative control.

A :class:`Scenario` runs on a fresh testbed started for its ``state``. Its negative
control runs the same ``run`` on the state with ``control`` merged in (typically a
gateway ``unsafe_skip_checks`` entry that disables the very check the scenario
proves); the control MUST fail. A control that passes means the scenario detects
nothing, and is reported as a defect of the scenario.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smtestbed.services._runtime.errors import TestbedError
from smtestbed.services.controller.client import Check, Controller, ScenarioFailed
from smtestbed.services.controller.state import TestbedState
from smtestbed.services.controller.testbed import Testbed

Run = Callable[[Controller], Awaitable[None]]
PASSED, FAILED, ERROR = "passed", "failed", "error"


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """One scenario: name, description, initial state, run, control overrides."""

    name: str
    description: str
    state: TestbedState
    run: Run
    control: Mapping[str, Any] = field(default_factory=dict)

    def control_state(self) -> TestbedState:
        """Return the state of the negative control."""
        return self.state.with_overrides(self.control)

    def with_seed(self, seed: int | None) -> Scenario:
        """Return this scenario with another seed (None: unchanged)."""
        if seed is None:
            return self
        return Scenario(
            name=self.name,
            description=self.description,
            state=self.state.with_overrides({"seed": seed}),
            run=self.run,
            control=self.control,
        )


@dataclass(slots=True, kw_only=True)
class RunResult:
    """How one run of a scenario (main or control) went."""

    outcome: str
    duration_s: float
    message: str = ""
    checks: list[Check] = field(default_factory=list)
    folder: Path | None = None


def run_once(
    state: TestbedState,
    run: Run,
    folder: Path,
    *,
    events_file: Path | None = None,
    timeout_s: float = 300.0,
) -> RunResult:
    """Start a fresh testbed for ``state``, run ``run`` on it, stop it; never raises."""
    started = time.monotonic()
    testbed = Testbed(state, folder)
    ctl_box: list[Controller] = []
    try:
        testbed.start()
        asyncio.run(_drive(testbed, run, ctl_box, events_file, timeout_s))
        outcome, message = PASSED, ""
    except ScenarioFailed as exc:
        outcome, message = FAILED, str(exc)
    except (TestbedError, TimeoutError, OSError) as exc:
        outcome, message = ERROR, f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a bug in the scenario: reported, the runner goes on
        outcome, message = ERROR, "".join(traceback.format_exception(exc)).strip()
    finally:
        try:
            testbed.stop()
        except TestbedError as exc:
            outcome, message = ERROR, str(exc)
    checks = ctl_box[0].checks if ctl_box else []
    return RunResult(
        outcome=outcome,
        duration_s=round(time.monotonic() - started, 3),
        message=message,
        checks=checks,
        folder=folder,
    )


async def _drive(
    testbed: Testbed,
    run: Run,
    box: list[Controller],
    events_file: Path | None,
    timeout_s: float,
) -> None:
    async with testbed.controller() as ctl:
        box.append(ctl)
        try:
            await asyncio.wait_for(run(ctl), timeout_s)
        finally:
            if events_file is not None:
                ctl.ctx.events.write_jsonl(events_file)
