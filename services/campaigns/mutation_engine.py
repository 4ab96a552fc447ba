"""The in-process engine: a seeded mutator, a time limit per input, crashes deduplicated.

Used when atheris does not import (or when asked for). A hang is an input that runs longer
than the per-input limit: ``SIGALRM`` interrupts it (main thread only; elsewhere hangs go
unnoticed and the campaign bound still holds between inputs).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from smtestbed.services.campaigns.crashes import HANG, CrashBook
from smtestbed.services.campaigns.fuzz_report import FuzzReport
from smtestbed.services.campaigns.mutator import Mutator
from smtestbed.services.campaigns.targets import ALLOWED, TARGETS


class InputTimeout(BaseException):
    """Raised by SIGALRM inside a target that ran over its per-input time limit."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    """How long a campaign may run: seconds, inputs, and the limit per input (s)."""

    seconds: float
    runs: int | None = None
    per_input_s: float = 1.0

    def exhausted(self, start: float, done: int) -> bool:
        """Tell whether the campaign that began at ``start`` and tried ``done`` must stop."""
        if self.runs is not None and done >= self.runs:
            return True
        return time.monotonic() - start >= self.seconds


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise InputTimeout


@contextmanager
def alarms() -> Iterator[bool]:
    """Let :func:`arm` interrupt a target with InputTimeout; yield False off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    try:
        yield True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, previous)


def arm(enabled: bool, limit_s: float) -> None:
    """Start (``limit_s`` > 0) or stop (0) the per-input timer when alarms are enabled."""
    if enabled:
        signal.setitimer(signal.ITIMER_REAL, limit_s)


def fuzz_in_process(target: str, budget: Budget, *, seed: int, out: Path | None) -> FuzzReport:
    """Run the mutator against an in-process target; return the campaign's report."""
    spec = TARGETS[target]
    spec.prepare()
    seeds = spec.seeds()
    book = CrashBook(target, None if out is None else out / "crashes")
    mutator = Mutator(seeds, seed=seed)
    start, tried = time.monotonic(), 0
    with alarms() as timed:
        for data in _inputs(seeds, mutator):
            if budget.exhausted(start, tried):
                break
            tried += 1
            try:
                arm(timed, budget.per_input_s)
                spec.run(data)
            except ALLOWED:
                pass
            except InputTimeout:
                book.record(HANG, "?", f"ran over {budget.per_input_s} s", data)
            except Exception as exc:
                book.exception(exc, data)
            finally:
                arm(timed, 0.0)
    return FuzzReport(
        target=target,
        engine="mutator",
        seed=seed,
        seconds=time.monotonic() - start,
        inputs=tried,
        corpus=len(seeds),
        crashes=book.unique(),
        hangs=[c for c in book.crashes.values() if c.kind == HANG],
    )


def _inputs(seeds: list[bytes], mutator: Mutator) -> Iterator[bytes]:
    yield from seeds  # every seed once as it is: the encoders' own output must decode
    while True:
        yield mutator.next()
