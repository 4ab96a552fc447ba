"""Frame batches: many variable-length frames in one bus message.

A batch travels as raw frames after the envelope, whose body is the batch
header ``{"count": n, "meta": {...}, "columns": [[name, typecode], ...]}``:

1. offsets: ``n + 1`` unsigned 32-bit little-endian integers; frame ``i`` is
   ``data[off[i]:off[i + 1]]``;
2. data: the frames back to back;
3. one frame per column, in header order: ``n`` values of the column's
   ``array`` typecode (``b B h H i I q Q f d``), native little-endian, e.g. the
   send time (``d``, s) or transmit power (``f``, dBm) of each frame.

The receiver slices data and columns without copying them (``numpy`` can
view a column with ``np.frombuffer``).
"""

from __future__ import annotations

import array
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from smtestbed.proto.envelope import EnvelopeError

TYPECODES = frozenset("bBhHiIqQfd")
ITEMSIZE = {code: array.array(code).itemsize for code in TYPECODES}

if sys.byteorder != "little":  # pragma: no cover - every supported host is little-endian
    raise ImportError("smtestbed frame batches need a little-endian host")


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameBatch:
    """A batch of frames sharing one contiguous buffer, with per-frame columns.

    Attributes:
        offsets: ``count + 1`` frame boundaries into ``data``; first 0, last ``len(data)``.
        data: the frames back to back.
        meta: small per-batch metadata (window, stage, ...), msgpack-serialisable.
        columns: per-frame values by name, each a memoryview of ``count`` items.
    """

    offsets: memoryview
    data: memoryview
    meta: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, memoryview] = field(default_factory=dict)

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
    def from_frames(
        cls,
        frames: Sequence[bytes],
        meta: Mapping[str, Any] | None = None,
        columns: Mapping[str, Any] | None = None,
    ) -> FrameBatch:
        """Pack frames into one buffer; each column holds one value per frame."""
        bounds = [0]
        for f in frames:
            bounds.append(bounds[-1] + len(f))
        offsets = memoryview(array.array("I", bounds))
        cols = {
            name: _column(name, values, len(frames)) for name, values in (columns or {}).items()
        }
        return cls(
            offsets=offsets, data=memoryview(b"".join(frames)), meta=dict(meta or {}), columns=cols
        )

    @classmethod
    def from_buffers(
        cls,
        offsets: Any,
        data: Any,
        meta: Mapping[str, Any] | None = None,
        columns: Mapping[str, Any] | None = None,
    ) -> FrameBatch:
        """Wrap ready buffers (e.g. numpy arrays from a kernel) after checking them."""
        off = _as_u32(memoryview(offsets))
        view = memoryview(data).cast("B")
        _check_bounds(off, view.nbytes)
        count = len(off) - 1
        cols = {name: _column(name, values, count) for name, values in (columns or {}).items()}
        return cls(offsets=off, data=view, meta=dict(meta or {}), columns=cols)

    def header(self) -> dict[str, Any]:
        """Return the envelope body that describes this batch."""
        return {
            "count": self.count,
            "meta": self.meta,
            "columns": [[name, col.format] for name, col in self.columns.items()],
        }

    def wire_frames(self) -> list[memoryview]:
        """Return the offsets, data and column frames to send after the envelope."""
        return [self.offsets.cast("B"), self.data, *(c.cast("B") for c in self.columns.values())]

    @classmethod
    def from_wire(cls, header: Any, frames: Sequence[bytes | memoryview]) -> FrameBatch:
        """Validate a received batch and wrap it without copying the data."""
        count, meta, spec = _check_header(header)
        if len(frames) != 2 + len(spec):
            raise EnvelopeError(
                f"batch has {len(frames)} raw frames, needs {2 + len(spec)}", reason="frames"
            )
        raw = memoryview(frames[0])
        if raw.nbytes != 4 * (count + 1):
            raise EnvelopeError(
                f"batch offsets are {raw.nbytes} bytes, need {4 * (count + 1)} for {count} frames",
                reason="batch_offsets",
            )
        off = _as_u32(raw)
        view = memoryview(frames[1]).cast("B")
        _check_bounds(off, view.nbytes)
        columns = {
            name: _wire_column(name, code, frame, count)
            for (name, code), frame in zip(spec, frames[2:], strict=True)
        }
        return cls(offsets=off, data=view, meta=meta, columns=columns)


def _wire_column(name: str, code: str, frame: bytes | memoryview, count: int) -> memoryview[Any]:
    raw = memoryview(frame).cast("B")
    need = count * ITEMSIZE[code]
    if raw.nbytes != need:
        raise EnvelopeError(
            f"column {name!r} is {raw.nbytes} bytes, needs {need} for {count} {code!r} values",
            reason="batch_column",
        )
    column: memoryview[Any] = raw.cast(code)  # type: ignore[call-overload]
    return column


def _check_header(header: Any) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
    if not isinstance(header, dict) or not isinstance(header.get("count"), int):
        raise EnvelopeError("batch header lacks an integer count", reason="batch_header")
    count = header["count"]
    meta = header.get("meta", {})
    if count < 0 or not isinstance(meta, dict):
        raise EnvelopeError("batch count must be >= 0 and meta a map", reason="batch_header")
    spec = header.get("columns", [])
    if not isinstance(spec, list) or not all(
        isinstance(c, list) and len(c) == 2 and isinstance(c[0], str) and c[1] in TYPECODES
        for c in spec
    ):
        raise EnvelopeError("batch columns must be [name, typecode] pairs", reason="batch_header")
    return count, meta, [(str(c[0]), str(c[1])) for c in spec]


def _column(name: str, values: Any, count: int) -> memoryview:
    try:
        view = values if isinstance(values, memoryview) else memoryview(values)
    except TypeError:
        raise EnvelopeError(f"column {name!r} is not a buffer", reason="batch_column") from None
    if view.format not in TYPECODES or view.ndim != 1 or len(view) != count:
        raise EnvelopeError(
            f"column {name!r} has format {view.format!r} and {len(view)} items; needs one of"
            f" {''.join(sorted(TYPECODES))} and {count} items",
            reason="batch_column",
        )
    return view


def _as_u32(raw: memoryview) -> memoryview:
    if raw.format == "I" and raw.ndim == 1:
        return raw
    if raw.nbytes % 4:
        raise EnvelopeError("batch offsets are not 4-byte integers", reason="batch_offsets")
    return raw.cast("B").cast("I")


def _check_bounds(off: memoryview, size: int) -> None:
    if len(off) == 0 or off[0] != 0 or off[len(off) - 1] != size:
        first = off[0] if len(off) else None
        last = off[len(off) - 1] if len(off) else None
        raise EnvelopeError(
            f"batch offsets span {first}..{last}, data is {size} bytes", reason="batch_offsets"
        )
    if len(off) > 1 and not _non_decreasing(off):
        raise EnvelopeError("batch offsets go backwards", reason="batch_offsets")


def _non_decreasing(off: memoryview) -> bool:
    import numpy as np  # a runtime dependency; imported here to keep proto light to load

    values = np.frombuffer(off, dtype=np.uint32)
    return bool(np.all(values[1:] >= values[:-1]))
