"""Crash safety of the gateway store: a SIGKILLed ingest loses nothing it announced.

The ingest runs as a real child process (this module run with ``-m``): it
commits frames in batches and prints each batch's ids on one line only after
the commit returned, which is the moment a gateway announces the readings as
accepted. The test kills it mid-way, reopens the file and checks the
announcement against what is stored, then ingests all frames again.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from smtestbed.services.gateway.schema import Reading, Value
from smtestbed.services.gateway.store import Store

pytestmark = pytest.mark.timeout(60)

TOTAL = 100_000
BATCH = 500
METERS = 100
KILL_AFTER_BATCHES = 40
ROOT = Path(__file__).resolve().parents[2]


def frame(n: int) -> Reading:
    """Return frame number ``n``: meter ``n % METERS``, its ``n // METERS``-th reading."""
    k = n // METERS
    return Reading(
        meter=f"{10_000_000 + n % METERS:08d}",
        t_sim=900.0 * k,
        access_number=k % 256,
        message_counter=k,
        frame_digest=hashlib.sha256(n.to_bytes(8, "big")).digest(),
        values=(
            Value(quantity="energy", unit="Wh", value=250.0 * k + n % METERS),
            Value(quantity="volume", unit="m^3", value=0.01 * k, storage_number=1),
        ),
    )


def ingest(path: Path, first: int, count: int) -> None:
    """Commit frames ``first .. first+count-1`` in batches; print each batch after its commit.

    Each line is JSON ``[n0, [id or null, ...]]``: the ids of frames n0, n0+1, ...
    """
    store = Store(path)
    for n0 in range(first, first + count, BATCH):
        ids = store.commit_batch([frame(n) for n in range(n0, min(n0 + BATCH, first + count))])
        sys.stdout.write(json.dumps([n0, ids]) + "\n")
        sys.stdout.flush()
    store.close()


def start_ingest(path: Path, first: int = 0, count: int = TOTAL) -> subprocess.Popen[str]:
    """Start the ingest as a child process with its stdout on a pipe."""
    command = [sys.executable, "-m", "tests.integration.test_gateway_crash", str(path)]
    return subprocess.Popen(
        [*command, str(first), str(count)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )


def announced(lines: list[str]) -> dict[int, int]:
    """Return frame number -> id for every complete line (a torn last line announced nothing)."""
    out: dict[int, int] = {}
    for line in lines:
        if not line.endswith("\n"):
            continue
        n0, ids = json.loads(line)
        out.update((n0 + k, i) for k, i in enumerate(ids) if i is not None)
    return out


def kill_mid_way(path: Path) -> tuple[dict[int, int], int]:
    """Run the ingest, SIGKILL it after KILL_AFTER_BATCHES lines; return announcements, rc."""
    child = start_ingest(path)
    assert child.stdout is not None
    lines = [child.stdout.readline() for _ in range(KILL_AFTER_BATCHES)]
    os.kill(child.pid, signal.SIGKILL)
    lines += child.stdout.readlines()
    child.stdout.close()
    return announced(lines), child.wait(timeout=10)


def stored(store: Store) -> dict[int, Reading]:
    """Return every stored reading by id."""
    out: dict[int, Reading] = {}
    for m in range(METERS):
        out.update(store.readings(f"{10_000_000 + m:08d}", limit=TOTAL))
    return out


def test_killed_ingest_keeps_every_announced_reading_once(tmp_path: Path) -> None:
    """After SIGKILL mid-ingest every announced reading is stored once under its id.

    The meter state is that of each meter's last stored reading, and a second
    ingest of all frames stores only the missing ones: 10^5 readings in total.
    """
    path = tmp_path / "gw.db"
    before_kill, rc = kill_mid_way(path)
    assert rc == -signal.SIGKILL
    assert KILL_AFTER_BATCHES * BATCH <= len(before_kill) < TOTAL
    store = Store(path)
    readings = stored(store)
    assert {n: readings.get(i) for n, i in before_kill.items()} == {
        n: frame(n) for n in before_kill
    }
    assert len({r.frame_digest for r in readings.values()}) == len(readings) == store.count()
    for meter in {r.meter for r in readings.values()}:
        last = readings[max(i for i, r in readings.items() if r.meter == meter)]
        state = store.state(meter)
        assert state is not None
        assert (state.message_counter, state.t_sim) == (last.message_counter, last.t_sim)
    store.close()

    rerun = start_ingest(path)
    out, _ = rerun.communicate(timeout=40)
    assert rerun.returncode == 0
    added = announced(out.splitlines(keepends=True))
    assert len(added) == TOTAL - len(readings)
    assert not set(added) & set(before_kill)
    store = Store(path)
    try:
        assert store.count() == TOTAL
        final = stored(store)
        assert {final[i].frame_digest for i in final} == {
            frame(n).frame_digest for n in range(TOTAL)
        }
    finally:
        store.close()


if __name__ == "__main__":
    ingest(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
