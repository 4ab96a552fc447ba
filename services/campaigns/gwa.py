"""Fuzz the gateway's GWA command interface over mutual TLS.

A test SM-PKI is made with the CA code (gateway ``smgw-tls`` and GWA ``gwa-tls``
certificates, the CRLs as files); a broker and ``smtb gateway run`` with ``wan_listen``
start on 127.0.0.1 ports, with the meters of :mod:`gateway_lmn` registered at ``gw0``.
The campaign connects with the GWA certificate and sends mutated frames: requests built
from the operations with odd parameter values, then bytes of the frame mutated (the
length header included).

The framing rules of :mod:`smtestbed.proto.wan` tell how many replies each input must
get; a reply that does not come within the per-input limit is a hang (or a crash when the
gateway process is gone). Before and after every input a second connection reads
``list_meters`` and the store digest (``status`` with ``digest``); when no request of the
input that may change them was answered ``ok``, both must be unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import ssl
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from smtestbed.proto import wan
from smtestbed.services._runtime import process, tls
from smtestbed.services._runtime.testing import (
    endpoint_env,
    free_port,
    random_endpoints,
    service_process,
)
from smtestbed.services.ca.access import Requester
from smtestbed.services.ca.authority import Authority
from smtestbed.services.ca.config import DEFAULT_PASSPHRASE
from smtestbed.services.campaigns import gateway_lmn
from smtestbed.services.campaigns.ca_http import make_csr
from smtestbed.services.campaigns.crashes import HANG, CrashBook
from smtestbed.services.campaigns.fuzz_report import FuzzReport
from smtestbed.services.campaigns.mutation_engine import Budget
from smtestbed.services.campaigns.mutator import Mutator

GATEWAY_NAME = "gw0.smgw.test.example"
GWA_NAME = "gwa1.emt.test.example"
CHANGING = frozenset({"add_meter", "remove_meter", "assign_taf", "push_update", "taf6_readout"})
"""Operations that may change the registry or the store when they succeed."""
ODD_VALUES: tuple[Any, ...] = (
    None, True, -1, 0, 2**64, 1e308, float("nan"), "", "x" * 300, "31000001", "gw0",
    "../gw0", "\u0000", [], {}, [1, "a"], {"a": {"b": []}}, "AAAA", "!!notbase64",
)  # fmt: skip
PARAM_NAMES = (
    "gateway", "meter", "manufacturer", "key", "security", "replace", "taf", "log",
    "limit", "digest", "bundle", "consumer", "tariff", "since", "until", "t_from",
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """An end entity's files: certificate, key and the CA certificate that issued it."""

    cert: Path
    key: Path
    chain: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class Pki:
    """The campaign's SM-PKI: root, CRL files, the gateway's and the GWA's identities."""

    root: Path
    crls: tuple[Path, ...]
    gateway: Identity
    gwa: Identity


