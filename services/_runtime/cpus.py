"""Which CPUs a process and its helper process run on (Linux scheduler affinity).

A gateway service does its Python work under one GIL, on about one core; its store writer
child process runs a thread per store lane and signing lane. The scheduler shares a busy
CPU between runnable threads, not processes: left to it, the writer's threads take turns
on both cores of a two-core machine, and the service's ingest thread, which all others of
its process wait for, gets a fraction of one. :func:`split` gives each its own
CPUs; :func:`pin_threads` puts every thread of the calling process on its share, and the
child sets its own at start (threads inherit the affinity of the thread that starts them).

Where the scheduler cannot be told (not Linux) or the process may use one CPU only, nothing
is split and nothing changes.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuSplit", "allowed", "format_cpus", "parse_cpus", "pin_threads", "split"]


@dataclass(frozen=True, slots=True)
class CpuSplit:
    """The CPUs of a service process and of its helper process (disjoint, both non-empty)."""

    service: frozenset[int]
    helper: frozenset[int]


def allowed() -> frozenset[int]:
    """Return the CPUs this process may run on (empty where the platform does not tell)."""
    if not hasattr(os, "sched_getaffinity"):
        return frozenset()
    return frozenset(os.sched_getaffinity(0))


def split(cpus: Collection[int]) -> CpuSplit | None:
    """Split CPUs into the lower part for the service and the upper half for the helper;
    None for fewer than two (one CPU leaves nothing to split)."""
    ordered = sorted(cpus)
    if len(ordered) < 2:
        return None
    cut = len(ordered) - len(ordered) // 2
    return CpuSplit(frozenset(ordered[:cut]), frozenset(ordered[cut:]))


def pin_threads(cpus: Collection[int]) -> frozenset[int]:
    """Put every thread of this process on ``cpus``; return the CPUs the calling thread
    was allowed before (to undo with another call).

    Threads started later inherit the affinity of the thread that starts them.

    Raises:
        OSError: the scheduler refused (e.g. a CPU that does not exist or is not allowed).
    """
    before = allowed()
    if not hasattr(os, "sched_setaffinity"):
        return before
    mask = set(cpus)
    os.sched_setaffinity(0, mask)
    for tid in _threads():
        try:
            os.sched_setaffinity(tid, mask)
        except ProcessLookupError:  # a thread that ended meanwhile
            continue
    return before


def _threads() -> Iterable[int]:
    try:
        return [int(name) for name in os.listdir(Path("/proc/self/task"))]
    except OSError:
        return []


def format_cpus(cpus: Collection[int]) -> str:
    """Return CPUs as a comma-separated list (``0,2,3``): the form :func:`parse_cpus` reads."""
    return ",".join(str(cpu) for cpu in sorted(cpus))


def parse_cpus(text: str) -> frozenset[int]:
    """Read a comma-separated list of CPU numbers.

    Raises:
        ValueError: not a non-empty list of non-negative integers.
    """
    try:
        cpus = frozenset(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        cpus = frozenset()
    if not cpus or min(cpus) < 0:
        raise ValueError(f"not a list of CPU numbers: {text!r}")
    return cpus
