"""Fuzz the gateway's wired M-Bus master: a fake slave on a TCP socket answers garbled.

A :class:`LinePoller` of a fresh gateway instance polls one registered meter, by primary
and by secondary address, over a real TCP link on 127.0.0.1. Behind the socket a real
:class:`MbusSlave` computes each genuine answer; the fake slave sends it mutated (bit
flips, cut, spliced), or an ``E5``, or bytes of another frame instead. One input is one
poll round: every reply the slave sent during it is saved with a crash.

A crash is any exception escaping ``poll`` (the master's documented ``MeterSilentError``
and the ingest's ``RefusedError`` are handled inside it); a poll that does not end within
the per-input limit is a hang. The proof: when no reply of a round held a frame that
decodes as a RSP_UD (checksum included), the instance's store digest is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from smtestbed.proto.mbus import SecondaryAddress, decode_response, encode_frame, split_frames
from smtestbed.services._runtime.errors import ProtocolError
from smtestbed.services.campaigns import corpus
from smtestbed.services.campaigns.crashes import HANG, CrashBook
from smtestbed.services.campaigns.fuzz_report import FuzzReport
from smtestbed.services.campaigns.mutation_engine import Budget
from smtestbed.services.campaigns.mutator import Mutator
from smtestbed.services.gateway.instance import GatewayInstance
from smtestbed.services.gateway.lmn_link import Link, open_link
from smtestbed.services.gateway.lmn_wired import LineConfig, LinePoller, MeterTarget
from smtestbed.services.gateway.schema import MeterEntry
from smtestbed.services.sensorfarm.mbus_slave import MbusSlave, WiredMeter

T_SIM = 1_767_225_600.0  # 2026-01-01T00:00:00Z, the gateway's (fixed) time, s
REPLY_TIMEOUT_S = 0.01  # loopback: a reply is there within a millisecond
MUTATE_SHARE = 0.85


def wired_meter() -> WiredMeter:
    """Return the meter behind the fake slave (the corpus slave: energy Wh, power W)."""
    return WiredMeter(
        ident=corpus.SLAVE_IDENT,
        manufacturer=corpus.SLAVE_MANUFACTURER,
        version=1,
        medium=2,
        primary_address=corpus.SLAVE_ADDRESS,
        records=corpus.meter_records,
    )


def new_instance(folder: Path) -> GatewayInstance:
    """Return an empty gateway instance with the meter registered (plaintext, mode 0)."""
    shutil.rmtree(folder, ignore_errors=True)
    instance = GatewayInstance("gw0", folder, synchronous="NORMAL")
    meter = wired_meter()
    entry = MeterEntry(meter=meter.ident, manufacturer=meter.manufacturer, key=b"", security=0)
    instance.registry.add(entry)
    return instance


def holds_response(sent: bytes) -> bool:
    """Tell whether ``sent`` holds a frame that decodes as a RSP_UD (checksum and all)."""
    frames, _tail = split_frames(sent)
    for frame in frames:
        try:
            decode_response(encode_frame(frame))
        except ProtocolError:
            continue
        return True
    return False


class FakeSlave:
    """Answer a master's frames as :class:`MbusSlave` would, mostly mutated."""

    def __init__(self, *, seed: int) -> None:
        self.slave = MbusSlave(wired_meter(), records_per_telegram=2)
        self.mutator = Mutator([b"\xe5", *corpus.mbus_seeds()[:40]], seed=seed)
        self.rng = self.mutator.rng
        self.mutate = False
        self.sent: list[bytes] = []
        self.decodable = False
        self.replies = 0
        self.handlers: set[asyncio.Task[Any]] = set()

    def answer(self, request: bytes) -> bytes:
        """Return the bytes to send for the master's ``request`` (cut out of the stream)."""
        frames, _tail = split_frames(request)
        genuine = b"".join(r for f in frames if (r := self.slave.handle(f)) is not None)
        reply = self._garble(genuine) if self.mutate else genuine
        if reply != genuine:
            self.replies += 1
        self.sent.append(reply)
        self.decodable = self.decodable or holds_response(reply)
        return reply

    def _garble(self, genuine: bytes) -> bytes:
        roll = self.rng.random()
        if roll > MUTATE_SHARE:
            return genuine
        if genuine and roll < 0.6:
            one = Mutator([genuine, *self.mutator.corpus[:4]], seed=self.rng.randrange(2**32))
            return one.next()
        return self.mutator.next()

    def begin(self, *, mutate: bool) -> None:
        """Start a poll round: forget what was sent; mutate this round's replies or not."""
        self.mutate, self.sent, self.decodable = mutate, [], False

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer every chunk the master writes until it hangs up."""
        task = asyncio.current_task()
        if task is not None:
            self.handlers.add(task)
        try:
            with contextlib.suppress(ConnectionError):  # the master hung up (reset)
                while data := await reader.read(4096):
                    reply = self.answer(data)
                    if reply:
                        writer.write(reply)
                        await writer.drain()
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def slave_link(slave: FakeSlave) -> AsyncIterator[tuple[str, Link]]:
    """Serve ``slave`` on a loopback port; yield its URL and the master's open link."""
    server = await asyncio.start_server(slave.serve, "127.0.0.1", 0)
    url = f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        link = await open_link(url)
        try:
            yield url, link
        finally:
            await link.close()
            if slave.handlers:  # they end once they read the master's hang-up
                await asyncio.wait(slave.handlers, timeout=1.0)
    finally:
        server.close()
        await server.wait_closed()