def _issue(authority: Authority, folder: Path, profile: str, name: str, secret: int) -> Identity:
    key = ec.derive_private_key(secret, ec.BrainpoolP256R1())
    token = authority.create_token(profile=profile, subject=name)
    csr = make_csr(name, secret).public_bytes(serialization.Encoding.PEM)
    issued = authority.issue(csr, profile, Requester(token=token))
    stem = folder / name.split(".")[0]
    paths = tuple(stem.with_suffix(s) for s in (".pem", ".key", ".chain.pem"))
    paths[0].write_bytes(issued.certificate.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    paths[2].write_bytes(issued.chain[0].public_bytes(serialization.Encoding.PEM))
    return Identity(cert=paths[0], key=paths[1], chain=paths[2])


def make_pki(folder: Path) -> Pki:
    """Create a CA directory under ``folder``; issue the gateway's and the GWA's certificates."""
    ca_dir = folder / "ca"
    authority = Authority.create(
        ca_dir, DEFAULT_PASSPHRASE.encode(), base_url="http://ca.test.example:8480"
    )
    try:
        gateway = _issue(authority, folder, "smgw-tls", GATEWAY_NAME, 0x6A7E_0001)
        gwa = _issue(authority, folder, "gwa-tls", GWA_NAME, 0x6A7E_0002)
    finally:
        authority.close()
    crls = tuple(ca_dir / "crl" / f"{n}.crl.pem" for n in ("root", "smgw", "emt"))
    return Pki(root=ca_dir / "certs" / "root.pem", crls=crls, gateway=gateway, gwa=gwa)


def _toml(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    return repr(value)


def write_config(folder: Path, pki: Pki, port: int) -> Path:
    """Write the gateway's TOML config: WAN endpoint on ``port``, registry of gateway_lmn."""
    gateway_lmn.write_registry(folder / "registry.csv")
    settings: dict[str, Any] = {
        "data_dir": str(folder / "data"),
        "input_endpoint": f"tcp://127.0.0.1:{free_port()}",
        "registry_file": str(folder / "registry.csv"),
        "synchronous": "NORMAL",
        "heartbeat_s": 0.2,
        "clock_mode": "stepped",
        "clock_start": gateway_lmn.T0,
        "wan_listen": f"127.0.0.1:{port}",
        "wan_cert": str(pki.gateway.cert),
        "wan_key": str(pki.gateway.key),
        "wan_chain": [str(pki.gateway.chain)],
        "wan_trust": [str(pki.root)],
        "wan_crls": [str(p) for p in pki.crls],
    }
    path = folder / "gateway.toml"
    body = "\n".join(f"{k} = {_toml(v)}" for k, v in settings.items())
    path.write_text(f"[gateway]\n{body}\n", encoding="utf-8")
    return path


@dataclass(frozen=True, slots=True, kw_only=True)
class Bed:
    """The gateway process of a campaign, its WAN port and the GWA's TLS context."""

    port: int
    proc: process.Popen
    log_path: Path
    context: ssl.SSLContext


@contextlib.contextmanager
def gwa_bed(folder: Path) -> Iterator[Bed]:
    """Start a broker and a gateway with a WAN endpoint on loopback ports."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    pki, endpoints, port = make_pki(folder), random_endpoints(), free_port()
    config, log_path = write_config(folder, pki, port), folder / "gateway.log"
    env = {**endpoint_env(endpoints), "SMTB_COMMON_LOG_FORMAT": "json"}
    gwa = pki.gwa
    context = tls.client_context(gwa.cert, gwa.key, [gwa.chain], [pki.root], pki.crls)
    with (
        service_process("broker", endpoints, log_path=folder / "broker.log"),
        log_path.open("ab") as out,
    ):
        argv = process.service_argv("gateway", "--config", str(config))
        proc = process.spawn(argv, env=env, ready_timeout=30.0, stdout=out, stderr=out)
        try:
            yield Bed(port=port, proc=proc, log_path=log_path, context=context)
        finally:
            process.stop(proc, timeout=5.0)


def seed_requests() -> list[dict[str, Any]]:
    """Return well-formed requests of every operation (most refused for their params)."""
    meter = f"{gateway_lmn.METERS[0]:08x}"
    return [
        {"id": 1, "op": "status", "params": {"digest": True}},
        {"id": 2, "op": "list_meters", "params": {}},
        {"id": 3, "op": "read_log", "params": {"log": "system", "limit": 5}},
        {"id": 4, "op": "add_meter", "params": {"meter": "zz", "manufacturer": "EMH"}},
        {"id": 5, "op": "remove_meter", "params": {"meter": "99999999"}},
        {"id": 6, "op": "assign_taf", "params": {"meter": meter, "taf": 99}},
        {"id": 7, "op": "taf6_readout", "params": {"meter": "00000000"}},
        {"id": 8, "op": "push_update", "params": {"bundle": "!!"}},
        {"id": 9, "op": "reboot", "params": {}},
    ]


def frame(message: Any) -> bytes:
    """Return ``message`` as a frame (NaN allowed: the gateway must refuse it)."""
    body = json.dumps(message, separators=(",", ":")).encode()
    return struct.pack(">I", len(body)) + body


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What the gateway must do with an input, by the framing rules of the protocol.

    Attributes:
        ops: per reply due, the operation of its request (None: a frame error reply).
        reusable: the input ended at a frame boundary and the connection stays open.
    """

    ops: tuple[str | None, ...]
    reusable: bool


def plan(data: bytes) -> Plan:
    """Return the replies ``data`` must get and whether its connection can be used again."""
    ops: list[str | None] = []
    pos = 0
    while len(data) - pos >= wan.HEADER:
        try:
            length = wan.frame_length(data[pos : pos + wan.HEADER])
        except wan.FrameError:
            return Plan(ops=(*ops, None), reusable=False)
        if len(data) - pos - wan.HEADER < length:
            break  # the gateway waits for the rest of the body
        body = data[pos + wan.HEADER : pos + wan.HEADER + length]
        pos += wan.HEADER + length
        try:
            ops.append(wan.decode_request(body).op)
        except wan.FrameError:
            return Plan(ops=(*ops, None), reusable=False)
    return Plan(ops=tuple(ops), reusable=pos == len(data))


class FrameMaker:
    """Derive frames from the seed requests with one seeded generator."""

    def __init__(self, *, seed: int) -> None:
        self.seeds = [frame(m) for m in seed_requests()]
        self.mutator = Mutator(self.seeds, seed=seed)
        self.rng = self.mutator.rng

    def request(self) -> dict[str, Any]:
        """Return a request of a (mostly known) operation with odd parameter values."""
        rng = self.rng
        names = rng.sample(PARAM_NAMES, rng.randint(0, 4))
        op = rng.choice((*wan.OPS, "", "STATUS", "status "))
        ident = rng.choice((1, 1, 1, 0, 2**63, -1, "1", None))
        return {"id": ident, "op": op, "params": {n: rng.choice(ODD_VALUES) for n in names}}

    def next(self) -> bytes:
        """Return the next input: one or two frames, bytes mutated or not."""
        rng = self.rng
        data = frame(self.request()) if rng.random() < 0.5 else rng.choice(self.seeds)
        if rng.random() < 0.6:
            data = Mutator([data, *self.seeds], seed=rng.randrange(2**32)).next()
        if rng.random() < 0.1:
            data += rng.choice(self.seeds)  # pipelined: the second must be answered too
        return data


@dataclass(slots=True)
class Connection:
    """One open TLS connection to the WAN endpoint."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def reply(self, timeout: float) -> wan.Reply:
        """Read one reply frame."""
        header = await asyncio.wait_for(self.reader.readexactly(wan.HEADER), timeout)
        body = await asyncio.wait_for(self.reader.readexactly(wan.frame_length(header)), timeout)
        return wan.decode_reply(body)

    async def call(self, op: str, params: dict[str, Any], timeout: float) -> Any:
        """Send one request and return its result (FrameError: refused)."""
        self.writer.write(wan.encode({"id": 1, "op": op, "params": params}))
        await self.writer.drain()
        answer = await self.reply(timeout)
        if not answer.ok:
            raise wan.FrameError(f"{op}: {answer.error} ({answer.field})")
        return answer.result

    async def close(self) -> None:
        """Close the connection (errors of a connection already gone ignored)."""
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)


async def connect(bed: Bed) -> Connection:
    """Open a connection with the GWA certificate."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(
            "127.0.0.1", bed.port, ssl=bed.context, server_hostname=GATEWAY_NAME
        ),
        10.0,
    )
    return Connection(reader, writer)


