"""Legal time: the gateway sets its clock from the WAN time service (PTB-A 50.8).

Every ``time_sync_every_s`` (simulated) a :class:`TimeSync` opens a TLS 1.2
connection with the gateway's WAN identity (``wan_cert``, ...) to the time
service (``time_service = "tls://HOST:PORT"``, certificate role ``GWA``, its
dNSName ``time_server_name`` when set), sends ``{"op": "time"}`` and reads
``{"op": "time", "t": T}`` (frames of ``proto/delivery.py``). The service's
time at the moment of the answer is taken as ``T`` plus half the round trip, and
the deviation is that minus the gateway's own time (:class:`GatewayTime`).

The gateway always adopts the service's time (its offset moves by the
deviation). When ``|deviation| > time_max_deviation_s`` it also:

- writes a ``time_deviation`` entry to each instance's calibration log,
- flags every reading stored since the last good sync (table
  ``flagged_readings`` in the instance's store file; ``gateway.readings`` shows
  them with ``flagged: true``),
- publishes ``gateway.time_deviation``.

A sync within the limit is a ``time_synced`` entry in each instance's system
log. A sync that fails (unreachable, TLS refused, bad reply) is a
``time_sync_failed`` entry in each instance's system log; the gateway keeps its
clock and tries again at the next interval.

The hook into the readings (:class:`GatewayTime`): one process's instances
share one clock; wherever the service stamps readings with a ``t_sim`` (frames
of a received batch, wired polls, serial input) it stamps ``t_sim + offset``.
With no time service configured the offset stays 0 and nothing changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from smtestbed.proto import topics
from smtestbed.proto.delivery import encode_frame, read_message
from smtestbed.services._runtime import tls
from smtestbed.services._runtime.errors import ConfigError, ProtocolError
from smtestbed.services.gateway import framed_tls
from smtestbed.services.gateway.config import GatewayConfig
from smtestbed.services.gateway.instance import GatewayInstance
from smtestbed.services.gateway.store import Store

__all__ = [
    "GatewayTime",
    "SyncFailedError",
    "TimeEndpoint",
    "TimeSync",
    "flag_since_mark",
    "flagged_ids",
    "time_sync",
]

TIME_ROLE = "GWA"

_TABLES = (
    "CREATE TABLE IF NOT EXISTS flagged_readings ("
    " reading INTEGER PRIMARY KEY, reason TEXT NOT NULL,"
    " deviation_s REAL NOT NULL, t_flagged REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS time_sync_mark ("
    " k INTEGER PRIMARY KEY CHECK (k = 0), last_good_reading INTEGER NOT NULL)",
)


class SyncFailedError(framed_tls.ConnectFailedError):
    """A time sync did not get an answer (unreachable, TLS refused, bad reply)."""


class GatewayTime:
    """The gateway's clock: the simulation clock plus the offset the last sync set (s)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.offset_s = 0.0

    def now(self) -> float:
        """Return the gateway's time, s since the Unix epoch."""
        return self.clock() + self.offset_s

    def stamp(self, t_sim: float) -> float:
        """Return a simulation time as the gateway's time (what readings are stamped with)."""
        return t_sim + self.offset_s


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeEndpoint:
    """Where the time service listens."""

    host: str
    port: int
    server_name: str = ""


def parse_endpoint(url: str, server_name: str) -> TimeEndpoint:
    """Read ``time_service``; a wrong one is a ConfigError."""
    parts = urlsplit(url)
    if parts.scheme != "tls" or not parts.hostname or parts.port is None:
        raise ConfigError(f"must be tls://HOST:PORT, got {url!r}", key="gateway.time_service")
    return TimeEndpoint(host=parts.hostname, port=parts.port, server_name=server_name)


# -- flagged readings (a small table of their own in the instance's store file) ---------


def ensure_tables(store: Store) -> None:
    """Create ``flagged_readings`` and ``time_sync_mark`` when missing."""
    with store.transaction() as db:
        for statement in _TABLES:
            db.execute(statement)


def _last_reading(store: Store) -> int:
    return int(store.query("SELECT coalesce(max(id), 0) FROM readings")[0][0])


def set_mark(store: Store) -> int:
    """Note the newest stored reading as covered by a good sync; return its id."""
    last = _last_reading(store)
    with store.transaction() as db:
        db.execute("INSERT OR REPLACE INTO time_sync_mark VALUES (0, ?)", (last,))
    return last


def flag_since_mark(store: Store, *, deviation_s: float, t_flagged: float) -> int:
    """Flag the readings stored after the mark, move the mark past them; return how many."""
    last = _last_reading(store)
    with store.transaction() as db:
        row = db.execute("SELECT last_good_reading FROM time_sync_mark").fetchone()
        mark = int(row[0]) if row else 0
        cur = db.execute(
            "INSERT OR IGNORE INTO flagged_readings"
            " SELECT id, 'time_deviation', ?, ? FROM readings WHERE id > ? AND id <= ?",
            (deviation_s, t_flagged, mark, last),
        )
        db.execute("INSERT OR REPLACE INTO time_sync_mark VALUES (0, ?)", (last,))
    return int(cur.rowcount)


