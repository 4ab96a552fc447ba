"""Compiled format A CRC check (numba): every block CRC of a frame in one call.

Format A on air (EN 13757-4): block 1 is ``L C M(2) A(6)`` (10 bytes), then blocks of 16
data bytes, the last one holding ``(L - 9) mod 16`` bytes (if not 0); each block is followed
by its CRC-16 (poly 0x3D65, init 0, complemented, most significant byte first).

Importing this module imports numba and loads (or, the first time, compiles and caches) the
kernel: the link layer imports it lazily, so that one-shot tools that never reach a format A
frame do not pay for it.
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
from numba import njit
from smtestbed.proto.wmbus.crc import byte_table, crc16
from smtestbed.services._runtime.errors import ProtocolError

_HEADER = 10  # data bytes of block 1
_BLOCK = 16  # data bytes of each later block
_TABLE = np.array(byte_table(), dtype=np.uint16)


def _a_size(length: int) -> int:
    rest = length - (_HEADER - 1)
    return _HEADER + 2 + rest + 2 * (-(-rest // _BLOCK))


# On-air size of a format A frame for each L-field value that holds a header (else 0).
_A_SIZES = tuple(_a_size(length) if length >= _HEADER - 1 else 0 for length in range(256))


@njit(cache=True)
def _strip_a(frame: npt.NDArray[np.uint8], out: npt.NDArray[np.uint8]) -> int:
    # Integers stay int64 and are masked: numba infers float64 when uint and int literals mix.
    size = frame.shape[0]
    pos, put, number, block = 0, 0, 0, _HEADER
    while pos < size:
        number += 1
        end = pos + block
        crc = np.int64(0)
        for i in range(pos, end):
            byte = np.int64(frame[i])
            crc = ((crc << 8) & 0xFFFF) ^ np.int64(_TABLE[((crc >> 8) ^ byte) & 0xFF])
            out[put] = frame[i]
            put += 1
        found = (np.int64(frame[end]) << 8) | np.int64(frame[end + 1])
        if crc ^ 0xFFFF != found:
            return number
        pos = end + 2
        block = min(_BLOCK, size - pos - 2)
    return 0


_A_SIZE_ARRAY = np.array(_A_SIZES, dtype=np.int64)


@njit(cache=True)
def _strip_a_batch(
    data: npt.NDArray[np.uint8],
    starts: npt.NDArray[np.int64],
    sizes: npt.NDArray[np.int64],
    out: npt.NDArray[np.uint8],
    bounds: npt.NDArray[np.int64],
) -> None:
    # Frame k is data[starts[k]:starts[k + 1]]; its telegram goes to out[bounds[k]:bounds[k + 1]],
    # an empty span when its size is not that of its L-field or a block CRC fails.
    put = 0
    for k in range(starts.shape[0] - 1):
        start, end = starts[k], starts[k + 1]
        bounds[k] = put
        if end == start or end - start != sizes[np.int64(data[start])]:
            continue
        length = int(data[start]) + 1
        if _strip_a(data[start:end], out[put : put + length]) == 0:
            put += length
    bounds[starts.shape[0] - 1] = put


def strip_format_a_batch(frames: list[bytes]) -> list[bytes | None]:
    """Check the block CRCs of many format A frames in one compiled call.

    Returns:
        Per frame its telegram without CRCs, or None when its size is not that of a format
        A frame of its L-field or a block CRC fails (:func:`strip_format_a` tells which).
    """
    count = len(frames)
    lengths = np.fromiter(map(len, frames), dtype=np.int64, count=count)
    starts = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    joined = b"".join(frames)
    out = np.empty(len(joined), dtype=np.uint8)
    bounds = np.empty(count + 1, dtype=np.int64)
    _strip_a_batch(np.frombuffer(joined, dtype=np.uint8), starts, _A_SIZE_ARRAY, out, bounds)
    raw, edges = out.tobytes(), bounds.tolist()
    return [raw[a:b] if b > a else None for a, b in itertools.pairwise(edges)]


def strip_format_a(frame: bytes) -> tuple[int, bytes]:
    """Check every block CRC of a format A frame and remove the CRCs.

    Args:
        frame: a whole format A frame: exactly as many bytes as its L-field calls for.

    Returns:
        The 1-based number of the first block whose CRC fails (0 when all match) and, when
        all match, the telegram without CRCs (``L + 1`` bytes), else ``b""``.

    Raises:
        ProtocolError: ``bad_length`` when the size of ``frame`` is not that of a format A
            frame with its L-field.
    """
    if not frame or len(frame) != _A_SIZES[frame[0]]:
        raise ProtocolError(
            f"{len(frame)} bytes are not a format A frame of their L-field",
            reason="bad_length",
            offset=0,
        )
    out = np.empty(frame[0] + 1, dtype=np.uint8)
    bad = _strip_a(np.frombuffer(frame, dtype=np.uint8), out)
    return bad, (b"" if bad else out.tobytes())


def _load() -> None:
    """Run the kernel once so that importing this module leaves it loaded (or compiled)."""
    head = bytes((_HEADER - 1,)) + bytes(_HEADER - 1)
    frame = head + crc16(head).to_bytes(2, "big")
    if strip_format_a(frame) != (0, head) or strip_format_a_batch([frame, b""]) != [head, None]:
        raise RuntimeError("compiled format A CRC check fails on a header-only frame")


_load()
