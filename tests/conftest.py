"""Shared fixtures: real brokers and services on random loopback ports."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from smtestbed.services._runtime import process
from smtestbed.services._runtime.bus import Endpoints
from smtestbed.services._runtime.testing import random_endpoints, service_process

ROOT = Path(__file__).resolve().parent.parent
# As the Makefile does: Numba's cache outside the editable install's link tree, which
# every `make install` rebuilds (and with it any cache kept beside the sources).
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / "build" / "numba-cache"))
SERVICE_TESTS = ("integration", "scenarios")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Fill the Numba cache before tests that start sensor farms or channels.

    Those services compile their kernels before they are ready; from a cold cache that
    takes longer than the tests' ready timeouts on two busy cores (tests/warm_kernels.py).
    """
    if session.config.option.collectonly or os.environ.get("NUMBA_DISABLE_JIT") == "1":
        return
    if not any(set(SERVICE_TESTS) & set(item.path.parts) for item in session.items):
        return
    argv = [sys.executable, "-m", "tests.warm_kernels"]
    cache = Path(os.environ["NUMBA_CACHE_DIR"])
    cache.mkdir(parents=True, exist_ok=True)
    # parallel workers take turns: the first compiles, the others then load from the cache
    with (cache / ".warm.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise pytest.UsageError(f"compiling the Numba kernels failed:\n{done.stderr[-3000:]}")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(done.stdout.strip())


@pytest.fixture
def endpoints() -> Endpoints:
    """Broker endpoints on free 127.0.0.1 ports."""
    return random_endpoints()


@pytest.fixture
def broker(endpoints: Endpoints, tmp_path: Path) -> Iterator[process.Popen]:
    """A broker process (fast liveness: dead after 3 x 0.2 s without heartbeats)."""
    with service_process("broker", endpoints, log_path=tmp_path / "broker.log") as proc:
        yield proc