def flagged_ids(store: Store, ids: Sequence[int]) -> set[int]:
    """Return which of ``ids`` are flagged (none when the table was never made)."""
    if not ids or not store.query(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'flagged_readings'"
    ):
        return set()
    rows = store.query(
        "SELECT reading FROM flagged_readings WHERE reading BETWEEN ? AND ?", (min(ids), max(ids))
    )
    wanted = set(ids)
    return {int(r[0]) for r in rows if r[0] in wanted}


# -- the sync ---------------------------------------------------------------------------


class TimeSync:
    """Ask the time service periodically and keep the gateway's clock on it."""

    def __init__(
        self,
        instances: Sequence[GatewayInstance],
        endpoint: TimeEndpoint,
        *,
        time: GatewayTime,
        tls_files: tls.TlsFiles,
        bus: framed_tls.Publisher,
        max_deviation_s: float,
        io_timeout_s: float = 10.0,
    ) -> None:
        self.instances = list(instances)
        self.endpoint = endpoint
        self.time = time
        self.tls_files = tls_files
        self.bus = bus
        self.max_deviation_s = max_deviation_s
        self.io_timeout_s = io_timeout_s
        self.syncs = 0
        self.failures = 0
        self.deviations = 0
        for inst in self.instances:
            ensure_tables(inst.store)

    async def run_forever(self, sleep: Callable[[float], Any], every_s: float) -> None:
        """Sync now, then every ``every_s`` (slept with ``sleep``, simulated time)."""
        while True:
            await self.sync_once()
            await sleep(every_s)

    async def sync_once(self) -> float | None:
        """Ask once and act on the answer; return the deviation (s), None when it failed."""
        try:
            deviation = await self.measure()
        except SyncFailedError as exc:
            self._failed(exc)
            return None
        self.syncs += 1
        self.time.offset_s += deviation
        if abs(deviation) > self.max_deviation_s:
            self._deviated(deviation)
        else:
            self._synced(deviation)
        return deviation

    async def measure(self) -> float:
        """Return the time service's time minus the gateway's (half round trip added), s.

        Raises:
            SyncFailedError: no valid answer.
        """
        reader, writer = await self._connect()
        try:
            sent = self.time.now()
            writer.write(encode_frame({"op": "time"}))
            await asyncio.wait_for(writer.drain(), self.io_timeout_s)
            reply = await asyncio.wait_for(read_message(reader), self.io_timeout_s)
            received = self.time.now()
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            raise SyncFailedError("connection_lost", str(exc) or type(exc).__name__) from exc
        except ProtocolError as exc:
            raise SyncFailedError("bad_reply", str(exc)) from exc
        finally:
            await framed_tls.close(writer)
        t = reply.get("t")
        if reply.get("op") != "time" or isinstance(t, bool) or not isinstance(t, int | float):
            raise SyncFailedError("bad_reply", f"not a time answer: {str(reply)[:200]}")
        return float(t) + (received - sent) / 2 - received

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer, _ = await framed_tls.connect(
            self.endpoint,
            framed_tls.files_context(self.tls_files),
            timeout_s=self.io_timeout_s,
            role=TIME_ROLE,
            error=SyncFailedError,
        )
        return reader, writer

    def _deviated(self, deviation: float) -> None:
        self.deviations += 1
        now = self.time.now()
        for inst in self.instances:
            flagged = flag_since_mark(inst.store, deviation_s=deviation, t_flagged=now)
            body = {
                "gateway": inst.name,
                "deviation_s": deviation,
                "limit_s": self.max_deviation_s,
                "flagged_readings": flagged,
            }
            inst.logs.calibration.append("time_deviation", body, t_sim=now)
            self.bus.publish(topics.GATEWAY_TIME_DEVIATION, body)

    def _synced(self, deviation: float) -> None:
        now = self.time.now()
        for inst in self.instances:
            set_mark(inst.store)
            body = {"gateway": inst.name, "deviation_s": deviation}
            inst.logs.system.append("time_synced", body, t_sim=now)

    def _failed(self, exc: SyncFailedError) -> None:
        self.failures += 1
        now = self.time.now()
        for inst in self.instances:
            body = {"gateway": inst.name, "reason": exc.reason, "detail": exc.detail[:300]}
            inst.logs.system.append("time_sync_failed", body, t_sim=now)


def time_sync(
    cfg: GatewayConfig,
    instances: Mapping[str, GatewayInstance],
    *,
    time: GatewayTime,
    bus: framed_tls.Publisher,
) -> TimeSync | None:
    """Return the sync of ``time_service`` for all instances (None if unset).

    Its TLS identity is the WAN settings (``wan_cert``, ``wan_key``, ``wan_chain``,
    ``wan_trust``, ``wan_crls``, ``wan_groups``).
    """
    if not cfg.time_service:
        return None
    endpoint = parse_endpoint(cfg.time_service, cfg.time_server_name)
    if not (cfg.wan_cert and cfg.wan_key):
        raise ConfigError("time_service needs wan_cert and wan_key", key="gateway")
    if not cfg.time_max_deviation_s > 0 or not cfg.time_sync_every_s > 0:
        raise ConfigError("time limits must be > 0", key="gateway.time_max_deviation_s")
    files = framed_tls.wan_client_files(cfg)
    return TimeSync(
        list(instances.values()),
        endpoint,
        time=time,
        tls_files=files,
        bus=bus,
        max_deviation_s=cfg.time_max_deviation_s,
        io_timeout_s=cfg.wan_handshake_timeout_s,
    )
