"""Fuzz the gateway's LMN input through the real service process.

A broker and ``smtb gateway run`` (instances ``gw0`` and ``probe``) start on 127.0.0.1
ports; the registry file gives ``gw0`` a few mode-5 meters whose consumer log is ``c1``.
Their genuine telegrams are pushed first and stored. Then mutated frames go to ``gw0`` in
``sim.received`` batches on one PUSH socket, and now and then a batch whose wire parts are
mutated themselves (envelope, offsets, data, the ``t_rx`` and ``receiver`` columns).

After every batch one frame goes to instance ``probe``; PUSH/PULL keeps one socket's order,
so once ``probe`` has counted it the gateway has handled everything before. A barrier that
does not come within the per-input limit is a hang, a service that exits is a crash (the
batch is saved either way). At the end the store digest (``gateway.status``), the consumer
log and the system log are compared with their state before the mutated input: the digest
and consumer log must be equal and the system log may only have grown by
``frames_rejected`` entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import shutil
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zmq
import zmq.asyncio
from smtestbed.proto import topics
from smtestbed.proto.batch import FrameBatch
from smtestbed.proto.envelope import pack
from smtestbed.services._runtime import process
from smtestbed.services._runtime.bus import Endpoints
from smtestbed.services._runtime.client import BusClient
from smtestbed.services._runtime.errors import PeerError
from smtestbed.services._runtime.testing import (
    bus_client,
    free_port,
    random_endpoints,
    service_process,
)
from smtestbed.services.campaigns import corpus
from smtestbed.services.campaigns.crashes import HANG, CampaignError, CrashBook
from smtestbed.services.campaigns.fuzz_report import FuzzReport
from smtestbed.services.campaigns.mutation_engine import Budget
from smtestbed.services.campaigns.mutator import Mutator

T0 = 19_676 * 86_400.0  # simulation time of the campaign, s (2023-11-15 00:00 UTC)
METERS = tuple(0x31000001 + i for i in range(4))
GENUINE_PER_METER = 3
BATCH = 32
WIRE_SHARE = 0.15
CONSUMER = "c1"
T_RX_PART = 5  # topic, envelope, offsets, data, receiver, t_rx, rssi_dbm, meter, bit_errors
_SPECIAL_F8 = (float("nan"), float("inf"), -1.0, 1e300, 0.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bed:
    """The broker and gateway processes of a campaign."""

    endpoints: Endpoints
    lmn: str
    proc: process.Popen
    log_path: Path


def write_registry(path: Path) -> None:
    """Register METERS at ``gw0`` (EMH, mode 5, corpus.KEY, consumer c1)."""
    rows = ["gateway,meter,manufacturer,key_hex,security,tafs,consumer,emt"]
    rows += [f"gw0,{m:08x},EMH,{corpus.KEY.hex()},5,,{CONSUMER}," for m in METERS]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


@contextlib.contextmanager
def gateway_bed(folder: Path) -> Iterator[Bed]:
    """Start a broker and a gateway process on loopback ports; stop both at the end."""
    shutil.rmtree(folder / "data", ignore_errors=True)  # each campaign starts from empty stores
    folder.mkdir(parents=True, exist_ok=True)
    write_registry(folder / "registry.csv")
    endpoints, lmn = random_endpoints(), f"tcp://127.0.0.1:{free_port()}"
    settings = {
        "data_dir": str(folder / "data"),
        "input_endpoint": lmn,
        "instances": "gw0,probe",
        "registry_file": str(folder / "registry.csv"),
        "synchronous": "NORMAL",
        "heartbeat_s": 0.2,
        "clock_mode": "stepped",
        "clock_start": T0,
    }
    log_path = folder / "gateway.log"
    with (
        service_process("broker", endpoints, log_path=folder / "broker.log"),
        service_process("gateway", endpoints, settings=settings, log_path=log_path) as proc,
    ):
        yield Bed(endpoints=endpoints, lmn=lmn, proc=proc, log_path=log_path)


def genuine_frames() -> list[bytes]:
    """Return the registered meters' telegrams, access numbers 1..GENUINE_PER_METER."""
    return [
        corpus.wmbus_frame(m, access=a, mode=5, energy_wh=1000.0 * a)
        for a in range(1, GENUINE_PER_METER + 1)
        for m in METERS
    ]


