"""``smtb load``: sweep meters, interval, mode and channel settings; table, files, plots."""

from __future__ import annotations

import itertools
import shutil
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import Progress
from smtestbed.services._runtime.commands import TestbedCommand
from smtestbed.services.campaigns.load_report import table, write_all
from smtestbed.services.campaigns.load_run import Point, PointResult, run_point

WARM_UP = Point(meters=20, interval_s=10.0, duration_s=20.0)
"""Run first and not reported: compiles and loads the kernels, so no point pays for it."""


def quick_points() -> list[Point]:
    """Return the CI sweep: T1 ALOHA from light to heavy load, capture, C1, noise."""
    base = [
        Point(meters=n, interval_s=10.0, duration_s=120.0, window_s=5.0)
        for n in (50, 200, 500, 1000, 2000)
    ]
    return [
        *base,
        Point(meters=1000, interval_s=10.0, capture=True, duration_s=120.0, window_s=5.0),
        Point(meters=500, interval_s=10.0, mode="c1", duration_s=120.0, window_s=5.0),
        Point(meters=500, interval_s=10.0, noise=True, duration_s=120.0, window_s=5.0),
    ]


def full_points() -> list[Point]:
    """Return the full sweep: meters x interval x mode x capture."""
    return [
        Point(meters=n, interval_s=i, mode=m, capture=c, duration_s=600.0, window_s=10.0)
        for n, i, m, c in itertools.product(
            (100, 500, 1000, 2000, 4000), (15.0, 60.0), ("t1", "c1", "s1"), (False, True)
        )
    ]


def run_sweep(points: list[Point], *, seed: int, out: Path, console: Console) -> list[PointResult]:
    """Run every point with a progress bar; the stores live under ``out/stores``."""
    stores = out / "stores"
    shutil.rmtree(stores, ignore_errors=True)
    run_point(WARM_UP, seed=seed, folder=stores / "warm-up")
    results = []
    with Progress(console=console, transient=False) as progress:
        task = progress.add_task("load points", total=len(points))
        for point in points:
            progress.update(task, description=point.label())
            results.append(run_point(point, seed=seed, folder=stores / point.label()))
            progress.advance(task)
    return results


@click.command("load", cls=TestbedCommand)
@click.option("--quick", is_flag=True, help="the short CI sweep (well under a minute)")
@click.option("--seed", type=click.IntRange(min=0), default=1, show_default=True)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("smtb-load"),
    show_default=True,
    help="folder of load.json, load.csv, load.png, load.html and the gateway stores",
)
def command(quick: bool, seed: int, out: Path) -> None:
    """Run a load campaign; exit 0 when no delivered frame was lost between stages, else 2."""
    console = Console()
    points = quick_points() if quick else full_points()
    results = run_sweep(points, seed=seed, out=out, console=console)
    paths = write_all(results, seed, out)
    console.print(table([r.to_row() for r in results]))
    for kind, path in paths.items():
        console.print(f"{kind}: {path}")
    lost = sum(r.tally.lost for r in results)
    sys.exit(0 if lost == 0 else 2)
