"""Helpers of the gateway integration tests: frames, received batches, processes, keys, the CLI.

Everything here is real: frames come from the wM-Bus encoder, batches travel over ZeroMQ
PUSH/PULL, services run as processes and the CLI as ``smtb``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zmq.asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from smtestbed.proto import topics
from smtestbed.proto.batch import FrameBatch
from smtestbed.proto.records import DataType, new_record
from smtestbed.proto.wmbus import MeterAddress, encode_telegram, new_telegram
from smtestbed.services._runtime import process
from smtestbed.services._runtime.bus import BatchPusher, Endpoints, Event, Subscription
from smtestbed.services._runtime.client import BusClient
from smtestbed.services._runtime.testing import endpoint_env, service_process, wait_for_event

SMTB = str(Path(sys.executable).with_name("smtb"))
EMH = 0x15A8  # manufacturer code of "EMH" (FLAG)
KEY = bytes(range(16))
OTHER_KEY = bytes(range(1, 17))
DAY_S = 86_400
T0 = 19_676 * DAY_S  # 2023-11-15 00:00 UTC: simulation time of the service tests, s


def records(energy: float = 123_456, power: float = 1500) -> bytes:
    """Return an energy (Wh) and a power (W) record, both INT32."""
    return b"".join(
        new_record(quantity=q, unit=u, value=v, data_type=DataType.INT32).to_bytes()
        for q, u, v in (("energy", "Wh", energy), ("power", "W", power))
    )


def wmbus_frame(
    meter: str,
    *,
    access: int,
    energy: float = 123_456,
    mode: int = 5,
    key: bytes = KEY,
    counter: int = 0,
    apl: bytes | None = None,
) -> bytes:
    """Return an on-air format A frame of meter ``meter`` (8 digits, EMH), sealed with ``key``."""
    telegram = new_telegram(
        address=MeterAddress(manufacturer=EMH, ident=int(meter, 16), version=1, device_type=2),
        records=records(energy) if apl is None else apl,
        access_number=access,
        security_mode=mode,
        counter=counter,
    )
    return encode_telegram(telegram, key=key if mode else None)


def received_batch(
    frames: Sequence[bytes], t_rx: Sequence[float], receivers: Sequence[str] = ("gw0",)
) -> FrameBatch:
    """Return a ``sim.received`` batch as the channel sends it, every frame heard by receiver 0."""
    n = len(frames)
    columns = {
        "receiver": np.zeros(n, dtype=np.uint16),
        "t_rx": np.asarray(t_rx, dtype=np.float64),
        "rssi_dbm": np.full(n, -70.0, dtype=np.float32),
        "meter": np.arange(n, dtype=np.uint32),
        "bit_errors": np.zeros(n, dtype=np.uint16),
    }
    return FrameBatch.from_frames(list(frames), {"receivers": list(receivers)}, columns)


@contextlib.asynccontextmanager
async def lmn_pusher(endpoint: str) -> AsyncIterator[BatchPusher]:
    """Open a PUSH socket to a gateway's LMN input (as the channel does)."""
    ctx = zmq.asyncio.Context()
    pusher = BatchPusher(ctx, endpoint, src="channel")
    try:
        yield pusher
    finally:
        pusher.close()
        ctx.term()


async def feed(
    pusher: BatchPusher, frames: Sequence[bytes], t_rx: Sequence[float], *, t_sim: float = T0
) -> None:
    """Send one received batch of ``frames`` heard at ``t_rx`` (s)."""
    await pusher.send(received_batch(frames, t_rx), t_sim=t_sim, kind=topics.RECEIVED_BATCH)


async def gw(client: BusClient, method: str, params: Any = None) -> Any:
    """Send a gateway request and return its reply."""
    return await client.request("gateway", method, params, timeout=10.0)


SYNC_METER = "19000000"


