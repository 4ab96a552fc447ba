"""``smtb demo``: every scenario on this machine, with its negative control, and a report.

Each scenario (and then its control) starts a fresh testbed from its own state: broker,
sensor farm, channel, gateway and whatever else the state needs, as local processes on free
127.0.0.1 ports, with the settings built into the scenario; nothing outside this machine
is used. The report folder gets ``results.json``, ``junit.xml``, the events of every
scenario and ``report.html`` with the results table and the plots.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from smtestbed.services._runtime.commands import TestbedCommand
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.controller import scenarios
from smtestbed.services.controller.progress import run_with_progress
from smtestbed.services.controller.report import PAGE_FILE
from smtestbed.services.controller.report_data import RunResults, load_results
from smtestbed.services.controller.scenario import Scenario

DEFAULT_REPORT = Path("smtb-report")
DEFAULT_JOBS = 2  # measured on 2 cores: see the README's Demo section
# What a run writes into the report folder: cleared first, so nothing stale is reported.
RUN_OUTPUTS = ("results.json", "junit.xml", "report.html", "scenarios", "runs")


def choose(names: Sequence[str]) -> list[Scenario]:
    """Return the named scenarios (all of them when none is named), in registry order."""
    known = scenarios.discover()
    if not known:
        raise ConfigError("no scenarios are installed", key="scenario")
    for name in names:
        if name not in known:
            raise ConfigError(f"no scenario {name!r} ({', '.join(known)})", key="scenario")
    return [s for n, s in known.items() if not names or n in names]


def clear(report: Path) -> None:
    """Remove what an earlier run wrote into ``report`` (and nothing else)."""
    for name in RUN_OUTPUTS:
        path = report / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def table(results: RunResults) -> Table:
    """Return the results table: one row per scenario, failures in red."""
    out = Table(title=f"{results.testbed} {results.version}: scenarios")
    for column in ("scenario", "outcome", "control", "s", "checks"):
        out.add_column(column, justify="right" if column == "s" else "left", no_wrap=True)
    out.add_column("message", overflow="fold")
    for s in results.scenarios:
        colour = "green" if s.outcome == "passed" else "red"
        ccolour = "green" if s.control.ok else "red"
        passed = sum(c.ok for c in s.checks)
        message = s.message or (s.control.message if not s.control.ok else "")
        out.add_row(
            s.name,
            f"[{colour}]{s.outcome}[/]",
            f"[{ccolour}]{s.control.outcome}[/]",
            f"{s.duration_s:.1f}",
            f"{passed}/{len(s.checks)}",
            message.splitlines()[0][:100] if message else "",
        )
    return out


def verdict(results: RunResults) -> str:
    """Return the one-line summary of the run."""
    c = results.summary()
    return (
        f"{c['passed']} passed, {c['failed']} failed, {c['error']} error; controls: "
        f"{c['controls_ok']} failed as expected, {c['controls_bad']} passed or erred; "
        f"{results.duration_s:.0f} s"
    )


@click.command("demo", cls=TestbedCommand)
@click.option(
    "--report",
    type=click.Path(path_type=Path, file_okay=False),
    default=DEFAULT_REPORT,
    show_default=True,
    help="report folder (results.json, junit.xml, report.html, events)",
)
@click.option("--quick", is_flag=True, help="main runs only, no negative controls")
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=DEFAULT_JOBS,
    show_default=True,
    help="testbeds run at the same time (each run has its own folder and ports)",
)
@click.option(
    "--scenario",
    "names",
    multiple=True,
    metavar="NAME",
    help="run only this scenario (repeatable; default: all)",
)
def command(report: Path, quick: bool, jobs: int, names: tuple[str, ...]) -> None:
    """Run every scenario and its negative control; exit 1 if one failed or a control passed."""
    todo = choose(names)
    console = Console()
    report.mkdir(parents=True, exist_ok=True)
    clear(report)
    console.print(
        f"{len(todo)} scenarios{'' if quick else ' and their negative controls'}, "
        f"each on a fresh testbed on this machine, {jobs} at a time"
    )
    run_with_progress(todo, report, controls=not quick, jobs=jobs, console=console)
    results = load_results(report)
    page = report / PAGE_FILE
    console.print(table(results))
    console.print(verdict(results))
    console.print(f"report: {page.resolve()}")
    console.print(f"also: {report / 'results.json'}, {report / 'junit.xml'}")
    sys.exit(0 if results.ok else 1)