async def snapshot(probe: Connection) -> dict[str, Any]:
    """Return the registry (``list_meters``) and the store digest of ``gw0``."""
    status = await probe.call("status", {"digest": True}, 10.0)
    meters = await probe.call("list_meters", {}, 10.0)
    return {"store_digest": status["store_digest"], "meters": meters}


class GwaCampaign:
    """Send mutated frames with the GWA certificate (see the module docstring)."""

    def __init__(self, bed: Bed, probe: Connection, *, seed: int) -> None:
        self.bed, self.probe = bed, probe
        self.maker = FrameMaker(seed=seed)
        self.conn: Connection | None = None
        self.inputs = self.replies = self.refused = self.accepted = self.changed = 0
        self.reconnects = 0

    async def send(self, data: bytes, limit_s: float) -> tuple[str, str, bool]:
        """Send one input; return (crash kind, message, may_change) after its replies."""
        if self.conn is None:
            self.conn, self.reconnects = await connect(self.bed), self.reconnects + 1
        due = plan(data)
        self.conn.writer.write(data)
        may_change = False
        try:
            await self.conn.writer.drain()
            for op in due.ops:
                answer = await self.conn.reply(limit_s)
                kind, message = self._check(op, answer)
                if kind:
                    return kind, message, True
                may_change |= answer.ok and op in CHANGING
        except TimeoutError:
            return HANG, f"reply {self.replies} not there within {limit_s} s", True
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
            return "ConnectionDropped", repr(exc)[:300], True
        finally:
            if not due.reusable or (self.conn is not None and self.conn.reader.at_eof()):
                await self._drop()
        return "", "", may_change

    def _check(self, op: str | None, answer: wan.Reply) -> tuple[str, str]:
        self.replies += 1
        if answer.ok:
            self.accepted += 1
            return ("", "") if op is not None else ("BadReply", "a malformed frame answered ok")
        self.refused += 1
        if op is None and (answer.id, answer.field) != (0, "frame"):
            return "BadReply", f"frame error answered {answer.to_map()}"
        return "", ""

    async def _drop(self) -> None:
        if self.conn is not None:
            await self.conn.close()
            self.conn = None

    async def fuzz(self, budget: Budget, book: CrashBook) -> None:
        """Send inputs until the budget is spent or the gateway is gone."""
        limit = max(budget.per_input_s, 2.0)
        state = await snapshot(self.probe)
        start = time.monotonic()
        while not budget.exhausted(start, self.inputs) and self.bed.proc.poll() is None:
            data = self.maker.next()
            self.inputs += 1
            kind, message, may_change = await self.send(data, limit)
            if kind:
                if self.bed.proc.poll() is not None:
                    kind = "ServiceExited"
                book.record(kind, "gwa session", message, data)
                await self._drop()
                continue
            after = await snapshot(self.probe)
            if after != state and not may_change:
                self.changed += 1
                book.record("StateChanged", "gwa refused", "registry or store changed", data)
            state = after
        await self._drop()