async def gateway_events(client: BusClient, *also: str, timeout: float = 10.0) -> Subscription:
    """Return a subscription to ``gateway.`` events (and the ``also`` prefixes, e.g.
    ``han.``) that the gateway is known to reach.

    The broker's welcome only says the broker has the subscription; the gateway's PUB
    socket learns of it a moment later and drops events published before. So the
    subscriber (re-)registers SYNC_METER until one ``gateway.meter_changed`` for it
    arrives: from then on every gateway event reaches this subscription.
    """
    sub = client.subscribe(["gateway.", *also])
    await sub.wait_connected()
    params = {"meter": SYNC_METER, "manufacturer": "EMH", "key": KEY.hex(), "replace": True}
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        await gw(client, topics.GATEWAY_ADD_METER, params)
        try:
            await next_event(sub, topics.GATEWAY_METER_CHANGED, 0.3, meter=SYNC_METER)
            return sub
        except TimeoutError:
            if asyncio.get_running_loop().time() > deadline:
                raise


async def next_event(sub: Subscription, kind: str, timeout: float = 10.0, **body: Any) -> Event:
    """Return the next event of ``kind`` whose body has the given items."""
    return await wait_for_event(
        sub,
        lambda e: e.kind == kind and all(e.body.get(k) == v for k, v in body.items()),
        timeout=timeout,
    )


@contextlib.contextmanager
def gateway_process(
    endpoints: Endpoints,
    data_dir: Path,
    input_endpoint: str,
    *,
    log_path: Path,
    **settings: Any,
) -> Iterator[process.Popen]:
    """Run ``smtb gateway run`` on ``data_dir`` with its LMN input bound at ``input_endpoint``."""
    base = {
        "data_dir": str(data_dir),
        "input_endpoint": input_endpoint,
        "synchronous": "NORMAL",
        "heartbeat_s": 0.2,
        "clock_mode": "stepped",
        "clock_start": T0,
    }
    with service_process(
        "gateway", endpoints, settings={**base, **settings}, log_path=log_path
    ) as proc:
        yield proc


@contextlib.contextmanager
def configured_process(
    service: str, endpoints: Endpoints, config: Path, log_path: Path
) -> Iterator[process.Popen]:
    """Run ``smtb <service> run --config CONFIG`` until the block ends."""
    env = {**endpoint_env(endpoints), "SMTB_COMMON_LOG_FORMAT": "json"}
    with log_path.open("ab") as out:
        proc = process.spawn(
            process.service_argv(service, "--config", str(config)),
            env=env,
            ready_timeout=30.0,
            stdout=out,
            stderr=out,
        )
        try:
            yield proc
        finally:
            process.stop(proc, timeout=5.0)


def smtb(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run the ``smtb`` command line and return its result."""
    return subprocess.run(
        [SMTB, *args], capture_output=True, text=True, timeout=timeout, env=dict(os.environ)
    )


def write_key_pair(folder: Path, name: str) -> tuple[ec.EllipticCurvePrivateKey, Path, Path]:
    """Create a brainpoolP256r1 key; return it and the paths of its private and public PEM."""
    key = ec.generate_private_key(ec.BrainpoolP256R1())
    private = folder / f"{name}.pem"
    public = folder / f"{name}.pub.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key, private, public


def write_registry(path: Path, rows: Sequence[Mapping[str, str]]) -> None:
    """Write a registry CSV (``gateway,meter,manufacturer,key_hex,security,tafs,consumer,emt``)."""
    fields = ("gateway", "meter", "manufacturer", "key_hex", "security", "tafs", "consumer", "emt")
    lines = [",".join(fields)] + [",".join(row[f] for f in fields) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def tree(root: Path) -> dict[str, bytes | str]:
    """Return every file (contents) and link (target) under ``root`` by relative path."""
    out: dict[str, bytes | str] = {}
    if not root.exists():
        return out
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = os.readlink(path)
        elif path.is_file():
            out[rel] = path.read_bytes()
    return out
