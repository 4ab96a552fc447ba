"""Format A CRC check of a whole batch in one compiled call, against the per-frame check."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from smtestbed.proto.wmbus.link import add_crcs_a, load_crc_kernel, strip_crcs_a, strip_crcs_a_batch
from smtestbed.services._runtime.errors import ProtocolError


@pytest.fixture(scope="module", autouse=True)
def _compiled_kernel() -> None:
    """Load the compiled CRC check before any property example runs."""
    load_crc_kernel()


def _reference(frame: bytes) -> bytes | None:
    """Return what strip_crcs_a returns for one frame, None where it raises."""
    try:
        return strip_crcs_a(frame)
    except ProtocolError:
        return None


def _flip(frame: bytes, bit: int) -> bytes:
    out = bytearray(frame)
    out[(bit >> 3) % len(out)] ^= 0x80 >> (bit & 7)
    return bytes(out)


@given(
    st.lists(
        st.tuples(st.binary(min_size=9, max_size=254), st.integers(-1, 4000), st.integers(-3, 3)),
        max_size=12,
    )
)
def test_batch_equals_the_per_frame_check(parts: list[tuple[bytes, int, int]]) -> None:
    """Good, bit-flipped, cut and extended frames: each answer is the per-frame one."""
    frames = []
    for body, bit, resize in parts:
        frame = add_crcs_a(bytes((len(body),)) + body)
        frame = frame if bit < 0 else _flip(frame, bit)
        frames.append(frame[: len(frame) + resize] if resize < 0 else frame + bytes(resize))
    assert strip_crcs_a_batch(frames) == [_reference(frame) for frame in frames]


@pytest.mark.parametrize("frame", [b"", b"\x08" + bytes(11), b"\x0a" + bytes(15), bytes(20)])
def test_batch_gives_none_for_a_size_that_is_not_format_a(frame: bytes) -> None:
    """A frame whose size is not that of its L-field is None, its neighbours unaffected."""
    good = add_crcs_a(bytes((20,)) + bytes(range(20)))
    assert strip_crcs_a_batch([good, frame, good]) == [strip_crcs_a(good), None, strip_crcs_a(good)]


def test_empty_batch_gives_an_empty_list() -> None:
    """No frames, no answers."""
    assert strip_crcs_a_batch([]) == []
