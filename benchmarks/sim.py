"""Simulation-plane benchmarks: sensor farm and channel kernels in one table.

Run: ``.venv/bin/python benchmarks/sim.py [--scale X]``.

Each part lives in its own module (``sim_population``, ``sim_telegrams``,
``sim_channel``, ``sim_speedup``) with ``run(scale) -> rows``; every row
carries the kernel's rate next to its pure-Python reference and, where one
exists, a plain numpy version, all measured in the same run.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

PARTS = ("sim_population", "sim_telegrams", "sim_channel", "sim_speedup")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3g}" if value < 100 else f"{value:,.0f}"
    return str(value)


def _ratio(rate: Any, base: Any) -> str:
    if not isinstance(rate, int | float) or not isinstance(base, int | float) or not base:
        return "-"
    return f"{rate / base:,.1f}x"


def main(argv: list[str] | None = None) -> int:
    """Run every part that is present and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="problem size factor")
    parser.add_argument("--only", action="append", default=[], help="run only this part")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    rows: list[dict[str, Any]] = []
    for part in args.only or PARTS:
        try:
            module = importlib.import_module(part)
        except ModuleNotFoundError as exc:
            if exc.name == part:
                print(f"({part} not present)", file=sys.stderr)
                continue
            raise
        rows.extend(module.run(args.scale))
    print_table(rows)
    return 0


def print_table(rows: list[dict[str, Any]]) -> None:
    """Print the rows with ratios against the reference and numpy."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="simulation plane (same run; reference = pure Python)")
    for col in ("case", "unit", "rate", "reference", "vs ref", "numpy", "vs numpy", "target"):
        table.add_column(col, justify="left" if col in ("case", "unit", "target") else "right")
    for r in rows:
        table.add_row(
            str(r["case"]),
            str(r["unit"]),
            _fmt(r["rate"]),
            _fmt(r.get("reference")),
            _ratio(r["rate"], r.get("reference")),
            _fmt(r.get("numpy")),
            _ratio(r["rate"], r.get("numpy")),
            str(r.get("target", "")),
        )
    Console(width=160).print(table)


if __name__ == "__main__":
    sys.exit(main())
