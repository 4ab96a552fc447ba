"""Envelope and frame batch wire formats."""

from __future__ import annotations

import array
import contextlib
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smtestbed.proto import topics
from smtestbed.proto.batch import FrameBatch
from smtestbed.proto.envelope import (
    Envelope,
    EnvelopeError,
    check_event_frames,
    pack,
    validate_event,
)


def _env(**changes: Any) -> dict[str, Any]:
    base = {
        "v": 1,
        "kind": topics.SAMPLE_TICK,
        "src": "a",
        "seq": 3,
        "t_sim": 1.5,
        "t_wall": 2.5,
        "body": {"n": 1},
    }
    base.update(changes)
    return base


def test_envelope_round_trips_through_the_wire() -> None:
    """to_wire then from_wire gives back every field."""
    env = Envelope(
        kind=topics.SAMPLE_TICK,
        src="s1",
        seq=9,
        t_sim=10.0,
        t_wall=11.0,
        body={"b": b"\x00\x01", "l": [1, 2.5, None]},
    )
    assert Envelope.from_wire(env.to_wire()) == env


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xc1", "not_msgpack"),
        (msgpack.packb([1, 2]), "not_a_map"),
        (msgpack.packb({**_env(), "extra": 1}), "keys"),
        (msgpack.packb({k: v for k, v in _env().items() if k != "seq"}), "keys"),
        (msgpack.packb(_env(v=2)), "version"),
        (msgpack.packb(_env(kind="no.such_kind")), "unknown_kind"),
        (msgpack.packb(_env(kind=5)), "unknown_kind"),
        (msgpack.packb(_env(src="")), "bad_src"),
        (msgpack.packb(_env(seq=-1)), "bad_seq"),
        (msgpack.packb(_env(seq=True)), "bad_seq"),
        (msgpack.packb(_env(t_sim="now")), "bad_time"),
    ],
)
def test_bad_envelopes_are_rejected_with_their_reason(raw: bytes, reason: str) -> None:
    """Each kind of malformed envelope raises EnvelopeError naming its reason."""
    with pytest.raises(EnvelopeError) as info:
        Envelope.from_wire(raw)
    assert info.value.reason == reason


def test_topic_frame_must_equal_kind() -> None:
    """An event whose topic frame disagrees with its kind is rejected."""
    wire = pack(topics.SAMPLE_TICK, "a", 0, 0.0, 0.0, None)
    with pytest.raises(EnvelopeError, match="differs from kind"):
        check_event_frames([b"service.ready", wire])
    assert validate_event(b"sample.tick", wire) == topics.SAMPLE_TICK


def test_unpackable_body_is_an_envelope_error() -> None:
    """A body msgpack cannot encode raises EnvelopeError, not TypeError."""
    with pytest.raises(EnvelopeError, match="cannot be packed"):
        pack(topics.SAMPLE_TICK, "a", 0, 0.0, 0.0, object())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_envelope_error(data: bytes) -> None:
    """Whatever the bytes, decoding either succeeds or raises EnvelopeError."""
    with contextlib.suppress(EnvelopeError):
        Envelope.from_wire(data)


def test_batch_round_trips_without_copying_data() -> None:
    """A batch's offsets and data frames give back the same frames in order."""
    frames = [b"", b"a", b"bcd" * 50, bytes(range(256))]
    batch = FrameBatch.from_frames(
        frames,
        meta={"window": 4},
        columns={"t": array.array("d", [0.5, 1.5, 2.5, 3.5]), "p": array.array("f", [1, 2, 3, 4])},
    )
    back = FrameBatch.from_wire(batch.header(), [bytes(f) for f in batch.wire_frames()])
    assert [bytes(f) for f in back] == frames
    assert back.meta == {"window": 4}
    assert back.columns["t"].tolist() == [0.5, 1.5, 2.5, 3.5]
    assert back.columns["p"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert back.count == 4
    assert bytes(back[2]) == b"bcd" * 50


@pytest.mark.parametrize(
    ("header", "offsets", "data", "reason"),
    [
        ({"count": 2}, b"\x00" * 8, b"", "batch_offsets"),
        ({"count": "2"}, b"", b"", "batch_header"),
        (
            {"count": 1},
            (0).to_bytes(4, "little") + (9).to_bytes(4, "little"),
            b"abc",
            "batch_offsets",
        ),
        (
            {"count": 2},
            b"".join(i.to_bytes(4, "little") for i in (0, 3, 2)),
            b"ab",
            "batch_offsets",
        ),
        ({"count": 1, "meta": []}, b"\x00" * 8, b"", "batch_header"),
    ],
)
def test_bad_batches_are_rejected(header: Any, offsets: bytes, data: bytes, reason: str) -> None:
    """Offsets that do not fit the data, or a broken header, raise EnvelopeError."""
    with pytest.raises(EnvelopeError) as info:
        FrameBatch.from_wire(header, [offsets, data])
    assert info.value.reason == reason


def test_column_of_wrong_length_is_rejected() -> None:
    """A column that does not hold one value per frame is refused."""
    with pytest.raises(EnvelopeError, match="column 't'") as info:
        FrameBatch.from_frames([b"a", b"b"], columns={"t": array.array("d", [1.0])})
    assert info.value.reason == "batch_column"
    header = {"count": 1, "columns": [["t", "d"]]}
    offsets = (0).to_bytes(4, "little") + (1).to_bytes(4, "little")
    with pytest.raises(EnvelopeError) as info:
        FrameBatch.from_wire(header, [offsets, b"x", bytes(4)])
    assert info.value.reason == "batch_column"