def received(frames: Sequence[bytes], t_rx: float, receivers: Sequence[str]) -> FrameBatch:
    """Return a ``sim.received`` batch of ``frames``, all heard by receiver 0 at ``t_rx``."""
    n = len(frames)
    columns = {
        "receiver": np.zeros(n, dtype=np.uint16),
        "t_rx": np.full(n, t_rx, dtype=np.float64),
        "rssi_dbm": np.full(n, -70.0, dtype=np.float32),
        "meter": np.arange(n, dtype=np.uint32),
        "bit_errors": np.zeros(n, dtype=np.uint16),
    }
    return FrameBatch.from_frames(list(frames), {"receivers": list(receivers)}, columns)


def wire_parts(batch: FrameBatch, seq: int, t_sim: float) -> list[bytes]:
    """Return the multipart message a channel sends for ``batch`` (as BatchPusher does)."""
    kind = topics.RECEIVED_BATCH
    envelope = pack(kind, "fuzz", seq, t_sim, time.time(), batch.header())
    return [kind.encode(), envelope, *(bytes(p) for p in batch.wire_frames())]


def mutate_parts(parts: list[bytes], mutator: Mutator) -> list[bytes]:
    """Mutate one part of a batch message: bytes of a frame, or a special time value."""
    rng = mutator.rng
    out = list(parts)
    which = rng.randrange(1, len(out))
    if which == T_RX_PART and rng.random() < 0.5:  # times no clock or log can take
        times = np.frombuffer(out[which], dtype=np.float64).copy()
        times[rng.randrange(times.size)] = rng.choice(_SPECIAL_F8)
        out[which] = times.tobytes()
        return out
    one = Mutator([out[which]], seed=rng.randrange(2**32))
    out[which] = one.next()
    return out


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """What must not change: store digest, accepted count, consumer log, system log."""

    store_digest: str
    accepted: int
    consumer_log: str
    system: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        """Return the digests (the system log as entry count and digest)."""
        return {
            "store_digest": self.store_digest,
            "accepted": self.accepted,
            "consumer_log": self.consumer_log,
            "system_entries": len(self.system),
            "system_log": _digest(self.system),
        }


async def snapshot(client: BusClient) -> Snapshot:
    """Read the state of ``gw0`` through its bus API."""
    status = await _request(client, topics.GATEWAY_STATUS, {"gateway": "gw0", "digest": True})
    logs = {
        name: (
            await _request(
                client, topics.GATEWAY_READ_LOG, {"gateway": "gw0", "log": name, "limit": 100_000}
            )
        )["entries"]
        for name in (f"consumer-{CONSUMER}", "system")
    }
    return Snapshot(
        store_digest=str(status["store_digest"]),
        accepted=int(status["accepted"]),
        consumer_log=_digest(logs[f"consumer-{CONSUMER}"]),
        system=list(logs["system"]),
    )


async def _request(client: BusClient, method: str, params: dict[str, Any]) -> Any:
    return await client.request("gateway", method, params, timeout=10.0)


def compare(before: Snapshot, after: Snapshot) -> dict[str, Any]:
    """Return the proof: digests before/after, ``unchanged`` and what the system log gained."""
    grown = after.system[len(before.system) :]
    kept = after.system[: len(before.system)] == before.system
    kinds = sorted({str(e.get("kind")) for e in grown})
    unchanged = (
        before.store_digest == after.store_digest
        and before.accepted == after.accepted
        and before.consumer_log == after.consumer_log
        and kept
        and set(kinds) <= {"frames_rejected"}
    )
    return {
        "digest_before": before.store_digest,
        "digest_after": after.store_digest,
        "unchanged": unchanged,
        "logs_before": before.to_json(),
        "logs_after": after.to_json(),
        "system_log_kept": kept,
        "system_log_added": kinds,
    }


