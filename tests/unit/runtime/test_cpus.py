"""CPU split of a service and its helper process, and pinning every thread (real processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from smtestbed.services._runtime.cpus import CpuSplit, format_cpus, parse_cpus, split

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux affinity")


@pytest.mark.parametrize(
    ("cpus", "expected"),
    [
        ({0, 1}, CpuSplit(frozenset({0}), frozenset({1}))),
        ({0, 1, 2}, CpuSplit(frozenset({0, 1}), frozenset({2}))),
        ({0, 1, 2, 3}, CpuSplit(frozenset({0, 1}), frozenset({2, 3}))),
        ({7, 2, 5, 0}, CpuSplit(frozenset({0, 2}), frozenset({5, 7}))),
    ],
)
def test_split_gives_the_lower_part_to_the_service_and_the_upper_half_to_the_helper(
    cpus: set[int], expected: CpuSplit
) -> None:
    got = split(cpus)
    assert got == expected
    assert got is not None
    assert not got.service & got.helper


@pytest.mark.parametrize("cpus", [set(), {3}])
def test_fewer_than_two_cpus_are_not_split(cpus: set[int]) -> None:
    assert split(cpus) is None


def test_cpu_lists_read_back_what_they_wrote_and_refuse_the_rest() -> None:
    assert format_cpus({3, 0, 12}) == "0,3,12"
    assert parse_cpus("0,3,12") == {0, 3, 12}
    for bad in ("", ",", "a", "1,-2", "1.5"):
        with pytest.raises(ValueError, match="not a list of CPU numbers"):
            parse_cpus(bad)


_PIN = """
import json, os, threading
from smtestbed.services._runtime.cpus import pin_threads
started = threading.Event(); stop = threading.Event()
def idle():
    started.set(); stop.wait()
before_start = threading.Thread(target=idle); before_start.start(); started.wait()
cpu = min(os.sched_getaffinity(0))
previous = pin_threads({cpu})
later = threading.Thread(target=lambda: print(json.dumps(sorted(os.sched_getaffinity(0)))))
later.start(); later.join()
tids = [int(t) for t in os.listdir("/proc/self/task")]
print(json.dumps({"cpu": cpu, "previous": sorted(previous),
                  "threads": {t: sorted(os.sched_getaffinity(t)) for t in tids}}))
stop.set(); before_start.join()
"""


def test_pin_threads_moves_every_thread_and_threads_started_later_follow() -> None:
    """In a child process: a thread started before the call and one started after run on
    the one CPU given; the call answers the CPUs allowed before."""
    out = subprocess.run(
        [sys.executable, "-c", _PIN], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    later, report = json.loads(out[0]), json.loads(out[1])
    cpu = report["cpu"]
    assert later == [cpu]
    assert len(report["threads"]) >= 2
    assert all(cpus == [cpu] for cpus in report["threads"].values())
    assert set(report["previous"]) == os.sched_getaffinity(0)
