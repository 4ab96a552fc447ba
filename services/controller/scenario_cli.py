"""``smtb scenario list`` and ``smtb scenario run NAME... | --all``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from smtestbed.services._runtime.commands import TestbedGroup
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.controller import scenarios
from smtestbed.services.controller.progress import run_with_progress
from smtestbed.services.controller.runner import ScenarioResult, summary

DEFAULT_REPORT = Path("smtb-report")


@click.group(cls=TestbedGroup)
def group() -> None:
    """Run the testbed's scenarios (fresh testbed per run, negative controls, reports)."""


@group.command("list")
def list_command() -> None:
    """List the scenarios with their descriptions."""
    for name, scenario in scenarios.discover().items():
        click.echo(f"{name:28} {scenario.description}")


@group.command("run")
@click.argument("names", nargs=-1)
@click.option("--all", "run_every", is_flag=True, help="run every scenario")
@click.option(
    "--report",
    type=click.Path(path_type=Path),
    default=DEFAULT_REPORT,
    show_default=True,
    help="report folder (results.json, junit.xml, report.html, events)",
)
@click.option("--no-controls", is_flag=True, help="skip the negative controls")
@click.option("--seed", type=int, default=None, help="run with this seed instead")
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="testbeds run at the same time (each run has its own folder and ports)",
)
def run(
    names: tuple[str, ...],
    run_every: bool,
    report: Path,
    no_controls: bool,
    seed: int | None,
    jobs: int,
) -> None:
    """Run scenarios NAME... (or --all); exit 1 if one failed or a control passed."""
    known = scenarios.discover()
    if run_every == bool(names):
        raise ConfigError("name scenarios or give --all (not both)", key="names")
    chosen = list(known) if run_every else list(names)
    for name in chosen:
        if name not in known:
            raise ConfigError(f"no scenario {name!r} ({', '.join(known)})", key="names")
    todo = [known[n].with_seed(seed) for n in chosen]
    console = Console(stderr=True)
    results = run_with_progress(todo, report, controls=not no_controls, jobs=jobs, console=console)
    Console().print(_table(results))
    counts = summary(results)
    click.echo(f"report: {report}/report.html, {report}/results.json, {report}/junit.xml")
    sys.exit(0 if all(r.ok for r in results) and counts["controls_bad"] == 0 else 1)


def _table(results: list[ScenarioResult]) -> Table:
    table = Table(title="scenarios")
    for column in ("scenario", "outcome", "s", "control", "message"):
        table.add_column(column)
    for r in results:
        colour = "green" if r.main.outcome == "passed" else "red"
        control = r.control_outcome
        ccolour = "green" if control in ("failed-as-expected", "not-run") else "red"
        message = r.main.message or (
            r.to_map()["control"]["message"] if control != "failed-as-expected" else ""
        )
        table.add_row(
            r.scenario.name,
            f"[{colour}]{r.main.outcome}[/]",
            f"{r.main.duration_s:.1f}",
            f"[{ccolour}]{control}[/]",
            message.splitlines()[0][:100] if message else "",
        )
    return table
