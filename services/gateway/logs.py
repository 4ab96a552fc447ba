"""The gateway's logs: append-only, hash-chained, every entry signed.

Three kinds per gateway instance (a :class:`LogSet`): the system log (read by
the GWA), one consumer log per consumer, and the calibration log (legally
relevant events, PTB-A 50.8).

File format: JSON lines, UTF-8, one entry per ``\\n``-terminated line. Each
line is the canonical JSON of the whole entry::

    {"fields":{...},"hash":"<64 hex>","kind":"frame_rejected","prev":"<64 hex>",
     "seq":7,"sig":"<hex DER>","t_sim":900.0,"t_wall":1767225600.123}

- ``seq``: 0, 1, 2, ... per log; ``t_sim``: simulation time, s; ``t_wall``:
  Unix time of the append, s; ``kind``: snake_case event name; ``fields``:
  a JSON object.
- canonical JSON: ``json.dumps(sort_keys=True, separators=(",", ":"),
  ensure_ascii=False, allow_nan=False)`` encoded as UTF-8: keys sorted, no
  spaces, non-ASCII as raw UTF-8, floats in Python's shortest round-trip
  form (``900.0``), no NaN or infinity.
- ``hash``: hex SHA-256 of the canonical JSON of the six keys ``fields``,
  ``kind``, ``prev``, ``seq``, ``t_sim`` and ``t_wall``.
- ``prev``: ``hash`` of the entry before, 64 zeros for seq 0.
- ``sig``: ECDSA signature (DER, hex) with the instance's signing key over
  the 32 hash bytes taken as a SHA-256 digest (``Prehashed``).
- seq 0 is always ``log_created`` with fields ``log`` (the log's name),
  ``curve`` and ``key`` (fingerprint of the public key), so a log cannot be
  passed off as another instance's or another consumer's.

Durability: an append is one ``write(2)`` on an ``O_APPEND`` descriptor, so
the entry is with the OS when :meth:`SignedLog.append` returns and survives
a crash of the process; ``fsync`` happens on :meth:`SignedLog.sync` (call it
once per batch, e.g. with the store's commit) and on close.

A hash chain cannot show that entries were cut off the end; whoever needs
that keeps the last ``hash`` (:attr:`SignedLog.head`) elsewhere.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from hashlib import sha256
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Self

from cryptography.hazmat.primitives.asymmetric import ec
from smtestbed.services._runtime.errors import TestbedError
from smtestbed.services.gateway.keys import SigningKey, fingerprint, verify_digest

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

ZERO_HASH = "0" * 64
GENESIS_KIND = "log_created"
_KEYS = frozenset({"seq", "t_sim", "t_wall", "kind", "fields", "prev", "hash", "sig"})
_KIND = re.compile(r"[a-z][a-z0-9_]*\Z")
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_HEX = re.compile(r"(?:[0-9a-f]{2})+\Z")
_CONSUMER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_TAIL_BLOCK = 4096


class LogError(TestbedError):
    """A log cannot be opened, read or appended to."""


class LogTamperedError(LogError):
    """An existing log's first or last entry does not verify; nothing was appended."""


