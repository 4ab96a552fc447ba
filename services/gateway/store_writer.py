"""A child process that writes the gateway stores' reading batches.

Measurement processing and the writing of its rows are the two large parts of an ingest,
and in one process they share one GIL: the ``sqlite3`` module lets go of it for every row,
but the processing thread takes it straight back. With a :class:`StoreWriter` the gateway
process prepares each batch (the reading rows, the value rows, the meter-state checkpoint
when due, all computed by :class:`~smtestbed.services.gateway.store.Store`) and this child
process runs the transaction: ``BEGIN IMMEDIATE``, the inserts, ``COMMIT`` (with the WAL
sync of the store's ``synchronous`` level). So processing and writing run on two cores.

What a batch may count on does not change: the gateway announces a reading only after the
child has answered that its transaction committed. The child keeps one connection per
store file and runs a store's requests one at a time, in the order they arrive (see
:class:`_Lane`). It also signs the gateway's log entries with the instance's key
(:class:`RemoteSigner`), so that the signatures take its CPU, not the gateway's.

Protocol (a ``socketpair`` inherited by the child): each frame is a 12-byte header, the
request id (u64) and the body length (u32), then a msgpack body. Requests:
``["write", path, synchronous, first, fresh, rows, values, checkpoint]`` and
``["close", path]`` and ``["sign", key_path, digest]`` (a log entry's signature with a
gateway instance's key, see :class:`RemoteSigner`); answers ``["ok", value]`` or
``["error", message]``. The store gives a batch's readings the ids ``first, first + 1,
...`` (its value rows carry them) and hands the next batch over before this one is
written: ``first`` is then this batch's ``first`` plus its row count, and the writer
refuses a batch that does not follow the last one it wrote (an earlier batch failed, so
the ids it counted on are not there).
``fresh`` marks a batch after the store read the next id from the file: it has to follow
the file. ``write`` answers the positions of rows whose frame digest was stored before:
those rows and their values are left out (as :meth:`Store.commit_batch` does), and so is
the checkpoint of this batch and of the store's later batches up to the next ``fresh`` one
(the store planned their meter states with the copies in them; it reads the states from
the file again and writes the checkpoint later). The child ends when
the gateway closes its end of the socket, also when the gateway process is killed; a
transaction under way then still commits or rolls back as a whole.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future
from typing import Any

import msgpack
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from smtestbed.services._runtime.cpus import format_cpus, parse_cpus, pin_threads
from smtestbed.services._runtime.heap import settle_heap
from smtestbed.services.gateway.store_sql import (
    INSERT_FRESH,
    INSERT_VALUE,
    NEXT_ID,
    SET_CHECKPOINT,
    UPSERT_STATE,
)

__all__ = [
    "RemoteSigner",
    "StoreWriter",
    "WriterError",
    "WriterLostError",
    "encode_sign",
    "encode_write",
]

_MODULE = "smtestbed.services.gateway.store_writer"
_HEADER = struct.Struct("!QI")
_MAX_BODY = 1 << 31
_CLOSE_TIMEOUT = 30.0
LANES = 4
"""Writer threads; each store file is written by one of them (see :class:`_Lane`)."""
SIGNING_LANES = 2
"""Threads that sign log entries (by key; the signature lets go of the GIL)."""
CACHE_KIB = 16384
"""Page cache per store connection: the two unique indexes and the meter/time index take
rows all over their B-trees, and a batch touches fewer pages than SQLite's default 2 MiB
cache would have to read back from the OS."""


class WriterError(Exception):
    """The writer refused or failed a request; nothing of it was written."""


class WriterLostError(WriterError):
    """The writer process ended before answering: whether the request committed is unknown."""


def encode_write(
    path: str,
    synchronous: str,
    first: int,
    fresh: bool,
    rows: Sequence[tuple[Any, ...]],
    values: Sequence[tuple[Any, ...]],
    checkpoint: Sequence[tuple[Any, ...]] | None,
) -> bytes:
    """Return the body of a ``write`` request.

    Args:
        path: the store file.
        synchronous: its ``PRAGMA synchronous`` level (``FULL`` or ``NORMAL``).
        first: the id of the first reading (the next free id, as the store counts).
        fresh: ``first`` was read from the file (not counted on from the last batch).
        rows: the reading rows without id, in batch order (ids ``first``, ``first + 1``...).
        values: the value rows, with those reading ids.
        checkpoint: the ``meter_state`` rows to write with the batch, None when not due
            (the checkpoint then names the batch's last reading).
    """
    body: bytes = msgpack.packb(
        ["write", path, synchronous, first, fresh, rows, values, checkpoint],
        use_bin_type=True,
    )
    return body


def encode_sign(key_path: str, digest: bytes) -> bytes:
    """Return the body of a ``sign`` request: an ECDSA signature of a SHA-256 digest with
    the private key in ``key_path`` (a gateway instance's log key)."""
    body: bytes = msgpack.packb(["sign", key_path, digest], use_bin_type=True)
    return body


class RemoteSigner:
    """Signs log-entry digests in the writer process with an instance's key file.

    The signature (brainpool ECDSA, about half a millisecond) then takes the writer's CPU,
    not the gateway's. When the writer cannot answer, ``fallback`` (the key in this
    process) signs instead; the signature is the same kind either way.
    """

    def __init__(
        self, writer: StoreWriter, key_path: str, fallback: Callable[[bytes], bytes]
    ) -> None:
        self._writer = writer
        self._key_path = key_path
        self._fallback = fallback

    def __call__(self, digest: bytes) -> bytes:
        """Return the DER signature of a 32-byte digest."""
        try:
            signature = self._writer.submit(encode_sign(self._key_path, digest)).result()
        except WriterError:
            return self._fallback(digest)
        if not isinstance(signature, bytes):  # pragma: no cover - the writer sends bytes
            return self._fallback(digest)
        return signature


class StoreWriter:
    """The gateway side of the writer process: starts it, sends requests, hands out answers.

    Thread-safe. The process starts with the first request (again after it ended). Each
    request gets a :class:`~concurrent.futures.Future` that a reader thread completes with
    the answer, or with :class:`WriterLostError` when the process ends first.

    Args:
        cpus: the CPUs the process runs on (see :func:`smtestbed.services._runtime.cpus.split`);
            None: wherever the scheduler puts it.
    """

    def __init__(self, cpus: Collection[int] | None = None) -> None:
        self._cpus = None if cpus is None else format_cpus(cpus)
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._pending: dict[int, Future[Any]] = {}
        self._next = 0
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The writer process's pid, None while none runs."""
        with self._lock:
            return None if self._proc is None else self._proc.pid

    @property
    def cpus(self) -> frozenset[int] | None:
        """The CPUs the writer process may run on, None while none runs (or unknown)."""
        pid = self.pid
        if pid is None or not hasattr(os, "sched_getaffinity"):
            return None
        try:
            return frozenset(os.sched_getaffinity(pid))
        except OSError:  # it ended meanwhile
            return None

    def start(self) -> None:
        """Start the process now (else the first request starts it)."""
        with self._lock:
            self._ensure()

    def submit(self, body: bytes) -> Future[Any]:
        """Send one request body; the future completes with the answer's value.

        The future raises :class:`WriterError` for a refused request and
        :class:`WriterLostError` when the process ended before answering.
        """
        future: Future[Any] = Future()
        with self._lock:
            sock = self._ensure()
            rid = self._next
            self._next += 1
            self._pending[rid] = future
        try:
            with self._send_lock:
                sock.sendmsg([_HEADER.pack(rid, len(body)), body])
        except OSError as exc:
            with self._lock:
                lost = self._pending.pop(rid, None)
            if lost is not None:
                lost.set_exception(WriterLostError(f"store writer unreachable: {exc}"))
        return future

    def close_store(self, path: str) -> None:
        """Close the process's connection of one store file (when the process runs)."""
        with self._lock:
            running = self._sock is not None
        if running:
            future = self.submit(msgpack.packb(["close", path], use_bin_type=True))
            # a process gone took its connections along; a slow one closes them at exit
            with contextlib.suppress(WriterError, TimeoutError):
                future.result(timeout=_CLOSE_TIMEOUT)

    def close(self) -> None:
        """Let the process finish what it was sent, close its stores and end."""
        with self._lock:
            self._closed = True
            sock, proc, reader = self._sock, self._proc, self._reader
        if sock is None or proc is None or reader is None:
            return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        reader.join(_CLOSE_TIMEOUT)
        try:
            proc.wait(_CLOSE_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _ensure(self) -> socket.socket:
        """Return the socket to a running process, starting one when needed (under lock)."""
        if self._sock is not None:
            return self._sock
        if self._closed:
            raise WriterLostError("store writer is closed")
        ours, theirs = socket.socketpair()
        try:
            args = [sys.executable, "-m", _MODULE, str(theirs.fileno())]
            proc = subprocess.Popen(
                args if self._cpus is None else [*args, self._cpus],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            ours.close()
            raise WriterLostError(f"cannot start the store writer: {exc}") from exc
        finally:
            theirs.close()
        self._sock, self._proc = ours, proc
        self._reader = threading.Thread(
            target=self._read, args=(ours, proc), name="store-writer", daemon=True
        )
        self._reader.start()
        return ours

    def _read(self, sock: socket.socket, proc: subprocess.Popen[bytes]) -> None:
        """Complete the futures with the answers until the process ends."""
        try:
            while (frame := _recv_frame(sock)) is not None:
                rid, body = frame
                with self._lock:
                    future = self._pending.pop(rid, None)
                if future is None:
                    continue
                status, value = msgpack.unpackb(body)
                if status == "ok":
                    future.set_result(value)
                else:
                    future.set_exception(WriterError(str(value)))
        except (OSError, ValueError):
            pass
        finally:
            try:
                code: int | None = proc.wait(_CLOSE_TIMEOUT)
            except subprocess.TimeoutExpired:
                code = None
            with self._lock:
                if self._sock is sock:
                    self._sock, self._proc, self._reader = None, None, None
                lost, self._pending = self._pending, {}
            sock.close()
            for future in lost.values():
                future.set_exception(
                    WriterLostError(f"store writer process ended (exit code {code})")
                )


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    """Return exactly ``size`` bytes, None at end of stream before the first byte."""
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            if got:
                raise ValueError(f"stream ended inside a frame ({got} of {size} bytes)")
            return None
        got += n
    return bytes(buf)


def _recv_frame(sock: socket.socket) -> tuple[int, bytes] | None:
    header = _recv_exact(sock, _HEADER.size)
    if header is None:
        return None
    rid, size = _HEADER.unpack(header)
    if size > _MAX_BODY:
        raise ValueError(f"frame of {size} bytes")
    body = _recv_exact(sock, size) if size else b""
    if body is None:
        raise ValueError("stream ended after a frame header")
    return rid, body


# -- the child process ----------------------------------------------------------------------


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    if synchronous not in ("FULL", "NORMAL"):
        raise WriterError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
    if not os.path.exists(path):  # the store creates its file; never make an empty one here
        raise WriterError(f"{path}: no such store file")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA synchronous = {synchronous}")
    # The writer inserts value rows only for the readings the same transaction has just
    # inserted (the copies it left out lose their values too), so the reading_values ->
    # readings foreign key holds by construction and its per-row look-up is skipped
    # here; the store's own connection enforces it.
    db.execute("PRAGMA foreign_keys = OFF")
    db.execute("PRAGMA busy_timeout = 5000")
    db.execute(f"PRAGMA cache_size = {-CACHE_KIB}")
    return db


class _Stores:
    """A lane's store connections, the id each store's next batch has to start at, the
    stores whose meter states were planned on copies the writer left out, and the log
    keys it has signed with."""

    def __init__(self) -> None:
        self.dbs: dict[str, sqlite3.Connection] = {}
        self.next: dict[str, int] = {}
        self.tainted: set[str] = set()
        self.keys: dict[str, ec.EllipticCurvePrivateKey] = {}

    def sign(self, key_path: str, digest: bytes) -> bytes:
        """Sign a SHA-256 digest with the key in ``key_path`` (loaded once)."""
        if not isinstance(digest, bytes) or len(digest) != 32:
            raise WriterError("a signature needs a 32-byte SHA-256 digest")
        key = self.keys.get(key_path)
        if key is None:
            with open(key_path, "rb") as file:
                loaded = serialization.load_pem_private_key(file.read(), password=None)
            if not isinstance(loaded, ec.EllipticCurvePrivateKey):
                raise WriterError(f"{key_path}: not an EC private key")
            key = self.keys[key_path] = loaded
        signature: bytes = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        return signature

    def get(self, path: str, synchronous: str) -> sqlite3.Connection:
        db = self.dbs.get(path)
        if db is None:
            db = self.dbs[path] = _connect(path, synchronous)
        return db

    def close(self, path: str) -> None:
        db = self.dbs.pop(path, None)
        self.next.pop(path, None)
        self.tainted.discard(path)
        if db is not None:
            db.close()

    def close_all(self) -> None:
        for path in list(self.dbs):
            self.close(path)


def _write(
    stores: _Stores,
    path: str,
    synchronous: str,
    first: int,
    fresh: bool,
    rows: Sequence[tuple[Any, ...]],
    values: Sequence[tuple[Any, ...]],
    checkpoint: Sequence[tuple[Any, ...]] | None,
) -> list[int]:
    """Write one batch in one transaction; return the positions of copies left out."""
    db = stores.get(path, synchronous)
    expected = None if fresh else stores.next.get(path)
    if expected is not None and first != expected:
        raise WriterError(
            f"{path}: batch from id {first} does not follow the last one written"
            f" (next id {expected}): an earlier batch failed"
        )
    db.execute("BEGIN IMMEDIATE")
    try:
        start = db.execute(NEXT_ID).fetchone()[0]
        if start > first or (expected is None and start != first):
            raise WriterError(f"{path}: batch from id {first}, the file's next id is {start}")
        copies: list[int] = []
        before = db.total_changes
        db.executemany(INSERT_FRESH, [(first + k, *row) for k, row in enumerate(rows)])
        if db.total_changes - before != len(rows):
            copies = _left_out(db, first, len(rows))
            left_out = {first + k for k in copies}
            values = [v for v in values if v[0] not in left_out]
        db.executemany(INSERT_VALUE, values)
        # The store planned the states with the copies in them, this batch's and those
        # of the batches it handed over before it learnt of the copies: no checkpoint
        # until a fresh batch (the store has read the states from the file again).
        tainted = bool(copies) or (not fresh and path in stores.tainted)
        if checkpoint is not None and not tainted:
            db.executemany(UPSERT_STATE, checkpoint)
            db.execute(SET_CHECKPOINT, (first + len(rows) - 1,))
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    stores.next[path] = first + len(rows)
    if tainted:
        stores.tainted.add(path)
    else:
        stores.tainted.discard(path)
    return copies


def _left_out(db: sqlite3.Connection, first: int, count: int) -> list[int]:
    """Return the positions of the rows ``first ... first + count - 1`` that the insert left
    out (``ON CONFLICT (frame_digest) DO NOTHING``): copies of frames stored before or
    earlier in the batch."""
    ids = db.execute(_IDS_IN, (first, first + count)).fetchall()
    present = {row[0] for row in ids}
    return [k for k in range(count) if first + k not in present]


_IDS_IN = "SELECT id FROM readings WHERE id >= ? AND id < ?"


def _handle(stores: _Stores, body: bytes) -> list[Any]:
    """Run one request; return its answer (never raises for a bad request)."""
    try:
        request = msgpack.unpackb(body, use_list=False)
        op, args = request[0], request[1:]
        if op == "write":
            return ["ok", _write(stores, *args)]
        if op == "close":
            stores.close(str(args[0]))
            return ["ok", None]
        if op == "sign":
            key_path, digest = args
            return ["ok", stores.sign(str(key_path), digest)]
        return ["error", f"unknown request {op!r}"]
    except WriterError as exc:
        return ["error", f"{exc}"]
    except sqlite3.Error as exc:
        return ["error", f"transaction failed: {exc}"]
    except Exception as exc:  # a malformed request: answered, never fatal
        return ["error", f"bad request: {type(exc).__name__}: {exc}"]


def _route(body: bytes) -> tuple[str, str]:
    """Return a request's operation and the path it names (its first two items), "" for
    what it does not name.

    Reads only the start of the body: the rows stay undecoded until a lane runs it.
    """
    unpacker = msgpack.Unpacker()
    unpacker.feed(body)
    try:
        if unpacker.read_array_header() < 2:
            return "", ""
        op = unpacker.unpack()
        path = unpacker.unpack()
    except (ValueError, msgpack.OutOfData, msgpack.ExtraData):
        return "", ""
    return (op if isinstance(op, str) else ""), (path if isinstance(path, str) else "")


class _Lane(threading.Thread):
    """One thread of the writer: the stores whose path hashes to it, one request at a time.

    Requests of one store stay in their order (they all go to the same lane); lanes of
    different stores run side by side, so the WAL syncs of different files overlap.
    """

    def __init__(self, send: Callable[[int, bytes], None]) -> None:
        super().__init__(name="lane", daemon=True)
        self.requests: queue.SimpleQueue[tuple[int, bytes] | None] = queue.SimpleQueue()
        self._send = send
        self._stores = _Stores()

    def run(self) -> None:
        try:
            while (item := self.requests.get()) is not None:
                rid, body = item
                self._send(rid, msgpack.packb(_handle(self._stores, body), use_bin_type=True))
        finally:
            self._stores.close_all()


def serve(sock: socket.socket, lanes: int = LANES) -> None:
    """Answer requests until the other end closes; then close every store connection."""
    send_lock = threading.Lock()

    def send(rid: int, answer: bytes) -> None:
        # a gateway that is gone shows as the end of the stream in the loop below
        with send_lock, contextlib.suppress(OSError):
            sock.sendmsg([_HEADER.pack(rid, len(answer)), answer])

    workers = [_Lane(send) for _ in range(max(1, lanes))]
    # signatures never wait behind a store's transaction: lanes of their own, by key
    signing = [_Lane(send) for _ in range(SIGNING_LANES)]
    for lane in (*workers, *signing):
        lane.start()
    try:
        while (frame := _recv_frame(sock)) is not None:
            op, path = _route(frame[1])
            lanes_of_op = signing if op == "sign" else workers
            lanes_of_op[zlib.crc32(path.encode()) % len(lanes_of_op)].requests.put(frame)
    except (OSError, ValueError):
        pass  # the gateway is gone
    finally:
        for lane in (*workers, *signing):
            lane.requests.put(None)
        for lane in (*workers, *signing):
            lane.join()


def main(argv: Sequence[str]) -> int:
    """Entry point of the child: ``python -m ... <socket fd> [<cpus>]``.

    ``cpus`` (``1`` or ``2,3``) are the CPUs the writer runs on; set before any of its
    threads starts, so that they all inherit them (see :mod:`smtestbed.services._runtime.cpus`).
    """
    # Ctrl-C in a terminal reaches the whole process group; the writer ends when the
    # gateway closes the socket, after the gateway has finished its own shut-down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if len(argv) > 2:
        try:
            pin_threads(parse_cpus(argv[2]))
        except (ValueError, OSError) as exc:  # runs on every CPU; the status shows which
            print(f"store writer: CPUs {argv[2]!r} not taken: {exc}", file=sys.stderr)
    # Each batch unpacks into thousands of tuples that reference counting frees.
    settle_heap()
    serve(socket.socket(fileno=int(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
