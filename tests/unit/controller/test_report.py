"""The run report: results.json and events files in, a self-contained report.html out."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from smtestbed.proto import topics
from smtestbed.services.controller.report import NO_EVENTS, write_html_report
from smtestbed.services.controller.report_data import (
    RecordedEvent,
    ReportError,
    load_results,
)
from smtestbed.services.controller.report_plots import (
    channel_series,
    coarsen,
    farm_series,
    gateway_series,
    totals,
)

T0 = 1_700_000_000.0


def scenario(name: str, outcome: str = "passed", control: str = "failed-as-expected") -> Any:
    """Return one scenario entry as the runner writes it."""
    return {
        "name": name,
        "description": f"what {name} shows",
        "outcome": outcome,
        "duration_s": 1.5,
        "message": "" if outcome == "passed" else f"{name} went wrong",
        "checks": [
            {"what": f"{name} first check", "ok": True, "detail": "3 of 3"},
            {"what": f"{name} second check", "ok": outcome == "passed", "detail": "see log"},
        ],
        "control": {"outcome": control, "duration_s": 0.7, "message": f"control of {name}"},
        "events_file": f"scenarios/{name}/events.jsonl",
    }


def write_results(folder: Path, scenarios: list[Any]) -> None:
    """Write results.json with ``scenarios`` (summary as the runner would count it)."""
    doc = {
        "testbed": "smtestbed",
        "version": "0.1.0",
        "started": "2026-01-01T12:00:00+00:00",
        "duration_s": 12.5,
        "scenarios": scenarios,
        "summary": {"passed": 0, "failed": 0, "error": 0, "controls_ok": 0, "controls_bad": 0},
    }
    (folder / "results.json").write_text(json.dumps(doc))


def event(kind: str, t_sim: float, body: Any) -> dict[str, Any]:
    """Return one events.jsonl line's object."""
    return {"kind": kind, "src": "x", "seq": 0, "t_sim": t_sim, "t_wall": 0.0, "body": body}


def window(t: float, offered: int, collided: int, per: dict[str, int] | None = None) -> Any:
    """Return a channel.window event with ``collided`` frames of ``offered`` lost."""
    receivers = {n: {"collided": c} for n, c in (per or {"gw0": collided}).items()}
    body = {
        "window": int(t),
        "offered": offered,
        "delivered": offered - collided,
        "collided": collided,
        "lost_to_noise": 0,
        "receivers": receivers,
    }
    return event(topics.CHANNEL_WINDOW, t, body)


def write_events(folder: Path, name: str, events: list[Any]) -> None:
    """Write a scenario's events file."""
    path = folder / "scenarios" / name / "events.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e) + "\n" for e in events))


def rows(page: str) -> dict[str, str]:
    """Return each results-table row's HTML by scenario name."""
    return dict(re.findall(r"<tr[^>]*id='row-([^']+)'>(.*?)</tr>", page))


def test_failed_scenario_and_unexpectedly_passing_control_are_both_failures(
    tmp_path: Path,
) -> None:
    """A failed scenario and a control that passed are marked failed; the good one is not."""
    write_results(
        tmp_path,
        [
            scenario("good"),
            scenario("broken", outcome="failed"),
            scenario("leaky-control", control="passed-unexpectedly"),
        ],
    )
    page = write_html_report(tmp_path).read_text()
    by_name = rows(page)
    assert set(by_name) == {"good", "broken", "leaky-control"}
    assert "FAILED (failed)" in by_name["broken"]
    assert "broken went wrong" in by_name["broken"]
    assert "FAILED (passed-unexpectedly)" in by_name["leaky-control"]
    assert "control of leaky-control" in by_name["leaky-control"]
    assert "FAILED" not in by_name["good"]
    assert "failed as expected" in by_name["good"]
    assert page.count("<tr class='bad'") == 2
    assert "FAILURES" in page
    assert "all scenarios passed" not in page
    assert load_results(tmp_path).summary() == {
        "passed": 2,
        "failed": 1,
        "error": 0,
        "controls_ok": 2,
        "controls_bad": 1,
    }


def test_all_passed_run_says_so_and_lists_checks(tmp_path: Path) -> None:
    """Every scenario passed with its control failing: the verdict is a pass."""
    write_results(tmp_path, [scenario("one"), scenario("two", control="not-run")])
    page = write_html_report(tmp_path).read_text()
    assert "all scenarios passed" in page
    assert "FAILED" not in page
    assert "one first check" in page
    assert "not run" in rows(page)["two"]
    assert load_results(tmp_path).ok


def test_scenario_without_events_says_no_events_recorded(tmp_path: Path) -> None:
    """No events file, and an empty one, give the notice instead of an empty plot."""
    write_results(tmp_path, [scenario("missing"), scenario("empty")])
    write_events(tmp_path, "empty", [])
    page = write_html_report(tmp_path).read_text()
    assert page.count(NO_EVENTS) == 3  # two scenarios and the totals
    assert "<img" not in page


def test_scenario_with_events_gets_its_figure_and_totals(tmp_path: Path) -> None:
    """Channel and gateway events give a scenario figure and the totals figure, inline PNG."""
    write_results(tmp_path, [scenario("radio"), scenario("quiet")])
    accepted = event(topics.GATEWAY_FRAME_ACCEPTED, T0 + 5, {"gateway": "gw0", "count": 7})
    write_events(tmp_path, "radio", [window(T0, 10, 3), window(T0 + 10, 12, 0), accepted])
    page = write_html_report(tmp_path).read_text()
    images = re.findall(r"<img class='plot' alt='([^']*)' src='data:image/png;base64,", page)
    assert images == ["totals of every scenario", "radio: load, collisions, throughput"]
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page)  # nothing fetched
    assert "<script" not in page
    assert NO_EVENTS in page.split("id='scenario-quiet'")[1]


