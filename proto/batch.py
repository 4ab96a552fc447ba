"""Frame batches: many variable-length frames in one bus message.

A batch travels as three frames after the topic: the envelope (whose body is
the batch header), the offsets and the data. The header is a map
``{"count": n, "meta": {...}}``; the offsets frame holds ``n + 1`` unsigned
32-bit little-endian integers, frame ``i`` being ``data[off[i]:off[i + 1]]``;
the data frame is the frames back to back. The receiver slices the data
without copying it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from smtestbed.proto.envelope import EnvelopeError

_LITTLE = sys.byteorder == "little"


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameBatch:
    """A batch of frames sharing one contiguous buffer.

    Attributes:
        offsets: ``count + 1`` frame boundaries into ``data``; first 0, last ``len(data)``.
        data: the frames back to back.
        meta: small per-batch metadata (window, stage, ...), msgpack-serialisable.
    """

    offsets: memoryview
    data: memoryview
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def count(self) -> int:
        """Return the number of frames."""
        return len(self.offsets) - 1

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> memoryview:
        return self.data[self.offsets[index] : self.offsets[index + 1]]

    def __iter__(self) -> Iterator[memoryview]:
        off = self.offsets
        for i in range(len(off) - 1):
            yield self.data[off[i] : off[i + 1]]

    @classmethod
    def from_frames(cls, frames: Sequence[bytes], meta: dict[str, Any] | None = None) -> FrameBatch:
        """Pack separate frames into one buffer with offsets."""
        bounds = [0]
        for f in frames:
            bounds.append(bounds[-1] + len(f))
        offsets = memoryview(_u32(bounds))
        return cls(offsets=offsets, data=memoryview(b"".join(frames)), meta=dict(meta or {}))

    def header(self) -> dict[str, Any]:
        """Return the envelope body that describes this batch."""
        return {"count": self.count, "meta": self.meta}

    def wire_frames(self) -> tuple[memoryview, memoryview]:
        """Return the offsets and data frames to send after the envelope."""
        return memoryview(self.offsets).cast("B"), self.data

    @classmethod
    def from_wire(
        cls, header: Any, offsets: bytes | memoryview, data: bytes | memoryview
    ) -> FrameBatch:
        """Validate a received batch and wrap it without copying the data."""
        if not isinstance(header, dict) or not isinstance(header.get("count"), int):
            raise EnvelopeError("batch header lacks an integer count", reason="batch_header")
        count = header["count"]
        meta = header.get("meta", {})
        if not isinstance(meta, dict):
            raise EnvelopeError("batch meta must be a map", reason="batch_header")
        raw = memoryview(offsets)
        if count < 0 or raw.nbytes != 4 * (count + 1):
            raise EnvelopeError(
                f"batch offsets are {raw.nbytes} bytes, need {4 * (count + 1)} for {count} frames",
                reason="batch_offsets",
            )
        off = _as_u32(raw)
        view = memoryview(data)
        _check_bounds(off, view.nbytes)
        return cls(offsets=off, data=view.cast("B") if view.format != "B" else view, meta=meta)


def _u32(values: list[int]) -> memoryview:
    import array

    arr = array.array("I", values)
    if arr.itemsize != 4:  # pragma: no cover - every supported platform has 4-byte unsigned int
        raise RuntimeError("platform lacks a 4-byte unsigned int")
    if not _LITTLE:  # pragma: no cover - big-endian hosts
        arr.byteswap()
    return memoryview(arr)


def _as_u32(raw: memoryview) -> memoryview:
    if _LITTLE:
        return raw.cast("B").cast("I")
    import array  # pragma: no cover - big-endian hosts

    arr = array.array("I", raw.tobytes())  # pragma: no cover
    arr.byteswap()  # pragma: no cover
    return memoryview(arr)  # pragma: no cover


def _check_bounds(off: memoryview, size: int) -> None:
    if off[0] != 0 or off[len(off) - 1] != size:
        raise EnvelopeError(
            f"batch offsets span {off[0]}..{off[len(off) - 1]}, data is {size} bytes",
            reason="batch_offsets",
        )
    prev = 0
    for i, value in enumerate(off):
        if value < prev:
            raise EnvelopeError(f"batch offset {i} goes backwards", reason="batch_offsets")
        prev = value
