"""Service registry: liveness, restarts, gaps; supervisor start order."""

from __future__ import annotations

import pytest
from smtestbed.proto.rpc import ServiceInfo
from smtestbed.services._runtime.bus import GapTracker
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.broker.registry import ALIVE, DEAD, STOPPED, Registry
from smtestbed.services.supervisor.config import ServiceSpec, start_order


class Clock:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _info(name: str = "a", pid: int = 10) -> ServiceInfo:
    return ServiceInfo(name=name, service="sample", pid=pid, heartbeat_s=1.0, version="x")


def test_service_dies_after_missed_heartbeats_and_revives_on_a_beat() -> None:
    """Three missed 1 s heartbeats mark it dead once; a later beat makes it alive."""
    clock = Clock()
    reg = Registry(liveness=3, now=clock)
    reg.announce(b"a", _info())
    clock.t = 2.9
    assert reg.reap() == []
    clock.t = 3.1
    assert [e.info.name for e in reg.reap()] == ["a"]
    assert reg.reap() == []
    entry = reg.get("a")
    assert entry is not None
    assert entry.state == DEAD
    reg.beat("a")
    assert entry.state == ALIVE


def test_announcement_from_a_new_process_counts_a_restart() -> None:
    """Same name, new pid: starts goes up; same pid again does not."""
    reg = Registry(now=Clock())
    reg.announce(b"a", _info(pid=10))
    reg.announce(b"a", _info(pid=10))
    entry = reg.announce(b"a", _info(pid=11))
    assert entry.starts == 2
    assert reg.snapshot()[0]["restarts"] == 1


def test_bye_marks_stopped_and_heartbeats_then_ask_to_announce() -> None:
    """A stopped service's heartbeat returns None, so the broker asks it to announce."""
    reg = Registry(now=Clock())
    reg.announce(b"a", _info())
    assert reg.bye("a") is not None
    assert reg.get("a").state == STOPPED  # type: ignore[union-attr]
    assert reg.beat("a") is None
    assert reg.beat("unknown") is None


def test_gap_tracker_counts_gaps_and_restarts_per_source_and_kind() -> None:
    """Numbers are tracked per (src, kind); a jump is a gap, a fall a restart."""
    gaps = GapTracker()
    for src, kind, seq in [
        ("a", "x.y", 0),
        ("a", "x.z", 0),
        ("a", "x.y", 1),
        ("a", "x.y", 4),
        ("b", "x.y", 7),
        ("a", "x.y", 0),
    ]:
        gaps.observe(src, kind, seq)
    assert (gaps.gaps, gaps.missed, gaps.restarts) == (1, 2, 1)


def _spec(name: str, *after: str) -> ServiceSpec:
    return ServiceSpec(name=name, run="sample", after=after)


def test_start_order_respects_dependencies() -> None:
    """Services start after everything they wait for, else in file order."""
    order = start_order([_spec("c", "b"), _spec("a"), _spec("b", "a"), _spec("d")])
    assert [s.name for s in order] == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ([_spec("a", "b"), _spec("b", "a")], "dependency cycle: a -> b -> a"),
        ([_spec("a", "ghost")], "unknown service 'ghost'"),
        ([_spec("a"), _spec("a")], "used twice"),
    ],
)
def test_start_order_refuses_bad_graphs(specs: list[ServiceSpec], message: str) -> None:
    """Cycles, unknown names and duplicates are configuration errors."""
    with pytest.raises(ConfigError, match=message):
        start_order(specs)
