"""The gateway as a real process: LMN batches over PUSH/PULL, the bus API, logs, observer, updates.

Each test feeds ``sim.received`` batches to the gateway's LMN input as the channel would and
talks to it over a real broker. Stored data is checked through the API and, as a second
opinion, through a read-only SQLite connection of its own to the instance's store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from smtestbed.proto import topics
from smtestbed.services._runtime import process
from smtestbed.services._runtime.bus import BatchPusher, Endpoints, Subscription
from smtestbed.services._runtime.client import BusClient
from smtestbed.services._runtime.cpus import format_cpus, split
from smtestbed.services._runtime.errors import RemoteError
from smtestbed.services._runtime.testing import (
    bus_client,
    free_port,
    random_endpoints,
    service_process,
    wait_for_event,
    wait_until,
)
from smtestbed.services.gateway.keys import load_public_key
from smtestbed.services.gateway.logchain import verify
from smtestbed.services.gateway.observer import sign_manifest

from tests.integration.gateway_helpers import (
    KEY,
    OTHER_KEY,
    T0,
    feed,
    gateway_events,
    gateway_process,
    gw,
    lmn_pusher,
    next_event,
    received_batch,
    records,
    smtb,
    tree,
    wmbus_frame,
    write_key_pair,
)

pytestmark = pytest.mark.timeout(60)
R = TypeVar("R")


@dataclass(frozen=True, slots=True, kw_only=True)
class Bed:
    """A broker and one gateway process (instance gw0) with update keys."""

    endpoints: Endpoints
    lmn: str
    data_dir: Path
    folder: Path
    manufacturer: ec.EllipticCurvePrivateKey
    manufacturer_pem: Path


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    """Start a broker and a gateway that accepts updates signed by a test manufacturer key."""
    root = tmp_path_factory.mktemp("gateway")
    endpoints = random_endpoints()
    lmn = f"tcp://127.0.0.1:{free_port()}"
    key, private, public = write_key_pair(root, "manufacturer")
    with (
        service_process("broker", endpoints, log_path=root / "broker.log"),
        gateway_process(
            endpoints, root / "data", lmn, log_path=root / "gw.log", manufacturer_key=public
        ),
    ):
        yield Bed(
            endpoints=endpoints,
            lmn=lmn,
            data_dir=root / "data",
            folder=root / "data" / "gw0",
            manufacturer=key,
            manufacturer_pem=private,
        )


Scenario = Callable[[BusClient, BatchPusher, Subscription], Awaitable[R]]


def run(bed: Bed, scenario: Scenario[R]) -> R:
    """Run ``scenario`` with a bus client, an LMN pusher and the gateway's events."""

    async def main() -> R:
        async with bus_client(bed.endpoints) as client, lmn_pusher(bed.lmn) as pusher:
            return await scenario(client, pusher, await gateway_events(client))

    return asyncio.run(main())


def meter_params(meter: str, **extra: Any) -> dict[str, Any]:
    """Return gateway.add_meter parameters of an EMH mode-5 meter with KEY."""
    return {"meter": meter, "manufacturer": "EMH", "key": KEY.hex(), "security": 5, **extra}


