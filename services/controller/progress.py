"""A scenario suite on the terminal: one bar over every run, one row per run in progress.

Shared by ``smtb scenario run`` and ``smtb demo``. With several jobs, runs overlap:
the top bar counts finished runs (main runs and controls), each run in progress has
its own row with its elapsed time, and a line is printed as each scenario ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from smtestbed.services.controller.runner import Run, ScenarioResult, plan, run_all
from smtestbed.services.controller.scenario import RunResult, Scenario

COLUMNS = (
    TextColumn("{task.description:40}"),
    BarColumn(),
    TextColumn("{task.fields[count]:>7}"),
    TimeElapsedColumn(),
)


class SuiteProgress:
    """A runner listener drawing the suite's progress on a rich Progress."""

    def __init__(self, bar: Progress, total: int) -> None:
        self.bar = bar
        self.total = total
        self.finished_runs = 0
        self.overall = bar.add_task("runs", total=total, count=self._count())
        self.rows: dict[str, TaskID] = {}

    def _count(self) -> str:
        return f"{self.finished_runs}/{self.total}"

    def started(self, run: Run) -> None:
        """Add a row for the run."""
        self.rows[run.label] = self.bar.add_task(f"  {run.label}", total=None, count="")

    def finished(self, run: Run, result: RunResult) -> None:
        """Drop the run's row; count it on the top bar."""
        row = self.rows.pop(run.label, None)
        if row is not None:
            self.bar.remove_task(row)
        self.finished_runs += 1
        self.bar.update(self.overall, completed=self.finished_runs, count=self._count())

    def done(self, result: ScenarioResult) -> None:
        """Print the scenario's verdict above the bars."""
        mark = "[green]ok[/]" if result.ok else "[red]FAILED[/]"
        self.bar.console.print(f"{mark} {result.scenario.name} ({result.main.duration_s:.1f} s)")


def run_with_progress(
    todo: Sequence[Scenario], report: Path, *, controls: bool, jobs: int, console: Console
) -> list[ScenarioResult]:
    """Run the scenarios ``jobs`` at a time with the progress display; write the report."""
    total = len(plan(todo, controls=controls))
    with Progress(*COLUMNS, console=console) as bar:
        return run_all(
            todo, report, controls=controls, jobs=jobs, listener=SuiteProgress(bar, total)
        )