class LmnCampaign:
    """Push mutated batches into a running gateway and watch it (see the module docstring)."""

    def __init__(
        self,
        bed: Bed,
        client: BusClient,
        sock: zmq.asyncio.Socket,
        budget: Budget,
        *,
        seed: int,
        wire_share: float,
    ) -> None:
        self.bed, self.client, self.sock, self.budget = bed, client, sock, budget
        self.wire_share = wire_share
        self.seeds = genuine_frames()
        self.mutator = Mutator([*self.seeds, *corpus.wmbus_seeds()[3:40]], seed=seed)
        self.seq = 0
        self.probes = 0
        self.t_rx = T0 + 60.0
        self.inputs = 0
        self.batches = 0

    async def send(self, parts: list[bytes]) -> None:
        """Send one multipart message on the campaign's only PUSH socket (order kept)."""
        await self.sock.send_multipart(parts)
        self.seq += 1

    def batch_parts(self, frames: Sequence[bytes], receivers: Sequence[str]) -> list[bytes]:
        """Return the wire parts of a batch of ``frames`` received a second after the last."""
        self.t_rx += 1.0
        return wire_parts(received(frames, self.t_rx, receivers), self.seq, self.t_rx)

    async def barrier(self) -> bool:
        """Send one frame to ``probe``; return True once ``probe`` counted it (in time)."""
        self.probes += 1
        await self.send(self.batch_parts([self.seeds[0]], ("probe",)))
        deadline = time.monotonic() + max(self.budget.per_input_s, 5.0)
        while time.monotonic() < deadline and self.bed.proc.poll() is None:
            with contextlib.suppress(PeerError):
                status = await self.client.request(
                    "gateway", topics.GATEWAY_STATUS, {"gateway": "probe"}, timeout=1.0
                )
                if int(status["frames"]) >= self.probes:
                    return True
            await asyncio.sleep(0.002)
        return False

    async def load_genuine(self) -> None:
        """Store the registered meters' own telegrams (the state fuzzing must not change)."""
        await self.send(self.batch_parts(self.seeds, ("gw0",)))
        if not await self.barrier():
            raise CampaignError("the gateway did not take its genuine telegrams in time")

    def next_parts(self) -> tuple[list[bytes], int]:
        """Return the next message to push and the number of mutated frames in it."""
        frames = [self.mutator.next() for _ in range(BATCH)]
        parts = self.batch_parts(frames, ("gw0",))
        if self.mutator.rng.random() < self.wire_share:
            parts = mutate_parts(parts, self.mutator)
        return parts, len(frames)

    async def fuzz(self, book: CrashBook) -> None:
        """Push mutated batches until the budget is spent or the gateway fails."""
        start = time.monotonic()
        while not self.budget.exhausted(start, self.inputs):
            parts, count = self.next_parts()
            await self.send(parts)
            self.inputs += count
            self.batches += 1
            if not await self.barrier():
                saved = json.dumps([p.hex() for p in parts]).encode()
                dead = self.bed.proc.poll() is not None
                kind = "ServiceExited" if dead else HANG
                book.record(kind, "gateway/lmn", _log_tail(self.bed.log_path), saved)
                return


def _log_tail(path: Path) -> str:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return " | ".join(lines[-3:])


@contextlib.asynccontextmanager
async def push_socket(endpoint: str) -> AsyncIterator[zmq.asyncio.Socket]:
    """Open the PUSH socket to the gateway's LMN input."""
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        yield sock
    finally:
        sock.close(0)
        ctx.term()


async def _campaign(
    bed: Bed, budget: Budget, book: CrashBook, *, seed: int, wire_share: float
) -> dict[str, Any]:
    async with bus_client(bed.endpoints, name="fuzz") as client, push_socket(bed.lmn) as sock:
        campaign = LmnCampaign(bed, client, sock, budget, seed=seed, wire_share=wire_share)
        await campaign.load_genuine()
        before = await snapshot(client)
        start = time.monotonic()
        await campaign.fuzz(book)
        seconds = time.monotonic() - start
        alive = bed.proc.poll() is None and await campaign.barrier()
        proof = compare(before, await snapshot(client)) if alive else {"unchanged": False}
    traceback_logged = "Traceback" in bed.log_path.read_text(errors="replace")
    return {
        **proof,
        "alive": alive and not traceback_logged,
        "batches": campaign.batches,
        "frames": campaign.inputs,
        "seconds": seconds,
        "corpus": len(campaign.mutator.corpus),
    }


def fuzz_gateway(
    budget: Budget, *, seed: int, out: Path, wire_share: float = WIRE_SHARE
) -> FuzzReport:
    """Run the gateway LMN campaign; return its report (``gateway`` holds the proof).

    Args:
        budget: campaign time and input count (frames), and the barrier's time limit.
        seed: seed of the mutator.
        out: folder of the gateway's data, logs and saved crash inputs.
        wire_share: fraction of batches whose wire parts are mutated too.
    """
    book = CrashBook("gateway-lmn", out / "crashes")
    with gateway_bed(out / "gateway-lmn") as bed:
        result = asyncio.run(_campaign(bed, budget, book, seed=seed, wire_share=wire_share))
    seconds = float(result.pop("seconds"))
    return FuzzReport(
        target="gateway-lmn",
        engine="mutator",
        seed=seed,
        seconds=seconds,
        inputs=int(result["frames"]),
        corpus=int(result.pop("corpus")),
        crashes=book.unique(),
        hangs=[c for c in book.crashes.values() if c.kind == HANG],
        gateway=result,
    )
