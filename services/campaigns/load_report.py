"""Results of a load campaign: JSON, CSV, a rich table, a PNG plot and an HTML page.

``load.json``: ``{"seed", "points": [row, ...], "aloha_curve": [[G, e^-2G], ...],
"lost_total"}`` with the rows of :meth:`PointResult.to_row`; ``load.csv`` holds the same rows
(``reasons`` as JSON text). ``load.png`` plots the measured success fraction of each point
against the analytic pure-ALOHA curve e^(-2G), and ``load.html`` shows the plot (embedded as
base64) and the table, with no outside resources.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from rich.table import Table
from smtestbed.services.campaigns.load_run import PointResult

COLUMNS = (
    ("label", "point"),
    ("offered_load_g", "G"),
    ("offered", "offered"),
    ("delivered", "delivered"),
    ("collided", "collided"),
    ("corrupted", "corrupted"),
    ("accepted", "accepted"),
    ("rejected", "rejected"),
    ("lost", "lost"),
    ("success", "success"),
    ("aloha", "e^-2G"),
    ("farm_p50_ms", "farm p50/p99 ms"),
    ("channel_p50_ms", "channel p50/p99 ms"),
    ("gateway_p50_ms", "gateway p50/p99 ms"),
    ("end_to_end_p50_ms", "e2e p50/p99 ms"),
)


def aloha_curve(g_max: float, points: int = 60) -> list[list[float]]:
    """Return ``[G, e^(-2G)]`` pairs from 0 to ``g_max``."""
    return [[g, math.exp(-2.0 * g)] for g in (g_max * i / (points - 1) for i in range(points))]


def _cell(row: dict[str, Any], key: str) -> str:
    if key.endswith("_p50_ms"):
        return f"{row[key]:.2f}/{row[key.replace('p50', 'p99')]:.2f}"
    value = row[key]
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def table(rows: Sequence[dict[str, Any]]) -> Table:
    """Return the final table: one row per point."""
    out = Table(title="load campaign")
    for key, title in COLUMNS:
        out.add_column(title, justify="left" if key == "label" else "right")
    for row in rows:
        out.add_row(*(_cell(row, key) for key, _ in COLUMNS))
    return out


def document(results: Sequence[PointResult], seed: int) -> dict[str, Any]:
    """Return the JSON document of a campaign."""
    rows = [r.to_row() for r in results]
    g_max = max([1.0, *(r["offered_load_g"] * 1.1 for r in rows)])
    return {
        "seed": seed,
        "points": rows,
        "aloha_curve": aloha_curve(g_max),
        "lost_total": sum(r["lost"] for r in rows),
    }


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Write the rows as CSV, ``reasons`` as JSON text."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["label"])
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "reasons": json.dumps(row.get("reasons", {}))})


def plot_png(doc: dict[str, Any]) -> bytes:
    """Return the PNG of measured success against the ALOHA curve."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    curve = doc["aloha_curve"]
    ax.plot([g for g, _ in curve], [s for _, s in curve], "k-", label="pure ALOHA e^(-2G)")
    for name, marker, pick in (
        ("measured, no capture", "o", lambda r: not r["capture"]),
        ("measured, capture", "s", lambda r: r["capture"]),
    ):
        rows = [r for r in doc["points"] if pick(r)]
        if rows:
            xs, ys = [r["offered_load_g"] for r in rows], [r["success"] for r in rows]
            ax.plot(xs, ys, marker, linestyle="none", label=name)
    ax.set_xlabel("offered load G (Erlang)")
    ax.set_ylabel("success fraction (delivered / sent)")
    ax.set_ylim(0.0, 1.05)
    ax.grid(True, alpha=0.3)
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def html_page(doc: dict[str, Any], png: bytes) -> str:
    """Return a self-contained page: the plot (inline) and the table."""
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(r, k))}</td>" for k, _ in COLUMNS) + "</tr>"
        for r in doc["points"]
    )
    image = base64.b64encode(png).decode()
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>smtb load</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:right}"
        "table{border-collapse:collapse}tr:nth-child(even){background:#eee}</style></head>"
        f"<body><h1>Load campaign (seed {doc['seed']})</h1>"
        f"<p>Frames lost between stages: {doc['lost_total']}</p>"
        f"<img alt='success against pure ALOHA' src='data:image/png;base64,{image}'>"
        f"<table><tr>{head}</tr>{body}</table></body></html>\n"
    )


def write_all(results: Sequence[PointResult], seed: int, folder: Path) -> dict[str, Path]:
    """Write load.json, load.csv, load.png and load.html into ``folder``; return the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    doc = document(results, seed)
    paths = {ext: folder / f"load.{ext}" for ext in ("json", "csv", "png", "html")}
    paths["json"].write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    write_csv(doc["points"], paths["csv"])
    png = plot_png(doc)
    paths["png"].write_bytes(png)
    paths["html"].write_text(html_page(doc, png), encoding="utf-8")
    return paths