class Problem(StrEnum):
    """What :func:`verify` found wrong with the first bad entry."""

    ALTERED = "altered"  # content does not match its hash, or the chain link is broken
    MISSING = "missing"  # a sequence number is skipped
    REORDERED = "reordered"  # the expected entry is further down, or seq goes back
    BAD_SIGNATURE = "bad_signature"  # hash matches, signature does not (forged or other key)
    MALFORMED = "malformed"  # not JSON, not an entry, or an incomplete last line


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One log entry as stored (see the module docstring for the format)."""

    seq: int
    t_sim: float
    t_wall: float
    kind: str
    fields: dict[str, Any]
    prev: str
    hash: str
    sig: str

    def body(self) -> dict[str, Any]:
        """Return the six keys the hash covers."""
        return {
            "seq": self.seq,
            "t_sim": self.t_sim,
            "t_wall": self.t_wall,
            "kind": self.kind,
            "fields": self.fields,
            "prev": self.prev,
        }

    def to_json(self) -> dict[str, Any]:
        """Return the whole entry as a JSON object."""
        return {**self.body(), "hash": self.hash, "sig": self.sig}


@dataclass(frozen=True, slots=True, kw_only=True)
class Location:
    """Where the first bad entry is.

    Attributes:
        seq: the sequence number that should have been found at ``line``.
        line: 1-based line number in the file.
    """

    seq: int
    line: int


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyResult:
    """Outcome of :func:`verify`.

    Attributes:
        ok: every entry is in place, unaltered and signed by the given key.
        count: entries verified (all of them when ok, else those before the first bad).
        first_bad: where the first bad entry is; None when ok.
        problem: what is wrong with it; None when ok.
        detail: one human-readable sentence about the problem.
        log_name: the name from the ``log_created`` entry, "" if not read.
    """

    ok: bool
    count: int
    first_bad: Location | None = None
    problem: Problem | None = None
    detail: str = ""
    log_name: str = ""

    def message(self) -> str:
        """Return the result as one line (what ``smtb gateway verify-log`` prints)."""
        name = f" (log {self.log_name})" if self.log_name else ""
        if self.ok or self.first_bad is None:
            return f"OK {self.count} entries{name}"
        where = f"entry {self.first_bad.seq} at line {self.first_bad.line}"
        return f"{str(self.problem).upper()} {where}{name}: {self.detail}"

    def to_json(self) -> dict[str, Any]:
        """Return the result as a JSON object."""
        bad = self.first_bad
        return {
            "ok": self.ok,
            "count": self.count,
            "log": self.log_name,
            "problem": None if self.problem is None else str(self.problem),
            "seq": None if bad is None else bad.seq,
            "line": None if bad is None else bad.line,
            "detail": self.detail,
        }


def canonical(value: object) -> bytes:
    """Encode a JSON value canonically: sorted keys, no spaces, UTF-8, no NaN.

    Raises:
        TypeError, ValueError, UnicodeEncodeError: not encodable as canonical JSON.
    """
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def _entry_hash(entry: Entry) -> str:
    return sha256(canonical(entry.body())).hexdigest()


class _MalformedError(ValueError):
    """A line is not a log entry."""


def _parse(raw: bytes) -> Entry:
    try:
        obj = json.loads(raw)
    except ValueError as exc:
        raise _MalformedError("not JSON") from exc
    if not isinstance(obj, dict) or obj.keys() != _KEYS:
        raise _MalformedError(f"not an entry (keys must be {', '.join(sorted(_KEYS))})")
    seq, t_sim, t_wall = obj["seq"], obj["t_sim"], obj["t_wall"]
    if type(seq) is not int or seq < 0:
        raise _MalformedError("seq is not a non-negative integer")
    if any(type(t) not in (int, float) for t in (t_sim, t_wall)):
        raise _MalformedError("t_sim or t_wall is not a number")
    if not isinstance(obj["kind"], str) or not _KIND.match(obj["kind"]):
        raise _MalformedError("kind is not a snake_case name")
    if not isinstance(obj["fields"], dict):
        raise _MalformedError("fields is not an object")
    if not all(isinstance(obj[k], str) and _HEX64.match(obj[k]) for k in ("prev", "hash")):
        raise _MalformedError("prev or hash is not 64 lowercase hex digits")
    if not isinstance(obj["sig"], str) or not _HEX.match(obj["sig"]):
        raise _MalformedError("sig is not lowercase hex")
    return Entry(**obj)


def _check(
    raw: bytes, entry: Entry, public_key: ec.EllipticCurvePublicKey
) -> tuple[Problem, str] | None:
    """Check one parsed line on its own: hash, canonical form, signature."""
    if _entry_hash(entry) != entry.hash:
        return Problem.ALTERED, "content does not match its hash"
    if canonical(entry.to_json()) != raw:
        return Problem.ALTERED, "line was re-encoded (not in canonical form)"
    if not verify_digest(public_key, bytes.fromhex(entry.hash), bytes.fromhex(entry.sig)):
        claimed = entry.fields.get("key") if entry.kind == GENESIS_KIND else None
        if isinstance(claimed, str) and claimed != fingerprint(public_key):
            return Problem.BAD_SIGNATURE, f"log was made with another key ({claimed[:16]}...)"
        return Problem.BAD_SIGNATURE, "signature does not match the given public key"
    return None


def _split_line(raw: bytes) -> bytes:
    if not raw.endswith(b"\n"):
        raise _MalformedError("incomplete last line (no newline)")
    return raw[:-1]


def _open(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as exc:
        raise LogError(f"{path}: cannot read log: {exc.strerror}") from exc


def read_entries(path: Path) -> Iterator[Entry]:
    """Yield a log's entries in file order, without verifying hashes or signatures.

    Raises:
        LogError: the file cannot be read or a line is not an entry.
    """
    with _open(path) as file:
        for line_no, raw in enumerate(file, start=1):
            try:
                yield _parse(_split_line(raw))
            except _MalformedError as exc:
                raise LogError(f"{path}: line {line_no}: {exc}") from exc


def verify(path: Path, public_key: ec.EllipticCurvePublicKey) -> VerifyResult:
    """Check a whole log file against the instance's public key.

    Reports the first line that is not the expected entry: ``malformed``
    (not an entry), ``missing`` (a seq skipped), ``reordered`` (the expected
    seq is further down, or seq goes back), ``altered`` (content or chain
    link changed) or ``bad_signature``. An empty file misses entry 0.

    Raises:
        LogError: the file cannot be read.
    """
    walk = _ChainWalk(public_key)
    with _open(path) as file:
        lines = enumerate(file, start=1)
        for line_no, raw in lines:
            bad = walk.feed(raw, line_no, lines)
            if bad is not None:
                return bad
    if walk.count == 0:
        return walk.bad(1, Problem.MISSING, "the log is empty")
    return VerifyResult(ok=True, count=walk.count, log_name=walk.log_name)


class _ChainWalk:
    """The state of :func:`verify` between lines."""

    def __init__(self, public_key: ec.EllipticCurvePublicKey) -> None:
        self.public_key = public_key
        self.count = 0
        self.prev = ZERO_HASH
        self.log_name = ""

    def bad(self, line: int, problem: Problem, detail: str) -> VerifyResult:
        where = Location(seq=self.count, line=line)
        return VerifyResult(
            ok=False,
            count=self.count,
            first_bad=where,
            problem=problem,
            detail=detail,
            log_name=self.log_name,
        )

    def feed(self, raw: bytes, line: int, rest: Iterable[tuple[int, bytes]]) -> VerifyResult | None:
        """Check the next line; return the failure, or None and advance."""
        try:
            body = _split_line(raw)
            entry = _parse(body)
        except _MalformedError as exc:
            return self.bad(line, Problem.MALFORMED, str(exc))
        if entry.seq != self.count:
            return self._misplaced(entry.seq, line, rest)
        found = _check(body, entry, self.public_key)
        if found is not None:
            return self.bad(line, *found)
        if entry.prev != self.prev:
            return self.bad(line, Problem.ALTERED, "prev does not match the entry before")
        if entry.seq == 0 and entry.kind == GENESIS_KIND:
            self.log_name = str(entry.fields.get("log", ""))
        self.count += 1
        self.prev = entry.hash
        return None

    def _misplaced(self, seq: int, line: int, rest: Iterable[tuple[int, bytes]]) -> VerifyResult:
        expected = self.count
        if seq < expected:
            return self.bad(
                line, Problem.REORDERED, f"found entry {seq} after entry {expected - 1}"
            )
        for later, raw in rest:
            try:
                if _parse(raw.rstrip(b"\n")).seq == expected:
                    return self.bad(
                        line,
                        Problem.REORDERED,
                        f"entry {expected} is at line {later}, found {seq} here",
                    )
            except _MalformedError:
                continue
        gap = f"entry {expected}" if seq == expected + 1 else f"entries {expected}..{seq - 1}"
        return self.bad(line, Problem.MISSING, f"{gap} missing, found entry {seq} here")


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
    writer for as long as it is open. Appends are thread-safe.

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
    ) -> None:
        self.path = path
        self.key = key
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
            entry = self._make(kind, fields, t_sim)
            try:
                _write_all(self._fd, canonical(entry.to_json()) + b"\n")
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

    def _make(self, kind: str, fields: Mapping[str, object], t_sim: float) -> Entry:
        if not isinstance(kind, str) or not _KIND.match(kind):
            raise LogError(f"log kind must be a snake_case name, got {kind!r}")
        if (
            isinstance(t_sim, bool)
            or not isinstance(t_sim, int | float)
            or not math.isfinite(t_sim)
        ):
            raise LogError(f"t_sim must be a finite number of seconds, got {t_sim!r}")
        try:
            # The round trip stores exactly what a verifier will parse back.
            stored = json.loads(canonical(dict(fields)))
        except (TypeError, ValueError) as exc:
            raise LogError(f"log fields of {kind} are not canonical JSON: {exc}") from exc
        entry = Entry(
            seq=self._seq,
            t_sim=float(t_sim),
            t_wall=float(self._wall_clock()),
            kind=kind,
            fields=stored,
            prev=self._prev,
            hash="",
            sig="",
        )
        digest = sha256(canonical(entry.body())).digest()
        return Entry(
            **{**entry.to_json(), "hash": digest.hex(), "sig": self.key.sign(digest).hex()}
        )

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
            body = _split_line(raw)
            entry = _parse(body)
        except _MalformedError as exc:
            raise LogTamperedError(f"{self.path}: {which} entry: {exc}; not appending") from exc
        found = _check(body, entry, self.key.public_key)
        if found is not None:
            problem, detail = found
            raise LogTamperedError(
                f"{self.path}: {which} entry (seq {entry.seq}) {problem}: {detail}; not appending"
            )
        return entry


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
    ``consumer-<id>``). Consumer logs are opened on first use.
    """

    def __init__(
        self, folder: Path, key: SigningKey, *, wall_clock: Callable[[], float] = time.time
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.key = key
        self._wall_clock = wall_clock
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
        return SignedLog(path, self.key, log_name=name, wall_clock=self._wall_clock)