def test_missing_results_file_names_it(tmp_path: Path) -> None:
    """No results.json: the error names the file."""
    with pytest.raises(ReportError, match=r"results\.json: not found"):
        write_html_report(tmp_path)
    assert not (tmp_path / "report.html").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", r"results\.json: not JSON"),
        ("[]", r"results\.json: must be a JSON object"),
        (json.dumps({"scenarios": [{"outcome": "passed"}]}), r"scenarios\[0\]\.name: missing"),
        (
            json.dumps({"scenarios": [{"name": "a", "outcome": "maybe"}]}),
            r"scenarios\[0\]\.outcome: 'maybe' is not one of passed, failed, error",
        ),
        (
            json.dumps({"scenarios": [{"name": "a", "outcome": "passed", "duration_s": "x"}]}),
            r"scenarios\[0\]\.duration_s: must be a number",
        ),
        (
            json.dumps(
                {"scenarios": [{"name": "a", "outcome": "passed", "control": {"outcome": "x"}}]}
            ),
            r"scenarios\[0\]\.control\.outcome: 'x' is not one of",
        ),
        (
            json.dumps({"scenarios": [{"name": "a", "outcome": "passed", "checks": [{}]}]}),
            r"scenarios\[0\]\.checks\[0\]\.what: missing",
        ),
    ],
)
def test_malformed_results_file_names_file_and_field(
    tmp_path: Path, content: str, message: str
) -> None:
    """A malformed results.json is refused with the file and the field in the message."""
    (tmp_path / "results.json").write_text(content)
    with pytest.raises(ReportError, match=message) as info:
        write_html_report(tmp_path)
    assert str(tmp_path / "results.json") in str(info.value)
    assert not (tmp_path / "report.html").exists()


def test_bad_events_line_names_file_and_line(tmp_path: Path) -> None:
    """A line that is not an event is refused with the events file and its line number."""
    write_results(tmp_path, [scenario("radio")])
    write_events(tmp_path, "radio", [window(T0, 10, 3)])
    path = tmp_path / "scenarios" / "radio" / "events.jsonl"
    with path.open("a") as handle:
        handle.write('{"kind": "channel.window", "t_sim": "late"}\n')
    with pytest.raises(ReportError, match=rf"{re.escape(str(path))}:2: .*t_sim: must be a number"):
        write_html_report(tmp_path)


def recorded(kind: str, t: float, body: Any) -> RecordedEvent:
    """Return a RecordedEvent."""
    return RecordedEvent(kind=kind, src="x", t_sim=t, body=body)


def test_channel_series_counts_collisions_per_receiver() -> None:
    """Each channel.window gives one point; receivers missing from a window count 0."""
    ev = [
        recorded(**_as_recorded(window(T0, 10, 3, {"gw0": 1, "gw1": 2}))),
        recorded(**_as_recorded(window(T0 + 5, 4, 1, {"gw1": 1}))),
    ]
    series = channel_series(ev)
    assert series.offered == [10, 4]
    assert series.collided == [3, 1]
    assert series.per_receiver == {"gw0": [1, 0], "gw1": [2, 1]}


def _as_recorded(line: dict[str, Any]) -> dict[str, Any]:
    return {"kind": line["kind"], "t": line["t_sim"], "body": line["body"]}


def test_farm_series_differences_cumulative_totals_and_survives_a_restart() -> None:
    """The farm's totals become per-second rates; a lower total starts over from 0."""
    ev = [
        recorded(topics.SENSORFARM_WINDOW, T0, {"sent": 100}),
        recorded(topics.SENSORFARM_WINDOW, T0 + 10, {"sent": 150}),
        recorded(topics.SENSORFARM_WINDOW, T0 + 20, {"sent": 30}),
    ]
    series = farm_series(ev)
    assert series.t == [T0 + 10, T0 + 20]
    assert series.rate == pytest.approx([5.0, 3.0])


def test_gateway_series_sums_per_interval_and_reason() -> None:
    """Accepted counts and rejections by reason land in their interval."""
    ev = [
        recorded(topics.GATEWAY_FRAME_ACCEPTED, T0 + 1, {"count": 4}),
        recorded(topics.GATEWAY_FRAME_ACCEPTED, T0 + 9, {"count": 2}),
        recorded(topics.GATEWAY_FRAME_REJECTED, T0 + 12, {"reason": "unknown_meter"}),
        recorded(topics.GATEWAY_FRAME_REJECTED, T0 + 25, {"reason": "replay"}),
        recorded(topics.GATEWAY_FRAME_REJECTED, T0 + 26, {"reason": "replay"}),
    ]
    series = gateway_series(ev, 10.0, T0)
    assert series.t == [T0, T0 + 10, T0 + 20]
    assert series.accepted == [6, 0, 0]
    assert series.rejected == {"unknown_meter": [0, 1, 0], "replay": [0, 0, 2]}
    assert totals(ev).accepted == 6
    assert totals(ev).rejected == 3


def test_coarsen_sums_groups_of_windows() -> None:
    """Every k windows become one point holding their sums; a short last group is kept."""
    ev = [recorded(**_as_recorded(window(T0 + 10 * i, 10 + i, i))) for i in range(5)]
    series = coarsen(channel_series(ev), 2)
    assert series.t == [T0, T0 + 20, T0 + 40]
    assert series.offered == [21, 25, 14]
    assert series.collided == [1, 5, 4]
    assert series.per_receiver == {"gw0": [1, 5, 4]}
