"""The HTML page of a scenario run: ``report.html`` in the runner's report folder.

:func:`write_html_report` reads ``results.json`` and each scenario's events file (see
:mod:`report_data`) and writes one self-contained page: inline CSS, the figures as base64
PNG, no script and nothing fetched from anywhere. It shows the summary (counts, duration,
version), the results table (a failed or erroring scenario and a control that passed or
erred are marked as failures), a figure of every scenario's totals, and per scenario the
channel load, the collisions and the gateway throughput over simulated time, or "no
events recorded".
"""

from __future__ import annotations

import base64
import html
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from smtestbed.services.controller import report_plots
from smtestbed.services.controller.report_data import (
    RecordedEvent,
    ReportError,
    RunResults,
    ScenarioResult,
    load_results,
    scenario_events,
)

PAGE_FILE = "report.html"
NO_EVENTS = "no events recorded"
_PASS_MARK = "<span class='ok'>&#10003;</span>"
_FAIL_MARK = "<span class='bad-text'>&#10007;</span>"

STYLE = """
body{font-family:sans-serif;margin:1.5em;color:#222;background:#fff}
h1{margin-bottom:.2em} table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 8px;vertical-align:top;text-align:left}
th{background:#e8e8e8} td.num{text-align:right}
tr.bad td{background:#fde2e2} .ok{color:#176b1d;font-weight:bold}
.bad-text{color:#b00020;font-weight:bold} .neutral{color:#666}
.verdict{font-size:1.2em;padding:.4em .8em;display:inline-block}
.verdict.pass{background:#dff3df} .verdict.fail{background:#fde2e2}
ul.checks{margin:0;padding-left:1.1em} .none{color:#666;font-style:italic}
small{color:#555}
"""


def _e(text: object) -> str:
    return html.escape(str(text))


def _outcome(outcome: str) -> str:
    css = "ok" if outcome == "passed" else "bad-text"
    label = "passed" if outcome == "passed" else f"FAILED ({outcome})"
    return f"<span class='{css}'>{_e(label)}</span>"


def _control(s: ScenarioResult) -> str:
    c = s.control
    if c.outcome == "not-run":
        return "<span class='neutral'>not run</span>"
    if c.ok:
        return f"<span class='ok'>failed as expected</span> <small>{c.duration_s:.1f} s</small>"
    text = _e(f"FAILED ({c.outcome})")
    note = f"<br><small>{_e(c.message)}</small>" if c.message else ""
    return f"<span class='bad-text'>{text}</span>{note}"


def _checks(s: ScenarioResult) -> str:
    """Return the checks, folded under their count; open when one of them failed."""
    if not s.checks:
        return "<span class='none'>none</span>"
    rows = []
    for c in s.checks:
        mark = _PASS_MARK if c.ok else _FAIL_MARK
        detail = f" <small>{_e(c.detail)}</small>" if c.detail else ""
        rows.append(f"<li>{mark} {_e(c.what)}{detail}</li>")
    passed = sum(c.ok for c in s.checks)
    head = f"{passed} of {len(s.checks)} passed"
    opened = " open" if passed < len(s.checks) else ""
    items = "".join(rows)
    return f"<details{opened}><summary>{head}</summary><ul class='checks'>{items}</ul></details>"


def _row(s: ScenarioResult) -> str:
    css = "" if s.ok else " class='bad'"
    desc = f"<br><small>{_e(s.description)}</small>" if s.description else ""
    return (
        f"<tr{css} id='row-{_e(s.name)}'><td><a href='#scenario-{_e(s.name)}'>{_e(s.name)}</a>"
        f"{desc}</td><td>{_outcome(s.outcome)}</td><td>{_control(s)}</td>"
        f"<td class='num'>{s.duration_s:.1f} s</td><td>{_e(s.message)}</td>"
        f"<td>{_checks(s)}</td></tr>"
    )


def results_table(results: RunResults) -> str:
    """Return the HTML table: one row per scenario, failures marked."""
    head = "".join(
        f"<th>{t}</th>" for t in ("scenario", "outcome", "control", "duration", "message", "checks")
    )
    rows = "".join(_row(s) for s in results.scenarios)
    return f"<table class='results'><tr>{head}</tr>{rows}</table>"


def summary(results: RunResults) -> str:
    """Return the verdict and the counts, duration, version and start of the run."""
    counts = results.summary()
    verdict = (
        "<p class='verdict pass'>all scenarios passed; no negative control passed</p>"
        if results.ok
        else "<p class='verdict fail'>FAILURES: see the rows marked below</p>"
    )
    facts = (
        ("scenarios", len(results.scenarios)),
        ("passed", counts["passed"]),
        ("failed", counts["failed"]),
        ("error", counts["error"]),
        ("controls failed as expected", counts["controls_ok"]),
        ("controls passed or erred", counts["controls_bad"]),
        ("duration", f"{results.duration_s:.1f} s"),
        ("version", f"{results.testbed} {results.version}"),
        ("started", results.started or "unknown"),
    )
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
    return f"{verdict}<table class='summary'>{rows}</table>"


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f"<img class='plot' alt='{_e(alt)}' src='data:image/png;base64,{data}'>"


def _kinds(events: Sequence[RecordedEvent]) -> str:
    counts = Counter(e.kind for e in events)
    parts = ", ".join(f"{_e(k)} &times; {n}" for k, n in sorted(counts.items()))
    return f"<p><small>{len(events)} events: {parts}</small></p>"


def scenario_section(s: ScenarioResult, events: Sequence[RecordedEvent] | None) -> str:
    """Return one scenario's section: its figure, or why there is none."""
    head = f"<h3 id='scenario-{_e(s.name)}'>{_e(s.name)}</h3>"
    if not events:
        return f"{head}<p class='none'>{NO_EVENTS}</p>"
    if not report_plots.has_plot_data(events):
        note = "no channel, sensor farm or gateway frame events recorded"
        return f"{head}<p class='none'>{note}</p>{_kinds(events)}"
    figure = _img(report_plots.scenario_figure(events), f"{s.name}: load, collisions, throughput")
    return f"{head}{figure}{_kinds(events)}"


def page(results: RunResults, events: dict[str, list[RecordedEvent] | None]) -> str:
    """Return the whole self-contained page."""
    with_data = [
        (s.name, report_plots.totals(ev))
        for s in results.scenarios
        if (ev := events.get(s.name)) and report_plots.has_plot_data(ev)
    ]
    totals = (
        _img(report_plots.totals_figure(with_data), "totals of every scenario")
        if with_data
        else f"<p class='none'>{NO_EVENTS}</p>"
    )
    sections = "".join(scenario_section(s, events.get(s.name)) for s in results.scenarios)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>smtb demo: {_e(results.testbed)} {_e(results.version)}</title>"
        f"<style>{STYLE}</style></head><body>"
        f"<h1>Scenario run of {_e(results.testbed)}</h1>{summary(results)}"
        f"<h2>Results</h2>{results_table(results)}"
        f"<h2>Totals</h2>{totals}<h2>Scenarios</h2>{sections}</body></html>\n"
    )


def write_html_report(report_dir: Path) -> Path:
    """Write ``report_dir/report.html`` from the folder's results and events; return its path.

    Raises:
        ReportError: ``results.json`` or an events file is missing or malformed (the
            message names the file), or the page cannot be written.
    """
    results = load_results(report_dir)
    events = {s.name: scenario_events(report_dir, s) for s in results.scenarios}
    path = report_dir / PAGE_FILE
    try:
        path.write_text(page(results, events), encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"{path}: cannot be written: {exc}") from exc
    return path