def stored_rows(folder: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Read readings, values and meter states through a read-only connection of the test's own."""
    with contextlib.closing(
        sqlite3.connect(f"file:{folder / 'store.sqlite'}?mode=ro", uri=True)
    ) as db:
        return {
            table: db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            for table in ("readings", "reading_values", "meter_state")
        }


async def system_log(client: BusClient, kind: str) -> list[dict[str, Any]]:
    """Return the system-log entries of ``kind``."""
    reply = await gw(client, topics.GATEWAY_READ_LOG, {"log": "system", "limit": 100_000})
    return [e for e in reply["entries"] if e["kind"] == kind]


async def accepted(sub: Subscription, pusher: BatchPusher, frame: bytes, t_rx: float) -> Any:
    """Feed one frame that must be accepted; return its frame_accepted event body."""
    await feed(pusher, [frame], [t_rx])
    return (await next_event(sub, topics.GATEWAY_FRAME_ACCEPTED)).body


# -- management ----------------------------------------------------------------------------


def test_management_requests_change_the_registry_with_events_and_log_entries(bed: Bed) -> None:
    """add_meter, assign_taf and remove_meter change the registry, publish and log each change."""
    meter = "10000001"

    async def scenario(client: BusClient, pusher: BatchPusher, sub: Subscription) -> Any:
        added = await gw(client, topics.GATEWAY_ADD_METER, meter_params(meter, consumer="c1"))
        added_event = await next_event(sub, topics.GATEWAY_METER_CHANGED, meter=meter)
        listed = await gw(client, topics.GATEWAY_LIST_METERS, {})
        assigned = await gw(
            client, topics.GATEWAY_ASSIGN_TAF, {"meter": meter, "tafs": ["taf6", "taf7"]}
        )
        removed = await gw(client, topics.GATEWAY_REMOVE_METER, {"meter": meter})
        removed_event = await next_event(
            sub, topics.GATEWAY_METER_CHANGED, meter=meter, action="removed"
        )
        after = await gw(client, topics.GATEWAY_LIST_METERS, {})
        log = {
            kind: [e for e in await system_log(client, kind) if e["fields"]["meter"] == meter]
            for kind in ("meter_added", "tafs_assigned", "meter_removed")
        }
        return {
            "added": added,
            "added_event": added_event.body,
            "listed": listed,
            "assigned": assigned,
            "removed": removed,
            "removed_event": removed_event.body,
            "after": after,
            "log": log,
            "caller": client.name,
        }

    r = run(bed, scenario)
    entry = {
        "meter": meter,
        "manufacturer": "EMH",
        "security": 5,
        "tafs": [],
        "consumer": "c1",
        "emt": "",
    }
    assert r["added"] == entry
    assert r["added_event"] == {"gateway": "gw0", "action": "added", **entry}
    assert entry in r["listed"]
    assert r["assigned"] == {**entry, "tafs": ["taf6", "taf7"]}
    assert r["removed"] == {**entry, "tafs": ["taf6", "taf7"]}
    assert r["removed_event"] == {"gateway": "gw0", "action": "removed", "meter": meter}
    assert all(e["meter"] != meter for e in r["after"])
    (added_log,) = r["log"]["meter_added"]
    assert added_log["fields"]["by"] == r["caller"]
    assert added_log["fields"]["consumer"] == "c1"
    assert [e["fields"]["tafs"] for e in r["log"]["tafs_assigned"]] == [["taf6", "taf7"]]
    assert len(r["log"]["meter_removed"]) == 1


# -- accepted frames -----------------------------------------------------------------------


def test_accepted_frames_are_stored_with_their_values_and_announced_after_commit(
    bed: Bed,
) -> None:
    """Three frames of one meter give three readings with the encoded values, committed first.

    When gateway.frame_accepted arrives, a separate read-only SQLite connection already
    sees every announced reading id: the event follows the commit.
    """
    meter = "10000002"
    energies = [1000.0, 1500.0, 2250.0]
    frames = [wmbus_frame(meter, access=10 + i, energy=e) for i, e in enumerate(energies)]
    times = [T0 - 900.0, T0 - 600.0, T0 - 300.0]

    async def scenario(client: BusClient, pusher: BatchPusher, sub: Subscription) -> Any:
        await gw(client, topics.GATEWAY_ADD_METER, meter_params(meter))
        await feed(pusher, frames, times)
        event = await next_event(sub, topics.GATEWAY_FRAME_ACCEPTED)
        ids_seen = {row[0] for row in stored_rows(bed.folder)["readings"]}
        readings = await gw(client, topics.GATEWAY_READINGS, {"meter": meter})
        return event.body, readings, ids_seen

    body, readings, ids_seen = run(bed, scenario)
    assert body["gateway"] == "gw0"
    assert body["count"] == 3
    assert [(m, t) for m, _, t in body["readings"]] == [(meter, t) for t in times]
    announced = [rid for _, rid, _ in body["readings"]]
    assert set(announced) <= ids_seen
    assert [r["id"] for r in readings] == announced
    assert [r["t_sim"] for r in readings] == times
    assert [r["access_number"] for r in readings] == [10, 11, 12]
    assert [[(v["quantity"], v["unit"], v["value"]) for v in r["values"]] for r in readings] == [
        [("energy", "Wh", e), ("power", "W", 1500.0)] for e in energies
    ]


def test_store_writer_process_writes_the_store_and_is_named_in_the_status(bed: Bed) -> None:
    """By default a child process runs the ingest transactions: the status names its pid,
    that process runs the store writer module and has the instance's store file open, a
    reading announced as accepted is in the file, and service and writer run on CPUs of
    their own."""
    meter = "10000012"

    async def scenario(client: BusClient, pusher: BatchPusher, sub: Subscription) -> Any:
        await gw(client, topics.GATEWAY_ADD_METER, meter_params(meter))
        await feed(pusher, [wmbus_frame(meter, access=3)], [T0 - 120.0])
        event = await next_event(sub, topics.GATEWAY_FRAME_ACCEPTED)
        return event.body, await gw(client, topics.GATEWAY_STATUS, {})

    body, status = run(bed, scenario)
    assert status["store_writer"] == "process"
    pid = status["store_writer_pid"]
    assert isinstance(pid, int)
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"smtestbed.services.gateway.store_writer" in cmdline
    store = (bed.folder / "store.sqlite").resolve()
    open_files = {Path(os.readlink(fd)) for fd in Path(f"/proc/{pid}/fd").iterdir()}
    assert store in open_files
    announced = {rid for _, rid, _ in body["readings"]}
    assert announced <= {row[0] for row in stored_rows(bed.folder)["readings"]}
    # cpu_split = "auto": the service on the lower half of the CPUs it started with, the
    # writer (every thread of it) on the upper half
    cut = split(os.sched_getaffinity(0))
    if cut is None:
        assert status["store_writer_cpus"] == status["cpus"]
    else:
        assert status["cpus"] == format_cpus(cut.service)
        assert status["store_writer_cpus"] == format_cpus(cut.helper)
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        assert all(os.sched_getaffinity(int(t.name)) == cut.helper for t in tasks)


def test_a_failed_store_transaction_is_reported_and_ingest_goes_on(bed: Bed) -> None:
    """A trigger put on the live store refuses one meter's readings: the batch's
    transaction fails in the store writer, ``gateway.ingest_failed`` names the cause, no
    reading of it is stored or announced, and once the trigger is gone the meter's next
    frame is accepted (the service kept running)."""
    meter = "10000013"
    store = bed.folder / "store.sqlite"
    with contextlib.closing(sqlite3.connect(store, isolation_level=None)) as db:
        db.execute("PRAGMA busy_timeout = 5000")
        db.execute(
            f"CREATE TRIGGER refuse_{meter} BEFORE INSERT ON readings WHEN NEW.meter = '{meter}'"
            " BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END"
        )
        try:

            async def refused(client: BusClient, pusher: BatchPusher, sub: Subscription) -> Any:
                await gw(client, topics.GATEWAY_ADD_METER, meter_params(meter))
                await feed(pusher, [wmbus_frame(meter, access=1)], [T0 - 60.0])
                return (await next_event(sub, topics.GATEWAY_INGEST_FAILED)).body

            failed = run(bed, refused)
        finally:
            db.execute(f"DROP TRIGGER refuse_{meter}")
    assert "refused by the test trigger" in failed["error"]
    assert [r for r in stored_rows(bed.folder)["readings"] if r[1] == meter] == []

    async def resumed(client: BusClient, pusher: BatchPusher, sub: Subscription) -> Any:
        await feed(pusher, [wmbus_frame(meter, access=2)], [T0 - 30.0])
        event = await next_event(sub, topics.GATEWAY_FRAME_ACCEPTED)
        return event.body, await gw(client, topics.GATEWAY_READINGS, {"meter": meter})

    body, readings = run(bed, resumed)
    assert [(m, t) for m, _, t in body["readings"]] == [(meter, T0 - 30.0)]
    assert [r["access_number"] for r in readings] == [2]


# -- rejections ----------------------------------------------------------------------------

# reason -> (registered security mode, frames accepted first, the refused frame)
Case = tuple[int, list[bytes], bytes]


def _bad_crc(meter: str) -> Case:
    frame = bytearray(wmbus_frame(meter, access=10))
    frame[20] ^= 0x04  # a bit error in block 2: its CRC fails, block 1 still names the meter
    return 5, [], bytes(frame)


def _malformed_frame(meter: str) -> Case:
    return 5, [], wmbus_frame(meter, access=10)[:-3]


def _unknown_meter(meter: str) -> Case:
    return 5, [], wmbus_frame("19999999", access=10)


def _wrong_key(meter: str) -> Case:
    return 5, [], wmbus_frame(meter, access=10, key=OTHER_KEY)


def _bad_mac(meter: str) -> Case:
    return 7, [], wmbus_frame(meter, access=10, mode=7, counter=5, key=OTHER_KEY)


def _replay(meter: str) -> Case:
    first = wmbus_frame(meter, access=10, energy=1000)
    return 5, [first], wmbus_frame(meter, access=9, energy=1000)


def _counter_backwards(meter: str) -> Case:
    first = wmbus_frame(meter, access=10, energy=1000)
    return 5, [first], wmbus_frame(meter, access=11, energy=900)


def _malformed_record(meter: str) -> Case:
    return 5, [], wmbus_frame(meter, access=10, apl=b"\x3f")


def _security_mismatch(meter: str) -> Case:
    return 5, [], wmbus_frame(meter, access=10, mode=0)


def _implausible_value(meter: str) -> Case:
    return 5, [], wmbus_frame(meter, access=10, apl=records(power=5_000_000))


CASES: dict[str, Callable[[str], Case]] = {
    "bad_crc": _bad_crc,
    "malformed_frame": _malformed_frame,
    "unknown_meter": _unknown_meter,
    "wrong_key": _wrong_key,
    "bad_mac": _bad_mac,
    "replay": _replay,
    "counter_backwards": _counter_backwards,
    "malformed_record": _malformed_record,
    "security_mismatch": _security_mismatch,
    "implausible_value": _implausible_value,
}


@pytest.mark.parametrize("reason", list(CASES))
def test_each_rejection_is_published_logged_and_leaves_the_store_unchanged(
    bed: Bed, reason: str
) -> None:
    """A refused frame gives frame_rejected with its reason and a system-log entry, nothing stored.

    The store digest from gateway.status and every row of readings, values and meter
    states read through SQLite are the same before and after the refused frame.
    """
    meter = f"2000{list(CASES).index(reason):04d}"
    mode, first, bad = CASES[reason](meter)
    named = "19999999" if reason == "unknown_meter" else meter

    async def scenario(client: BusClient, pusher: BatchPusher, sub: Subscription) -> Any:
        key = (KEY if mode else b"").hex()
        await gw(client, topics.GATEWAY_ADD_METER, meter_params(meter, security=mode, key=key))
        for frame in first:
            await accepted(sub, pusher, frame, T0 - 200.0)
        before = await gw(client, topics.GATEWAY_STATUS, {"digest": True})
        rows_before = stored_rows(bed.folder)
        await feed(pusher, [bad], [T0 - 100.0])
        event = await next_event(sub, topics.GATEWAY_FRAME_REJECTED, meter=named)
        after = await gw(client, topics.GATEWAY_STATUS, {"digest": True})
        logged = [
            r
            for e in await system_log(client, "frames_rejected")
            for r in e["fields"]["rejections"]
            if r["meter"] == named
        ]
        readings = await gw(client, topics.GATEWAY_READINGS, {"meter": meter})
        return {
            "event": event.body,
            "before": before,
            "after": after,
            "rows": (rows_before, stored_rows(bed.folder)),
            "logged": logged,
            "readings": readings,
        }

    r = run(bed, scenario)
    assert r["event"]["reason"] == reason
    assert r["event"]["gateway"] == "gw0"
    assert r["event"]["t_sim"] == T0 - 100.0
    assert [(e["reason"], e["t_sim"]) for e in r["logged"]] == [(reason, T0 - 100.0)]
    assert r["logged"][0]["message"] == r["event"]["message"]
    assert r["after"]["store_digest"] == r["before"]["store_digest"]
    assert r["after"]["stored"] == r["before"]["stored"]
    assert r["rows"][1] == r["rows"][0]
    assert r["after"]["rejected"][reason] == r["before"]["rejected"].get(reason, 0) + 1
    assert len(r["readings"]) == len(first)


# -- bad requests --------------------------------------------------------------------------

BAD_REQUESTS = [
    (topics.GATEWAY_ADD_METER, {"manufacturer": "EMH", "key": KEY.hex()}, "meter"),
    (topics.GATEWAY_ADD_METER, meter_params("10000003", key="zz"), "key"),
    (topics.GATEWAY_ADD_METER, meter_params("10000003", security="5"), "security"),
    (topics.GATEWAY_ADD_METER, meter_params("1234", security=5), "meter"),
    (topics.GATEWAY_ADD_METER, meter_params("10000003", tafs=["taf99"]), "tafs"),
    (topics.GATEWAY_ASSIGN_TAF, {"meter": "10000003", "tafs": "taf7"}, "tafs"),
    (topics.GATEWAY_REMOVE_METER, {"meter": "99999998"}, "meter"),
    (topics.GATEWAY_READINGS, {"meter": "10000003", "limit": 0}, "limit"),
    (topics.GATEWAY_READINGS, {"meter": "10000003", "t0": "yesterday"}, "t0"),
    (topics.GATEWAY_EMT_ACK, {"emt": "e", "ids": "all"}, "ids"),
    (topics.GATEWAY_READ_LOG, {"log": "nope"}, "log"),
    (topics.GATEWAY_STATUS, {"gateway": "gw9"}, "gateway"),
    (topics.GATEWAY_LIST_METERS, [1, 2], "params"),
    (topics.GATEWAY_PUSH_UPDATE, {"bundle": "not bytes"}, "bundle"),
]


def test_bad_requests_name_the_field_and_change_nothing(bed: Bed) -> None:
    """Each malformed request is a RemoteError (RequestError) naming its field; nothing changes."""

    async def scenario(client: BusClient, pusher: BatchPusher, sub: Subscription) -> Any:
        before = await gw(client, topics.GATEWAY_LIST_METERS, {})
        errors = []
        for method, params, _field in BAD_REQUESTS:
            with pytest.raises(RemoteError) as info:
                await gw(client, method, params)
            errors.append(info.value)
        after = await gw(client, topics.GATEWAY_LIST_METERS, {})
        ping = await client.request("gateway", topics.SERVICE_PING, {})
        return before, errors, after, ping

    before, errors, after, ping = run(bed, scenario)
    for (method, _params, field), error in zip(BAD_REQUESTS, errors, strict=True):
        assert error.code == "RequestError", (method, str(error))
        assert str(error).startswith(f"{field}: "), (method, str(error))
    assert after == before
    assert all(m["meter"] != "10000003" for m in after)
    assert ping["service"] == "gateway"


# -- TAF6 and the EMT queue ----------------------------------------------------------------


def test_taf6_readout_queues_the_last_value_until_acknowledged_across_a_restart(
    tmp_path: Path,
) -> None:
    """TAF6 answers the last stored value and queues it; the queue outlives a restart till acked."""
    endpoints = random_endpoints()
    lmn = f"tcp://127.0.0.1:{free_port()}"
    meter = "10000004"
    params = meter_params(meter, tafs=["taf6"], emt="emt1")

    def gateway() -> contextlib.AbstractContextManager[process.Popen]:
        return gateway_process(endpoints, tmp_path / "data", lmn, log_path=tmp_path / "gw.log")

    async def first() -> tuple[Any, Any]:
        async with bus_client(endpoints) as client, lmn_pusher(lmn) as pusher:
            sub = await gateway_events(client)
            await gw(client, topics.GATEWAY_ADD_METER, params)
            await accepted(sub, pusher, wmbus_frame(meter, access=1, energy=5000), T0 - 600)
            await accepted(sub, pusher, wmbus_frame(meter, access=2, energy=5400), T0 - 300)
            readout = await gw(client, topics.GATEWAY_TAF6_READOUT, {"meter": meter})
            queue = await gw(client, topics.GATEWAY_EMT_QUEUE, {"emt": "emt1"})
            return readout, queue

    async def second() -> tuple[Any, Any, Any, Any]:
        async with bus_client(endpoints) as client:
            queue = await wait_until(
                lambda: gw(client, topics.GATEWAY_EMT_QUEUE, {"emt": "emt1"}), timeout=5
            )
            ids = [r["id"] for r in queue]
            ack = await gw(client, topics.GATEWAY_EMT_ACK, {"emt": "emt1", "ids": ids})
            empty = await gw(client, topics.GATEWAY_EMT_QUEUE, {"emt": "emt1"})
            other = await gw(client, topics.GATEWAY_EMT_QUEUE, {"emt": "emt2"})
            return queue, ack, empty, other

    with service_process("broker", endpoints, log_path=tmp_path / "broker.log"):
        with gateway():
            readout, queue = asyncio.run(first())
        with gateway():
            again, ack, empty, other = asyncio.run(second())
    assert readout["taf"] == "taf6"
    assert (readout["meter"], readout["unit"]) == (meter, "Wh")
    assert [(v["t"], v["value"]) for v in readout["values"]] == [(T0 - 300, 5400.0)]
    assert [(r["taf"], r["meter"], r["payload"]) for r in queue] == [("taf6", meter, readout)]
    assert again == queue
    assert ack == {"acknowledged": 1}
    assert empty == []
    assert other == []


# -- logs ----------------------------------------------------------------------------------


def test_logs_verify_and_verify_log_names_a_tampered_entry(bed: Bed, tmp_path: Path) -> None:
    """Every log of the instance verifies with its public key; one altered line is named.

    The gateway's system log is copied and one entry in the copy changed (the live file
    stays as written); ``smtb gateway verify-log`` exits 1 naming that entry and line.
    """
    meter = "10000005"

    async def scenario(client: BusClient, pusher: BatchPusher, sub: Subscription) -> Any:
        await gw(client, topics.GATEWAY_ADD_METER, meter_params(meter, consumer="c5"))
        await accepted(sub, pusher, wmbus_frame(meter, access=1), T0 - 50)
        return await gw(client, topics.GATEWAY_STATUS, {})

    status = run(bed, scenario)
    public = Path(status["public_key"])
    key = load_public_key(public)
    logs = sorted((bed.folder / "logs").glob("*.jsonl"))
    assert {p.name for p in logs} >= {"system.jsonl", "calibration.jsonl", "consumer-c5.jsonl"}
    results = {p.name: verify(p, key) for p in logs}
    assert all(r.ok for r in results.values()), {n: r.message() for n, r in results.items()}
    assert results["consumer-c5.jsonl"].count >= 2

    copy = tmp_path / "system.jsonl"
    lines = (bed.folder / "logs" / "system.jsonl").read_bytes().splitlines(keepends=True)
    entry = json.loads(lines[2])
    entry["fields"]["by"] = "someone else"
    lines[2] = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    copy.write_bytes(b"".join(lines))
    ok = smtb(
        "gateway",
        "verify-log",
        str(bed.folder / "logs" / "system.jsonl"),
        "--public-key",
        str(public),
    )
    bad = smtb("gateway", "verify-log", str(copy), "--public-key", str(public))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("OK ")
    assert bad.returncode == 1
    assert bad.stdout.startswith("ALTERED entry 2 at line 3 (log system)"), bad.stdout


# -- observer ------------------------------------------------------------------------------


def test_observer_is_quiet_on_a_clean_start_and_names_a_file_whose_recorded_hash_changed(
    tmp_path: Path,
) -> None:
    """A manifest from make-manifest --gateway-code raises nothing; a re-signed altered one does.

    The gateway's own files are left alone: the test changes the hash recorded for
    ``tariffs.py`` in the manifest and signs it again, so the file now differs from it.
    """
    endpoints = random_endpoints()
    key, private, public = write_key_pair(tmp_path, "observer")
    manifest = tmp_path / "manifest.json"
    made = smtb(
        "gateway",
        "make-manifest",
        "--gateway-code",
        "--version",
        "1.0.0",
        "--key",
        str(private),
        "--out",
        str(manifest),
    )
    assert made.returncode == 0, made.stderr
    settings = {"manifest_file": manifest, "manifest_key": public, "observer_interval_s": 0.2}

    async def scenario() -> tuple[list[Any], Any, list[dict[str, Any]]]:
        async with bus_client(endpoints) as client:
            sub = client.subscribe([topics.GATEWAY_INTEGRITY_VIOLATION])
            await sub.wait_connected()  # before the gateway starts: its PUB gets it on connect
            with gateway_process(
                endpoints,
                tmp_path / "data",
                f"tcp://127.0.0.1:{free_port()}",
                log_path=tmp_path / "gw.log",
                **settings,
            ):
                quiet: list[Any] = []
                with contextlib.suppress(TimeoutError):
                    quiet.append(await next_event(sub, topics.GATEWAY_INTEGRITY_VIOLATION, 1.5))
                quiet += await system_log(client, "integrity_violation")
                doc = json.loads(manifest.read_text())
                doc.pop("signature")
                listing = doc["partitions"]["tariffs"]
                target = next(e for e in listing if e["path"].endswith("tariffs.py"))
                target["sha256"] = "0" * 64
                manifest.write_text(json.dumps(sign_manifest(doc, key)))
                event = await next_event(sub, topics.GATEWAY_INTEGRITY_VIOLATION, 10.0)
                logged = await system_log(client, "integrity_violation")
            return quiet, event, logged

    with service_process("broker", endpoints, log_path=tmp_path / "broker.log"):
        quiet, event, logged = asyncio.run(scenario())
    assert quiet == []
    assert event.body["kind"] == "changed"
    assert event.body["partition"] == "tariffs"
    assert event.body["path"].endswith("tariffs.py")
    assert event.body["expected"] == "0" * 64
    assert len(event.body["actual"]) == 64
    assert logged[0]["fields"]["path"] == event.body["path"]
    assert logged[0]["fields"]["summary"] == f"partition tariffs: {event.body['path']} changed"


# -- updates -------------------------------------------------------------------------------


def _bundle(bed: Bed, tmp_path: Path, version: str, key: Path) -> bytes:
    source = tmp_path / f"src-{version}"
    source.mkdir(exist_ok=True)
    (source / "firmware.txt").write_text(f"gateway firmware {version}\n")
    out = tmp_path / f"bundle-{version}-{key.stem}.tar"
    made = smtb(
        "gateway",
        "make-bundle",
        str(source),
        "--name",
        "smtb-gateway",
        "--version",
        version,
        "--key",
        str(key),
        "--out",
        str(out),
    )
    assert made.returncode == 0, made.stderr
    return out.read_bytes()


def test_signed_newer_update_installs_and_older_or_badly_signed_ones_change_nothing(
    bed: Bed, tmp_path: Path
) -> None:
    """push_update installs 2.0.0; 1.0.0 and a 3.0.0 signed by another key are refused."""
    _, stranger, _ = write_key_pair(tmp_path, "stranger")
    newer = _bundle(bed, tmp_path, "2.0.0", bed.manufacturer_pem)
    older = _bundle(bed, tmp_path, "1.0.0", bed.manufacturer_pem)
    forged = _bundle(bed, tmp_path, "3.0.0", stranger)
    firmware = bed.folder / "firmware"

    async def scenario(client: BusClient, pusher: BatchPusher, sub: Subscription) -> Any:
        out: dict[str, Any] = {}
        for name, bundle in (("newer", newer), ("older", older), ("forged", forged)):
            before = tree(firmware)
            reply = await gw(client, topics.GATEWAY_PUSH_UPDATE, {"bundle": bundle})
            event = await wait_for_event(sub, lambda e: e.kind.startswith("gateway.update_"))
            out[name] = (reply, event.kind, event.body, before, tree(firmware))
        out["log"] = [
            (e["kind"], e["fields"]["version"], e["fields"]["reason"])
            for kind in ("update_installed", "update_refused")
            for e in await system_log(client, kind)
        ]
        return out

    r = run(bed, scenario)
    reply, kind, body, before, after = r["newer"]
    assert kind == topics.GATEWAY_UPDATE_INSTALLED
    assert reply == body
    assert (body["accepted"], body["version"], body["previous"]) == (True, "2.0.0", None)
    assert before == {}
    assert after["current"] == "versions/2.0.0"
    assert after["versions/2.0.0/firmware.txt"] == b"gateway firmware 2.0.0\n"
    for name, reason in (("older", "not_newer"), ("forged", "bad_signature")):
        reply, kind, body, before, after = r[name]
        assert kind == topics.GATEWAY_UPDATE_REFUSED
        assert reply == body
        assert (body["accepted"], body["reason"]) == (False, reason)
        assert after == before
    assert ("update_installed", "2.0.0", None) in r["log"]
    assert ("update_refused", "1.0.0", "not_newer") in r["log"]
    assert any(k == "update_refused" and why == "bad_signature" for k, _, why in r["log"])


# -- malformed LMN input -------------------------------------------------------------------


def test_a_received_batch_without_t_rx_is_refused_and_ingest_goes_on(bed: Bed) -> None:
    """A sim.received batch lacking its t_rx column stores nothing; the next batch is ingested."""
    meter = "10000006"
    good = wmbus_frame(meter, access=1, energy=700)

    async def scenario(client: BusClient, pusher: BatchPusher, sub: Subscription) -> Any:
        await gw(client, topics.GATEWAY_ADD_METER, meter_params(meter))
        batch = received_batch([good], [T0 - 10.0])
        del batch.columns["t_rx"]
        await pusher.send(batch, t_sim=T0, kind=topics.RECEIVED_BATCH)
        body = await accepted(sub, pusher, good, T0 - 5.0)
        readings = await gw(client, topics.GATEWAY_READINGS, {"meter": meter})
        return body, readings

    body, readings = run(bed, scenario)
    assert [(m, t) for m, _, t in body["readings"]] == [(meter, T0 - 5.0)]
    assert [(r["t_sim"], r["values"][0]["value"]) for r in readings] == [(T0 - 5.0, 700.0)]


@pytest.mark.parametrize("bad", [math.inf, math.nan], ids=["inf", "nan"])
def test_non_finite_receive_time_refuses_the_batch_and_ingest_goes_on(bed: Bed, bad: float) -> None:
    """A sim.received batch with a t_rx of inf or NaN stores nothing; the gateway lives on."""
    meter = "10000007" if math.isinf(bad) else "10000008"
    good = wmbus_frame(meter, access=1, energy=800)

    async def scenario(client: BusClient, pusher: BatchPusher, sub: Subscription) -> Any:
        await gw(client, topics.GATEWAY_ADD_METER, meter_params(meter))
        before = await gw(client, topics.GATEWAY_READINGS, {"meter": meter})
        await pusher.send(received_batch([good], [bad]), t_sim=T0, kind=topics.RECEIVED_BATCH)
        body = await accepted(sub, pusher, good, T0 - 5.0)
        return before, body

    before, body = run(bed, scenario)
    assert before == []
    assert [(m, t) for m, _, t in body["readings"]] == [(meter, T0 - 5.0)]
