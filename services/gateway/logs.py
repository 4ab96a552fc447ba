"""The gateway's logs: append-only, hash-chained, every entry signed.

Three kinds per gateway instance (a :class:`LogSet`): the system log (read by
the GWA), one consumer log per consumer, and the calibration log (legally
relevant events, PTB-A 50.8).

File format and verification: :mod:`smtestbed.services.gateway.logchain`.

Durability: an append is one ``write(2)`` on an ``O_APPEND`` descriptor, so
the entry is with the OS when :meth:`SignedLog.append` returns and survives
a crash of the process; ``fsync`` happens on :meth:`SignedLog.sync` (call it
once per batch, e.g. with the store's commit) and on close.

A hash chain cannot show that entries were cut off the end; whoever needs
that keeps the last ``hash`` (:attr:`SignedLog.head`) elsewhere.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from hashlib import sha256
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Self

from smtestbed.services.gateway.keys import SigningKey
from smtestbed.services.gateway.logchain import (
    GENESIS_KIND,
    KIND,
    ZERO_HASH,
    Entry,
    Location,
    LogError,
    LogTamperedError,
    MalformedLineError,
    Problem,
    VerifyResult,
    canonical,
    check_entry,
    parse_line,
    read_entries,
    split_line,
    verify,
)

__all__ = [
    "GENESIS_KIND",
    "ZERO_HASH",
    "Entry",
    "Location",
    "LogError",
    "LogSet",
    "LogTamperedError",
    "Problem",
    "SignedLog",
    "VerifyResult",
    "canonical",
    "read_entries",
    "verify",
]

_CONSUMER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_TAIL_BLOCK = 4096


def _last_line(file: BinaryIO) -> bytes:
    """Return the file's last line (with its newline, if any); b"" for an empty file."""
    pos = file.seek(0, os.SEEK_END)
    buf = b""
    while pos > 0:
        step = min(_TAIL_BLOCK, pos)
        pos -= step
        file.seek(pos)
        buf = file.read(step) + buf
        cut = buf.rfind(b"\n", 0, len(buf) - 1)
        if cut >= 0:
            return buf[cut + 1 :]
    return buf


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class SignedLog:
    """One append-only, hash-chained, signed log file.

    Opening a new (or empty) file writes the ``log_created`` entry; opening an
    existing one verifies its first and last entries under ``key`` and
    continues the chain. The file is locked (``flock``) against a second
    writer for as long as it is open. Appends are thread-safe. ``sign`` signs an
    entry's digest with ``key`` somewhere else (the store writer process); by
    default ``key.sign`` does.

    Raises:
        LogTamperedError: the first or last entry does not verify, or the
            file belongs to another log.
        LogError: the file cannot be opened or is open in another writer.
    """

    def __init__(
        self,
        path: Path,
        key: SigningKey,
        *,
        log_name: str,
        wall_clock: Callable[[], float] = time.time,
        sign: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.path = path
        self.key = key
        self._sign = key.sign if sign is None else sign
        self.log_name = log_name
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._broken = ""
        self._fd = _open_locked(path)
        try:
            self._seq, self._prev = self._resume()
            if self._seq == 0:
                genesis = {"log": log_name, "curve": key.curve, "key": key.fingerprint}
                self.append(GENESIS_KIND, genesis, t_sim=0.0)
        except BaseException:
            os.close(self._fd)
            self._fd = -1
            raise

    @property
    def next_seq(self) -> int:
        """The sequence number the next append gets."""
        return self._seq

    @property
    def head(self) -> str:
        """The hash of the last entry (64 zeros before the first)."""
        return self._prev

    def append(self, kind: str, fields: Mapping[str, object], *, t_sim: float) -> Entry:
        """Sign and append one entry; it is written through to the OS on return.

        Args:
            kind: snake_case event name.
            fields: a JSON object (str keys; str, int, finite float, bool, None,
                lists and objects of those).
            t_sim: simulation time of the event, s.

        Raises:
            LogError: bad kind, fields or t_sim; the log is closed; or the write
                failed (the log then refuses further appends).
        """
        with self._lock:
            if self._fd < 0 or self._broken:
                raise LogError(f"{self.path}: log is {self._broken or 'closed'}")
            entry, line = self._make(kind, fields, t_sim)
            try:
                _write_all(self._fd, line)
            except OSError as exc:
                self._broken = f"broken by a failed write ({exc.strerror})"
                raise LogError(f"{self.path}: cannot append: {exc.strerror}") from exc
            self._seq, self._prev = entry.seq + 1, entry.hash
            return entry

    def entries(self) -> Iterator[Entry]:
        """Yield the entries in file order (unverified; see :func:`verify`)."""
        return read_entries(self.path)

    def sync(self) -> None:
        """Force appended entries to stable storage (``fsync``)."""
        with self._lock:
            if self._fd >= 0:
                os.fsync(self._fd)

    def close(self) -> None:
        """Sync, unlock and close the file; further appends raise LogError."""
        with self._lock:
            if self._fd >= 0:
                try:
                    os.fsync(self._fd)
                finally:
                    os.close(self._fd)
                    self._fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _make(self, kind: str, fields: Mapping[str, object], t_sim: float) -> tuple[Entry, bytes]:
        """Return the signed entry and its line (canonical JSON and newline)."""
        if not isinstance(kind, str) or not KIND.match(kind):
            raise LogError(f"log kind must be a snake_case name, got {kind!r}")
        if (
            isinstance(t_sim, bool)
            or not isinstance(t_sim, int | float)
            or not math.isfinite(t_sim)
        ):
            raise LogError(f"t_sim must be a finite number of seconds, got {t_sim!r}")
        try:
            stored, text = _stored_fields(fields)
        except (TypeError, ValueError) as exc:
            raise LogError(f"log fields of {kind} are not canonical JSON: {exc}") from exc
        seq, prev, t_sim = self._seq, self._prev, float(t_sim)
        t_wall = float(self._wall_clock())
        # The canonical JSON of body() and of the whole entry, keys in sorted order, put
        # together around the one encoding of the fields.
        tail = b'"kind":"%s","prev":"%s","seq":%d' % (kind.encode(), prev.encode(), seq)
        times = b'"t_sim":%s,"t_wall":%s}' % (canonical(t_sim), canonical(t_wall))
        digest = sha256(b'{"fields":%s,%s,%s' % (text, tail, times)).digest()
        entry = Entry(
            seq=seq,
            t_sim=t_sim,
            t_wall=t_wall,
            kind=kind,
            fields=stored,
            prev=prev,
            hash=digest.hex(),
            sig=self._sign(digest).hex(),
        )
        line = b'{"fields":%s,"hash":"%s",%s,"sig":"%s",%s\n' % (
            text,
            entry.hash.encode(),
            tail,
            entry.sig.encode(),
            times,
        )
        return entry, line

    def _resume(self) -> tuple[int, str]:
        """Check the first and last entries; return (next seq, last hash)."""
        with self.path.open("rb") as file:
            first = file.readline()
            last = _last_line(file)
        if not first:
            return 0, ZERO_HASH
        head = self._trusted(first, "first")
        fields = head.fields
        if head.seq != 0 or head.kind != GENESIS_KIND or fields.get("log") != self.log_name:
            raise LogTamperedError(
                f"{self.path}: not log {self.log_name!r} (first entry: seq {head.seq}, "
                f"{head.kind}, log {fields.get('log')!r})"
            )
        tail = self._trusted(last, "last")
        return tail.seq + 1, tail.hash

    def _trusted(self, raw: bytes, which: str) -> Entry:
        try:
            body = split_line(raw)
            entry = parse_line(body)
        except MalformedLineError as exc:
            raise LogTamperedError(f"{self.path}: {which} entry: {exc}; not appending") from exc
        found = check_entry(body, entry, self.key.public_key)
        if found is not None:
            problem, detail = found
            raise LogTamperedError(
                f"{self.path}: {which} entry (seq {entry.seq}) {problem}: {detail}; not appending"
            )
        return entry


class _UnsortedKeysError(ValueError):
    """Internal: an object's keys were not in canonical order once encoded as text."""


def _sorted_object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [key for key, _ in pairs]
    if any(a >= b for a, b in itertools.pairwise(keys)):
        raise _UnsortedKeysError
    return dict(pairs)


def _stored_fields(fields: Mapping[str, object]) -> tuple[dict[str, Any], bytes]:
    """Return the fields as a verifier parses them back, and their canonical JSON.

    The round trip stores exactly what a verifier will parse back. One encoding is enough
    when every object came out with its keys strictly ascending: then the text is also the
    canonical JSON of what it parses to. Keys that were not strings (sorted before they
    became strings) or that collide as strings take a second encoding of the parsed value.

    Raises:
        TypeError, ValueError: the fields are not encodable as canonical JSON.
    """
    text = canonical(dict(fields))
    try:
        return json.loads(text, object_pairs_hook=_sorted_object), text
    except _UnsortedKeysError:
        stored = json.loads(text)
        return stored, canonical(stored)


def _open_locked(path: Path) -> int:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise LogError(f"{path}: cannot open log: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LogError(f"{path}: log is open for writing elsewhere") from None
    return fd


class LogSet:
    """The logs of one gateway instance, all signed with its key.

    Files in ``folder``: ``system.jsonl``, ``calibration.jsonl`` and
    ``consumer-<id>.jsonl`` (log names ``system``, ``calibration``,
    ``consumer-<id>``). Consumer logs are opened on first use. ``sign`` is passed on
    to every log (see :class:`SignedLog`).
    """

    def __init__(
        self,
        folder: Path,
        key: SigningKey,
        *,
        wall_clock: Callable[[], float] = time.time,
        sign: Callable[[bytes], bytes] | None = None,
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.key = key
        self._wall_clock = wall_clock
        self._sign = sign
        self._consumers: dict[str, SignedLog] = {}
        self.system = self._open("system")
        try:
            self.calibration = self._open("calibration")
        except BaseException:
            self.system.close()
            raise

    def consumer(self, consumer_id: str) -> SignedLog:
        """Return the consumer's log, creating it on first use.

        Raises:
            LogError: the id is not 1-64 characters of letters, digits, ``._-``
                starting with a letter or digit (it names a file).
        """
        log = self._consumers.get(consumer_id)
        if log is None:
            if not _CONSUMER_ID.match(consumer_id):
                raise LogError(f"consumer id {consumer_id!r} is not a valid log name")
            log = self._consumers[consumer_id] = self._open(f"consumer-{consumer_id}")
        return log

    def consumer_ids(self) -> list[str]:
        """Return the ids of all consumers with a log file, sorted."""
        stems = (p.stem for p in self.folder.glob("consumer-*.jsonl"))
        return sorted(s.removeprefix("consumer-") for s in stems)

    def logs(self) -> list[SignedLog]:
        """Return the open logs: system, calibration, then consumers in opening order."""
        return [self.system, self.calibration, *self._consumers.values()]

    def sync(self) -> None:
        """``fsync`` every open log (once per batch)."""
        for log in self.logs():
            log.sync()

    def close(self) -> None:
        """Close every open log."""
        for log in self.logs():
            log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _open(self, name: str) -> SignedLog:
        path = self.folder / f"{name}.jsonl"
        return SignedLog(
            path, self.key, log_name=name, wall_clock=self._wall_clock, sign=self._sign
        )
