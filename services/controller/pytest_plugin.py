"""pytest plugin (entry point ``smtb``): testbeds and scenarios as fixtures.

The suite runs without pytest-asyncio: fixtures are synchronous, and tests drive
the asynchronous controller with ``asyncio.run``::

    def test_something(smtb_testbed):
        testbed = smtb_testbed({"population": {"count": 3}})   # started, state confirmed

        async def body() -> None:
            async with testbed.controller() as ctl:
                await ctl.advance(by=600)

        asyncio.run(body())

``smtb_scenario(name, control=False)`` runs a registered scenario on a fresh testbed
and returns its :class:`ScenarioOutcome`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from smtestbed.services.controller import scenarios
from smtestbed.services.controller.scenario import FAILED, PASSED, RunResult, run_once
from smtestbed.services.controller.state import TestbedState, load_state, state_from_dict
from smtestbed.services.controller.testbed import Testbed, stop_quietly

StateLike = TestbedState | Mapping[str, Any] | Path


@dataclass(frozen=True, slots=True)
class ScenarioOutcome:
    """A scenario run's result with assertions that show its message and checks."""

    name: str
    control: bool
    result: RunResult

    def _explain(self) -> str:
        checks = "\n".join(
            f"  {'ok ' if c.ok else 'BAD'} {c.what}: {c.detail}" for c in self.result.checks
        )
        label = f"{self.name} [control]" if self.control else self.name
        return f"{label}: {self.result.outcome}: {self.result.message}\n{checks}"

    def expect_passed(self) -> None:
        """Fail the test unless the run passed."""
        assert self.result.outcome == PASSED, self._explain()

    def expect_failed(self) -> None:
        """Fail the test unless the run failed (a control detecting what it must)."""
        assert self.result.outcome == FAILED, self._explain()


def as_state(state: StateLike) -> TestbedState:
    """Accept a TestbedState, a dict or a TOML file path."""
    if isinstance(state, TestbedState):
        return state
    if isinstance(state, Path):
        return load_state(state)
    return state_from_dict(state)


def run_scenario(name: str, folder: Path, *, control: bool = False) -> ScenarioOutcome:
    """Run scenario ``name`` (or its negative control) on a fresh testbed in ``folder``."""
    scenario = scenarios.get(name)
    state = scenario.control_state() if control else scenario.state
    result = run_once(state, scenario.run, folder, events_file=folder / "events.jsonl")
    return ScenarioOutcome(name=name, control=control, result=result)


@pytest.fixture
def smtb_testbed(tmp_path: Path) -> Iterator[Callable[..., Testbed]]:
    """Start testbeds for states (dict, TestbedState or TOML path); stop them afterwards."""
    started: list[Testbed] = []

    def start(state: StateLike, *, controller_service: bool = False) -> Testbed:
        testbed = Testbed(
            as_state(state), tmp_path / f"run{len(started)}", controller_service=controller_service
        )
        started.append(testbed)
        testbed.start()
        return testbed

    yield start
    for testbed in started:
        stop_quietly(testbed)


@pytest.fixture
def smtb_scenario(tmp_path: Path) -> Callable[..., ScenarioOutcome]:
    """Return ``run(name, control=False)`` running a registered scenario."""

    def run(name: str, *, control: bool = False) -> ScenarioOutcome:
        folder = tmp_path / (f"{name}-control" if control else name)
        return run_scenario(name, folder, control=control)

    return run
