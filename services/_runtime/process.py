"""Start a service as a process and learn when it is ready; stop it cleanly.

The child gets the write end of a pipe as ``SMTB_READY_FD`` and writes
``ready`` on it once :meth:`Ready.set` is called; ``SMTB_PARENT_PID`` lets
it stop when its parent dies. Used by the supervisor and by the tests.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import IO, Any

from smtestbed.services._runtime.errors import ServiceError
from smtestbed.services._runtime.lifecycle import PARENT_PID_ENV, READY_FD_ENV

Popen = subprocess.Popen[bytes]


def service_argv(service: str, *args: str) -> list[str]:
    """Return the command line that runs ``smtb <service> run ARGS``."""
    return [sys.executable, "-m", f"smtestbed.services.{service}", *args]


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 20.0,
    stdout: IO[Any] | int | None = None,
    stderr: IO[Any] | int | None = None,
    new_session: bool = True,
) -> Popen:
    """Start ``argv`` and return once it signalled readiness.

    Raises:
        ServiceError: the process exited or stayed silent past ``ready_timeout``;
            it is killed in the latter case.
    """
    read_fd, write_fd = os.pipe()
    child_env = {
        **os.environ,
        **(env or {}),
        READY_FD_ENV: str(write_fd),
        PARENT_PID_ENV: str(os.getpid()),
    }
    try:
        proc = subprocess.Popen(
            list(argv),
            env=child_env,
            pass_fds=(write_fd,),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=new_session,
        )
    finally:
        os.close(write_fd)
    try:
        _wait_ready(read_fd, proc, ready_timeout, argv)
    except BaseException:
        stop(proc, timeout=2.0)
        raise
    finally:
        os.close(read_fd)
    return proc


def _wait_ready(fd: int, proc: Popen, timeout: float, argv: Sequence[str]) -> None:
    deadline = time.monotonic() + timeout
    received = b""
    while b"ready" not in received:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ServiceError(f"{_name(argv)} was not ready within {timeout:g} s")
        readable, _, _ = select.select([fd], [], [], min(left, 0.2))
        if not readable:
            continue
        chunk = os.read(fd, 64)
        if not chunk:
            code = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            raise ServiceError(f"{_name(argv)} exited with code {code} before it was ready")
        received += chunk


def _name(argv: Sequence[str]) -> str:
    return " ".join(argv[1:4]) if len(argv) > 1 else " ".join(argv)


def stop(proc: Popen, *, timeout: float = 5.0) -> int:
    """Send SIGTERM, wait up to ``timeout`` s, then SIGKILL; return the exit code."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
        except ProcessLookupError:
            pass
    return proc.wait()