def line_config(url: str) -> LineConfig:
    """Return the line: the meter by primary address, then by secondary address."""
    meter = wired_meter()
    targets = (
        MeterTarget(meter=meter.ident, primary=meter.primary_address),
        MeterTarget(meter=meter.ident, secondary=SecondaryAddress(ident=meter.ident)),
    )
    return LineConfig(
        instance="gw0", url=url, meters=targets, reply_timeout_s=REPLY_TIMEOUT_S, retries=1
    )


class MasterCampaign:
    """Poll through the fake slave round by round (see the module docstring)."""

    def __init__(self, instance: GatewayInstance, link: Link, url: str, slave: FakeSlave) -> None:
        self.instance, self.link, self.slave = instance, link, slave
        self.poller = LinePoller(line_config(url), instance, lambda: T_SIM)
        self.rounds = self.changed = self.open_rounds = self.refused_rounds = 0

    async def round(self, limit_s: float, *, mutate: bool) -> tuple[str, str]:
        """Run one poll; return (crash kind, message), ("", "") when all is well."""
        self.slave.begin(mutate=mutate)
        before = self.instance.store.digest()
        try:
            await asyncio.wait_for(self.poller.poll(self.link), limit_s)
        except TimeoutError:
            return (HANG, f"poll ran over {limit_s} s")
        except Exception as exc:  # everything documented is handled inside poll
            return (type(exc).__name__, repr(exc)[:300])
        if self.slave.decodable:
            self.open_rounds += 1
        elif self.instance.store.digest() != before:
            self.changed += 1
            return ("StateChanged", "store changed though no reply held a valid RSP_UD")
        else:
            self.refused_rounds += 1
        return ("", "")

    async def fuzz(self, budget: Budget, book: CrashBook) -> None:
        """Poll with mutated replies until the budget is spent."""
        start = time.monotonic()
        while not budget.exhausted(start, self.slave.replies):
            kind, message = await self.round(max(budget.per_input_s, 2.0), mutate=True)
            self.rounds += 1
            if kind:
                saved = json.dumps([r.hex() for r in self.slave.sent]).encode()
                book.record(kind, "mbus-master poll", message, saved)


async def _campaign(folder: Path, budget: Budget, book: CrashBook, seed: int) -> dict[str, Any]:
    instance = new_instance(folder / "gw0")
    slave = FakeSlave(seed=seed)
    try:
        async with slave_link(slave) as (url, link):
            campaign = MasterCampaign(instance, link, url, slave)
            genuine_kind, _ = await campaign.round(5.0, mutate=False)
            before = instance.store.digest()
            start = time.monotonic()
            await campaign.fuzz(budget, book)
            seconds = time.monotonic() - start
        counters = campaign.poller.counters
        return {
            "seconds": seconds,
            "inputs": slave.replies,
            "alive": genuine_kind == "",
            "rounds": campaign.rounds,
            "rounds_refused": campaign.refused_rounds,
            "rounds_with_valid_reply": campaign.open_rounds,
            "unchanged": campaign.changed == 0,
            "digest_before": before,
            "digest_after": instance.store.digest(),
            "readings": len(list(instance.store.readings(corpus.SLAVE_IDENT))),
            "retries": counters.retries,
            "timeouts": counters.timeouts,
            "garbage_bytes": counters.garbage_bytes,
            "readouts": counters.readouts,
            "missing": counters.missing,
        }
    finally:
        instance.close()


def fuzz_mbus_master(budget: Budget, *, seed: int, out: Path) -> FuzzReport:
    """Run the wired M-Bus master campaign; return its report (``gateway`` holds the proof)."""
    book = CrashBook("mbus-master", out / "crashes")
    result = asyncio.run(_campaign(out / "mbus-master", budget, book, seed))
    return FuzzReport(
        target="mbus-master",
        engine="mutator",
        seed=seed,
        seconds=float(result.pop("seconds")),
        inputs=int(result.pop("inputs")),
        corpus=41,
        crashes=book.unique(),
        hangs=[c for c in book.crashes.values() if c.kind == HANG],
        gateway=result,
    )
