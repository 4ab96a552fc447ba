"""``smtb fuzz TARGET``: a bounded fuzz campaign with a JSON report and a table."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from smtestbed.services._runtime.commands import TestbedCommand
from smtestbed.services.campaigns import atheris_engine
from smtestbed.services.campaigns.ca_http import fuzz_ca_http
from smtestbed.services.campaigns.fuzz_report import FuzzReport, print_report
from smtestbed.services.campaigns.gateway_lmn import WIRE_SHARE, fuzz_gateway
from smtestbed.services.campaigns.gwa import fuzz_gwa
from smtestbed.services.campaigns.mbus_master import fuzz_mbus_master
from smtestbed.services.campaigns.mutation_engine import Budget, fuzz_in_process
from smtestbed.services.campaigns.targets import ALL_TARGETS

QUICK_SECONDS = {"gateway-lmn": 5.0}
QUICK_DEFAULT_S = 2.0
FULL_SECONDS = 60.0


def run_campaign(target: str, budget: Budget, *, seed: int, out: Path, engine: str) -> FuzzReport:
    """Run one campaign with the engine asked for (``auto``: atheris where it imports)."""
    if target == "gateway-lmn":
        return fuzz_gateway(budget, seed=seed, out=out, wire_share=WIRE_SHARE)
    if target == "ca-http":
        return fuzz_ca_http(budget, seed=seed, out=out)
    if target == "gwa":
        return fuzz_gwa(budget, seed=seed, out=out)
    if target == "mbus-master":
        return fuzz_mbus_master(budget, seed=seed, out=out)
    if engine == "atheris" or (engine == "auto" and atheris_engine.available()):
        return atheris_engine.fuzz_with_atheris(target, budget, seed=seed, out=out)
    return fuzz_in_process(target, budget, seed=seed, out=out)


@click.command("fuzz", cls=TestbedCommand)
@click.argument("target", type=click.Choice(ALL_TARGETS))
@click.option("--quick", is_flag=True, help="a short campaign (seconds) for CI")
@click.option("--seconds", type=click.FloatRange(min=0.1), default=None, help="time budget, s")
@click.option("--runs", type=click.IntRange(min=1), default=None, help="at most this many inputs")
@click.option("--seed", type=click.IntRange(min=0), default=1, show_default=True)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("smtb-fuzz"),
    show_default=True,
    help="folder of the report, saved crash inputs and corpora",
)
@click.option(
    "--engine",
    type=click.Choice(["auto", "atheris", "mutator"]),
    default="auto",
    show_default=True,
    help="coverage-guided atheris or the seeded mutator (service targets: always the mutator)",
)
@click.option("--per-input", type=click.FloatRange(min=0.01), default=1.0, show_default=True)
def command(
    target: str,
    quick: bool,
    seconds: float | None,
    runs: int | None,
    seed: int,
    out: Path,
    engine: str,
    per_input: float,
) -> None:
    """Fuzz TARGET; exit 0 when no crash or hang was found, 2 otherwise."""
    if seconds is None:
        seconds = QUICK_SECONDS.get(target, QUICK_DEFAULT_S) if quick else FULL_SECONDS
    budget = Budget(seconds=seconds, runs=runs, per_input_s=per_input)
    report = run_campaign(target, budget, seed=seed, out=out, engine=engine)
    path = report.write(out)
    console = Console()
    print_report(report, console)
    console.print(f"report: {path}")
    sys.exit(0 if report.ok else 2)
