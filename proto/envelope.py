"""The bus envelope: every event and request travels in one.

Wire layout: a msgpack map with exactly the keys ``v`` (format version, int),
``kind`` (topic, str), ``src`` (publishing service instance, str), ``seq``
(per-publisher counter, int >= 0), ``t_sim`` (simulation time, s since the
Unix epoch, float), ``t_wall`` (wall-clock time, s since the Unix epoch,
float) and ``body`` (any msgpack value). On a PUB socket an event is two
frames: the topic (``kind`` as UTF-8, so SUB prefix filters work) and the
packed envelope. Big payloads follow as extra raw frames (see ``batch``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import msgpack
from smtestbed.proto import topics
from smtestbed.services._runtime.errors import ProtocolError

VERSION = 1
MAX_ENVELOPE_BYTES = 16 * 1024 * 1024
_KEYS = frozenset({"v", "kind", "src", "seq", "t_sim", "t_wall", "body"})


class EnvelopeError(ProtocolError):
    """An envelope is malformed, has an unknown version or an unknown kind."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """One message on the bus.

    Attributes:
        kind: topic or request name, one of ``topics.KINDS``.
        src: the service instance that made it.
        seq: the publisher's counter; consecutive events of one ``src`` differ by 1.
        t_sim: simulation time in s since the Unix epoch.
        t_wall: wall-clock time in s since the Unix epoch.
        body: the payload (msgpack-serialisable).
        v: format version.
    """

    kind: str
    src: str
    seq: int
    t_sim: float
    t_wall: float
    body: Any = field(default=None)
    v: int = VERSION

    def to_wire(self) -> bytes:
        """Pack into the msgpack map described in the module docstring."""
        return pack(self.kind, self.src, self.seq, self.t_sim, self.t_wall, self.body)

    @classmethod
    def from_wire(cls, data: bytes | memoryview) -> Envelope:
        """Unpack and validate; raise EnvelopeError naming what is wrong."""
        raw = _unpack_map(data)
        _check_keys(raw)
        return cls(
            v=raw["v"],
            kind=raw["kind"],
            src=raw["src"],
            seq=raw["seq"],
            t_sim=float(raw["t_sim"]),
            t_wall=float(raw["t_wall"]),
            body=raw["body"],
        )


def pack(kind: str, src: str, seq: int, t_sim: float, t_wall: float, body: Any) -> bytes:
    """Pack envelope fields without building an Envelope (the publish hot path)."""
    try:
        wire: bytes = msgpack.packb(
            {
                "v": VERSION,
                "kind": kind,
                "src": src,
                "seq": seq,
                "t_sim": t_sim,
                "t_wall": t_wall,
                "body": body,
            },
            use_bin_type=True,
        )
    except (TypeError, ValueError, OverflowError) as exc:
        raise EnvelopeError(f"body of {kind} cannot be packed: {exc}", reason="unpackable") from exc
    return wire


def _unpack_map(data: bytes | memoryview) -> dict[str, Any]:
    if len(data) > MAX_ENVELOPE_BYTES:
        raise EnvelopeError(f"envelope of {len(data)} bytes is too large", reason="too_large")
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        detail = str(exc) or type(exc).__name__
        raise EnvelopeError(f"envelope is not msgpack: {detail}", reason="not_msgpack") from exc
    if not isinstance(raw, dict):
        raise EnvelopeError(f"envelope is a {type(raw).__name__}, not a map", reason="not_a_map")
    return raw


def _check_keys(raw: dict[str, Any]) -> None:
    if raw.keys() != _KEYS:
        missing = sorted(_KEYS - raw.keys())
        extra = sorted(str(k) for k in raw.keys() - _KEYS)
        raise EnvelopeError(f"envelope keys wrong: missing {missing}, extra {extra}", reason="keys")
    if raw["v"] != VERSION:
        raise EnvelopeError(f"envelope version {raw['v']!r} is not {VERSION}", reason="version")
    kind = raw["kind"]
    if not isinstance(kind, str) or not topics.is_known(kind):
        raise EnvelopeError(f"unknown kind {kind!r}", reason="unknown_kind")
    if not isinstance(raw["src"], str) or not raw["src"]:
        raise EnvelopeError("src must be a non-empty string", reason="bad_src")
    seq = raw["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise EnvelopeError(f"seq must be an int >= 0, got {seq!r}", reason="bad_seq")
    for key in ("t_sim", "t_wall"):
        value = raw[key]
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
        ):
            raise EnvelopeError(f"{key} must be a finite number, got {value!r}", reason="bad_time")


def validate_event(topic: bytes, wire: bytes) -> str:
    """Check an event's topic frame and envelope without building an Envelope.

    Returns:
        The event's kind.

    Raises:
        EnvelopeError: bad envelope, or topic frame differing from kind.
    """
    raw = _unpack_map(wire)
    _check_keys(raw)
    kind: str = raw["kind"]
    if topic != kind.encode():
        raise EnvelopeError(
            f"topic frame {bytes(topic[:64])!r} differs from kind {kind!r}",
            reason="topic_mismatch",
        )
    return kind


def check_event_frames(frames: list[bytes]) -> Envelope:
    """Validate a multipart event as received from a PUB socket.

    Args:
        frames: topic frame, envelope frame, then any raw payload frames.

    Returns:
        The decoded envelope.

    Raises:
        EnvelopeError: wrong frame count, bad envelope, or topic frame differing from kind.
    """
    if len(frames) < 2:
        raise EnvelopeError(f"event has {len(frames)} frame(s), needs >= 2", reason="frames")
    env = Envelope.from_wire(frames[1])
    if frames[0] != env.kind.encode():
        raise EnvelopeError(
            f"topic frame {bytes(frames[0][:64])!r} differs from kind {env.kind!r}",
            reason="topic_mismatch",
        )
    return env