async def _campaign(bed: Bed, budget: Budget, book: CrashBook, seed: int) -> dict[str, Any]:
    probe = await connect(bed)
    try:
        before = await snapshot(probe)
        campaign = GwaCampaign(bed, probe, seed=seed)
        start = time.monotonic()
        await campaign.fuzz(budget, book)
        seconds = time.monotonic() - start
        alive = bed.proc.poll() is None
        after = await snapshot(probe) if alive else {}
    finally:
        await probe.close()
    logged = "Traceback" in bed.log_path.read_text(errors="replace")
    return {
        "seconds": seconds,
        "inputs": campaign.inputs,
        "alive": alive and not logged,
        "replies": campaign.replies,
        "refused": campaign.refused,
        "accepted": campaign.accepted,
        "connections": campaign.reconnects,
        "unchanged": campaign.changed == 0,
        "digest_before": before["store_digest"],
        "digest_after": after.get("store_digest"),
        "meters_before": len(before["meters"]),
        "meters_after": len(after["meters"]) if after else None,
    }


def fuzz_gwa(budget: Budget, *, seed: int, out: Path) -> FuzzReport:
    """Run the GWA interface campaign; return its report (``gateway`` holds the proof)."""
    book = CrashBook("gwa", out / "crashes")
    with gwa_bed(out / "gwa") as bed:
        result = asyncio.run(_campaign(bed, budget, book, seed))
    return FuzzReport(
        target="gwa",
        engine="mutator",
        seed=seed,
        seconds=float(result.pop("seconds")),
        inputs=int(result.pop("inputs")),
        corpus=len(seed_requests()),
        crashes=book.unique(),
        hangs=[c for c in book.crashes.values() if c.kind == HANG],
        gateway=result,
    )
