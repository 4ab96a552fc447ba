"""The coverage-guided engine: atheris (libFuzzer) in a child process, its output parsed.

libFuzzer's ``-print_final_stats=1`` lines give the inputs tried
(``stat::number_of_executed_units``); exit code 77 is an input that escaped the harness
(saved as ``crash-*``), 70 an input over the per-input limit (saved as ``timeout-*``). The
child's crash journal holds the deduplicated crashes the harness caught.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import time
from pathlib import Path

from smtestbed.services.campaigns.crashes import (
    HANG,
    CampaignError,
    Crash,
    CrashBook,
    read_journal,
)
from smtestbed.services.campaigns.fuzz_report import FuzzReport
from smtestbed.services.campaigns.mutation_engine import Budget
from smtestbed.services.campaigns.targets import TARGETS

CRASH_EXIT = 77
TIMEOUT_EXIT = 70
_STAT = re.compile(r"^stat::(\w+):\s*(\d+)", re.MULTILINE)
_DONE = re.compile(r"Done (\d+) runs in")
_ARTIFACT = re.compile(r"Test unit written to (\S+)")


def available() -> bool:
    """Tell whether atheris can be imported here."""
    return importlib.util.find_spec("atheris") is not None


def libfuzzer_args(budget: Budget, seed: int, artifacts: Path) -> list[str]:
    """Return the libFuzzer flags of a campaign bounded by ``budget``."""
    args = [
        f"-max_total_time={max(1, round(budget.seconds))}",
        f"-timeout={max(1, round(budget.per_input_s))}",
        f"-seed={seed}",
        f"-error_exitcode={CRASH_EXIT}",
        f"-timeout_exitcode={TIMEOUT_EXIT}",
        "-print_final_stats=1",
        "-max_len=4096",
        f"-artifact_prefix={artifacts}/",
    ]
    if budget.runs is not None:
        args.append(f"-runs={budget.runs}")
    return args


def fuzz_with_atheris(target: str, budget: Budget, *, seed: int, out: Path) -> FuzzReport:
    """Run atheris on ``target`` in a child process; return the report parsed from it."""
    corpus_dir, crashes = out / f"corpus-{target}", out / "crashes"
    journal = out / f"journal-{target}.jsonl"
    journal.unlink(missing_ok=True)
    seeds = TARGETS[target].seeds()
    _write_corpus(corpus_dir, seeds)
    crashes.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "smtestbed.services.campaigns.atheris_driver", target]
    argv += [str(journal), str(crashes), *libfuzzer_args(budget, seed, crashes), str(corpus_dir)]
    start = time.monotonic()
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=budget.seconds + 120.0, check=False
    )
    seconds = time.monotonic() - start
    (out / f"atheris-{target}.log").write_text(proc.stderr, encoding="utf-8")
    found = read_journal(journal)
    escaped = _escaped(target, proc.returncode, proc.stderr)
    return FuzzReport(
        target=target,
        engine="atheris",
        seed=seed,
        seconds=_fuzz_seconds(proc.stderr, seconds),
        inputs=executed_units(proc.stderr),
        corpus=len(seeds),
        crashes=[*found, *(c for c in escaped if c.kind != HANG)],
        hangs=[c for c in escaped if c.kind == HANG],
    )


def _write_corpus(folder: Path, seeds: list[bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(seeds):
        (folder / f"seed-{i:04d}").write_bytes(data)


def executed_units(log: str) -> int:
    """Return the inputs libFuzzer says it ran (final stats, else its ``Done`` line)."""
    stats = dict(_STAT.findall(log))
    if "number_of_executed_units" in stats:
        return int(stats["number_of_executed_units"])
    done = _DONE.findall(log)
    return int(done[-1]) if done else 0


def _fuzz_seconds(log: str, wall: float) -> float:
    stats = dict(_STAT.findall(log))
    return float(stats.get("total_time", 0)) or wall


def _escaped(target: str, code: int, log: str) -> list[Crash]:
    """Return the crash or hang that ended the child, if one did."""
    if code == 0:
        return []
    if code not in (CRASH_EXIT, TIMEOUT_EXIT):
        tail = log.strip().splitlines()[-5:]
        raise CampaignError(f"atheris child for {target} exited with {code}: {' | '.join(tail)}")
    book = CrashBook(target, None)
    path = (_ARTIFACT.findall(log) or [""])[-1]
    data = Path(path).read_bytes() if path and Path(path).is_file() else b""
    kind = HANG if code == TIMEOUT_EXIT else "UncaughtException"
    crash = book.record(kind, "libFuzzer", _last_error(log), data)
    crash.input_file = path
    return [crash]


def _last_error(log: str) -> str:
    lines = [ln for ln in log.splitlines() if "Error" in ln or "ALARM" in ln]
    return lines[-1] if lines else "libFuzzer stopped on an input"
