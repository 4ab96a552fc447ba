"""The gateway logs' entry format and their verification (:func:`verify`).

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

The writer is :class:`smtestbed.services.gateway.logs.SignedLog`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from hashlib import sha256
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.hazmat.primitives.asymmetric import ec
from smtestbed.services._runtime.errors import TestbedError
from smtestbed.services.gateway.keys import fingerprint, verify_digest

__all__ = [
    "GENESIS_KIND",
    "KIND",
    "ZERO_HASH",
    "Entry",
    "Location",
    "LogError",
    "LogTamperedError",
    "MalformedLineError",
    "Problem",
    "VerifyResult",
    "canonical",
    "check_entry",
    "entry_hash",
    "parse_line",
    "read_entries",
    "split_line",
    "verify",
]

ZERO_HASH = "0" * 64
GENESIS_KIND = "log_created"
_KEYS = frozenset({"seq", "t_sim", "t_wall", "kind", "fields", "prev", "hash", "sig"})
KIND = re.compile(r"[a-z][a-z0-9_]*\Z")
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_HEX = re.compile(r"(?:[0-9a-f]{2})+\Z")


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


def entry_hash(entry: Entry) -> str:
    return sha256(canonical(entry.body())).hexdigest()


class MalformedLineError(ValueError):
    """A line is not a log entry."""


def parse_line(raw: bytes) -> Entry:
    try:
        obj = json.loads(raw)
    except ValueError as exc:
        raise MalformedLineError("not JSON") from exc
    if not isinstance(obj, dict) or obj.keys() != _KEYS:
        raise MalformedLineError(f"not an entry (keys must be {', '.join(sorted(_KEYS))})")
    seq, t_sim, t_wall = obj["seq"], obj["t_sim"], obj["t_wall"]
    if type(seq) is not int or seq < 0:
        raise MalformedLineError("seq is not a non-negative integer")
    if any(type(t) not in (int, float) for t in (t_sim, t_wall)):
        raise MalformedLineError("t_sim or t_wall is not a number")
    if not isinstance(obj["kind"], str) or not KIND.match(obj["kind"]):
        raise MalformedLineError("kind is not a snake_case name")
    if not isinstance(obj["fields"], dict):
        raise MalformedLineError("fields is not an object")
    if not all(isinstance(obj[k], str) and _HEX64.match(obj[k]) for k in ("prev", "hash")):
        raise MalformedLineError("prev or hash is not 64 lowercase hex digits")
    if not isinstance(obj["sig"], str) or not _HEX.match(obj["sig"]):
        raise MalformedLineError("sig is not lowercase hex")
    return Entry(**obj)


def check_entry(
    raw: bytes, entry: Entry, public_key: ec.EllipticCurvePublicKey
) -> tuple[Problem, str] | None:
    """Check one parsed line on its own: hash, canonical form, signature."""
    if entry_hash(entry) != entry.hash:
        return Problem.ALTERED, "content does not match its hash"
    if canonical(entry.to_json()) != raw:
        return Problem.ALTERED, "line was re-encoded (not in canonical form)"
    if not verify_digest(public_key, bytes.fromhex(entry.hash), bytes.fromhex(entry.sig)):
        claimed = entry.fields.get("key") if entry.kind == GENESIS_KIND else None
        if isinstance(claimed, str) and claimed != fingerprint(public_key):
            return Problem.BAD_SIGNATURE, f"log was made with another key ({claimed[:16]}...)"
        return Problem.BAD_SIGNATURE, "signature does not match the given public key"
    return None


def split_line(raw: bytes) -> bytes:
    if not raw.endswith(b"\n"):
        raise MalformedLineError("incomplete last line (no newline)")
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
                yield parse_line(split_line(raw))
            except MalformedLineError as exc:
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
            body = split_line(raw)
            entry = parse_line(body)
        except MalformedLineError as exc:
            return self.bad(line, Problem.MALFORMED, str(exc))
        if entry.seq != self.count:
            return self._misplaced(entry.seq, line, rest)
        found = check_entry(body, entry, self.public_key)
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
                if parse_line(raw.rstrip(b"\n")).seq == expected:
                    return self.bad(
                        line,
                        Problem.REORDERED,
                        f"entry {expected} is at line {later}, found {seq} here",
                    )
            except MalformedLineError:
                continue
        gap = f"entry {expected}" if seq == expected + 1 else f"entries {expected}..{seq - 1}"
        return self.bad(line, Problem.MISSING, f"{gap} missing, found entry {seq} here")
