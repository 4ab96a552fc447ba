"""Known frame headers: processing a meter's later frames through its learnt header."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from smtestbed.proto.wmbus import encode_telegram
from smtestbed.proto.wmbus.link import add_crcs_a
from smtestbed.proto.wmbus.security import cbc_encrypt, decrypt_mode5_iv
from smtestbed.proto.wmbus.transport import make_config
from smtestbed.services._runtime.errors import ProtocolError
from smtestbed.services.gateway.heads import Ciphers, Head, Heads
from smtestbed.services.gateway.processing import BatchOutcome, Pipeline, Plausibility
from smtestbed.services.gateway.schema import MeterEntry, MeterState, Reason, Rejection

from tests.unit.gateway.test_processing import KEY, METER, OTHER_KEY, entry, frame, telegram


class _NoHeads(Heads):
    """Learns nothing: every frame goes through the full header decode."""

    def get(self, plain: bytes) -> Head | None:
        return None


class _Gateway:
    """A pipeline over a changeable registry, committing each batch at once."""

    def __init__(self, registered: MeterEntry, *, learn: bool = True) -> None:
        self.registered: MeterEntry | None = registered
        self.states: dict[str, MeterState] = {}
        self.pipeline = Pipeline(self._get, self.states.get, Plausibility())
        if not learn:
            self.pipeline._processor.heads = _NoHeads()

    def _get(self, meter: str) -> MeterEntry | None:
        return self.registered if meter == METER else None

    def ingest(self, frames: list[bytes]) -> BatchOutcome:
        outcome = self.pipeline.process((f, 60.0 + k) for k, f in enumerate(frames))
        for reading in outcome.accepted:
            state = self.pipeline._current(reading.meter)
            assert state is not None
            self.states[reading.meter] = state
        self.pipeline.commit_done(outcome.accepted)
        return outcome


def _reasons(outcome: BatchOutcome) -> list[tuple[Reason, str]]:
    return [(r.reason, r.meter) for r in outcome.rejected]


def test_later_frames_of_a_meter_use_its_learnt_header() -> None:
    """After the first frame the header is known, and the next readings are the same."""
    learning, plain = _Gateway(entry()), _Gateway(entry(), learn=False)
    frames = [frame(access=a) for a in (7, 8, 9)]
    first, second = learning.ingest(frames), plain.ingest(frames)
    assert len(learning.pipeline._processor.heads) == 1
    assert first.accepted == second.accepted
    assert len(first.accepted) == 3


def test_first_frame_of_a_meter_sets_up_the_context_its_later_frames_use() -> None:
    """The header decode path decrypts with the instance's context of the key, so the
    meter's later frames (known header) find it and no other is set up."""
    gateway = _Gateway(entry())
    gateway.ingest([frame(access=7)])
    assert len(gateway.pipeline._processor.ciphers) == 1
    assert len(gateway.ingest([frame(access=8), frame(access=9)]).accepted) == 2
    assert len(gateway.pipeline._processor.ciphers) == 1


def test_changed_registry_entry_after_learning_gives_the_full_reason() -> None:
    """A mode, manufacturer or key changed in the registry is refused as without a head."""
    changes = [
        (dataclasses.replace(entry(), security=7), Reason.SECURITY_MISMATCH),
        (dataclasses.replace(entry(), manufacturer="ABC"), Reason.UNKNOWN_METER),
        (dataclasses.replace(entry(), key=OTHER_KEY), Reason.WRONG_KEY),
        (None, Reason.UNKNOWN_METER),
    ]
    for changed, reason in changes:
        gateway = _Gateway(entry())
        assert gateway.ingest([frame(access=7)]).accepted
        gateway.registered = changed
        outcome = gateway.ingest([frame(access=8)])
        assert _reasons(outcome) == [(reason, METER)]


def test_header_failing_the_mode_check_is_not_learnt() -> None:
    """Only headers that passed the security-mode check are kept: N = 0 in mode 5 is not."""
    built = telegram(5)
    assert built.tpl is not None
    assert built.application_data is not None
    open_mode5 = dataclasses.replace(
        built,
        tpl=dataclasses.replace(built.tpl, config=make_config(security_mode=5)),
        payload=built.application_data,
    )
    gateway = _Gateway(entry())
    outcome = gateway.ingest([encode_telegram(open_mode5), encode_telegram(open_mode5)])
    assert _reasons(outcome) == [(Reason.SECURITY_MISMATCH, METER)] * 2
    assert len(gateway.pipeline._processor.heads) == 0


_EDITS = st.lists(st.tuples(st.integers(10, 70), st.integers(0, 255)), max_size=3)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=st.sampled_from([0, 5]),
    batches=st.lists(st.lists(st.tuples(st.integers(0, 255), _EDITS), max_size=4), max_size=4),
    key=st.sampled_from([KEY, OTHER_KEY]),
)
def test_learning_never_changes_an_outcome(
    mode: int, batches: list[list[tuple[int, list[tuple[int, int]]]]], key: bytes
) -> None:
    """Frames with other ACC, STS, CFG or payload bytes: the same readings and rejections."""
    learning, plain = _Gateway(entry(mode)), _Gateway(entry(mode), learn=False)
    for batch in batches:
        frames = []
        for access, edits in batch:
            body = bytearray(encode_telegram(telegram(mode, access), key=key, crcs=False))
            for position, byte in edits:
                if position < len(body):
                    body[position] = byte
            frames.append(add_crcs_a(bytes(body)))
        one, other = learning.ingest(frames), plain.ingest(frames)
        assert one.accepted == other.accepted
        assert [(r.reason, r.message, r.meter) for r in one.rejected] == [
            (r.reason, r.message, r.meter) for r in other.rejected
        ]
        assert all(isinstance(r, Rejection) for r in one.rejected)


@settings(max_examples=100, deadline=None)
@given(
    key=st.binary(min_size=15, max_size=17),
    iv=st.binary(min_size=16, max_size=16),
    payload=st.binary(max_size=80),
    blocks=st.integers(min_value=0, max_value=5),
    opened=st.booleans(),
)
def test_instance_ciphers_decrypt_as_the_codec_does(
    key: bytes, iv: bytes, payload: bytes, blocks: int, opened: bool
) -> None:
    """Ciphers.decrypt_mode5 returns what decrypt_mode5_iv returns, or raises the same error."""
    if opened and len(key) == 16 and blocks:  # a payload that does open: 2F 2F first
        plain = (b"\x2f\x2f" + payload).ljust(blocks * 16, b"\x2f")
        size = blocks * 16
        payload = cbc_encrypt(key, iv, plain[:size]) + plain[size:]
    ciphers = Ciphers()
    for _ in range(2):  # the second time through the kept context
        try:
            expected: bytes | str = decrypt_mode5_iv(key, iv, payload, blocks)
        except ProtocolError as exc:
            expected = f"{type(exc).__name__} {exc.reason}"
        try:
            got: bytes | str = ciphers.decrypt_mode5(key, iv, payload, blocks)
        except ProtocolError as exc:
            got = f"{type(exc).__name__} {exc.reason}"
        assert got == expected
