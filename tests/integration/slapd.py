"""A real OpenLDAP ``slapd`` per test: temp directory, free loopback port, SIGTERM at the end.

Usage::

    with running_slapd(tmp_path) as server:
        ldap3.Connection(server.url, server.root_dn, server.password)

The server runs in the foreground (``-d 0``) with an mdb database for
``base_dn``; the base entry itself is not created. Without access rules anyone
may read and only ``root_dn`` may write. When ``/usr/sbin/slapd`` is not
installed (Debian packages ``slapd`` and ``ldap-utils``; ``make system-deps``)
the test is skipped.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from smtestbed.services._runtime.testing import free_port

SLAPD = "/usr/sbin/slapd"
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")


@dataclass(frozen=True, slots=True, kw_only=True)
class Slapd:
    """A running slapd and how to reach it."""

    url: str
    port: int
    base_dn: str
    root_dn: str
    password: str
    directory: Path
    pid: int


def slapd_conf(directory: Path, *, base_dn: str, root_dn: str, password: str) -> str:
    """Return a minimal slapd.conf: core, cosine and inetorgperson schemas, one mdb database."""
    includes = "\n".join(
        f"include {SCHEMA_DIR / name}.schema" for name in ("core", "cosine", "inetorgperson")
    )
    return f"""{includes}
pidfile {directory / "slapd.pid"}
argsfile {directory / "slapd.args"}
modulepath {MODULE_DIR}
moduleload back_mdb
database mdb
maxsize 10485760
suffix "{base_dn}"
rootdn "{root_dn}"
rootpw {password}
directory {directory / "db"}
"""


def _wait_listening(proc: subprocess.Popen[bytes], port: int, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"slapd exited with code {proc.returncode} before listening: {tail}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"slapd not listening on 127.0.0.1:{port} within {timeout} s")


def _stop(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


@contextlib.contextmanager
def running_slapd(
    directory: Path,
    *,
    base_dn: str = "dc=smtb,dc=test",
    password: str = "testbed-secret",
    ready_timeout: float = 10.0,
) -> Iterator[Slapd]:
    """Run slapd with its config and database under ``directory`` until the block ends."""
    if shutil.which(SLAPD) is None:
        pytest.skip(f"{SLAPD} is not installed (Debian package slapd; run make system-deps)")
    root_dn = f"cn=admin,{base_dn}"
    (directory / "db").mkdir(parents=True, exist_ok=True)
    conf = directory / "slapd.conf"
    conf.write_text(slapd_conf(directory, base_dn=base_dn, root_dn=root_dn, password=password))
    port = free_port()
    url = f"ldap://127.0.0.1:{port}"
    log_path = directory / "slapd.log"
    log = log_path.open("wb")
    argv = [SLAPD, "-f", str(conf), "-h", f"{url}/", "-d", "0"]
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_listening(proc, port, ready_timeout, log_path)
        yield Slapd(
            url=url,
            port=port,
            base_dn=base_dn,
            root_dn=root_dn,
            password=password,
            directory=directory,
            pid=proc.pid,
        )
    finally:
        _stop(proc)
        log.close()
