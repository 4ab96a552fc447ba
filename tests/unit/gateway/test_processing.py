"""Gateway measurement processing: every rejection reason, accepted values, the batch overlay."""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from array import array

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from smtestbed.proto.batch import FrameBatch
from smtestbed.proto.records import DataType, Function, decode_records, new_record
from smtestbed.proto.wmbus import MeterAddress, Telegram, encode_telegram, new_telegram
from smtestbed.proto.wmbus.afl import FCL_MCR, Afl
from smtestbed.proto.wmbus.link import add_crcs_a
from smtestbed.proto.wmbus.transport import make_config
from smtestbed.services.gateway.layouts import RecordLayouts
from smtestbed.services.gateway.processing import (
    ACC_WINDOW,
    Pipeline,
    Plausibility,
    next_state,
    process_frame,
    received_frames,
)
from smtestbed.services.gateway.schema import (
    MeterEntry,
    MeterState,
    Reading,
    Reason,
    Rejection,
    Value,
)

KEY = bytes(range(16))
OTHER_KEY = bytes(range(1, 17))
METER = "12345678"
ADDRESS = MeterAddress(manufacturer=0x15A8, ident=0x12345678, version=1, device_type=2)  # EMH
ENERGY = ("energy", "Wh", 0, 0, 0)


def records(
    energy: float = 123_456, volume: float = 12.345, power: float = 1500, flow: float = 0.5
) -> bytes:
    """Return energy (Wh), volume (m^3), power (W) and volume flow (m^3/h) records."""
    return b"".join(
        new_record(quantity=quantity, unit=unit, value=value, data_type=DataType.INT32).to_bytes()
        for quantity, unit, value in (
            ("energy", "Wh", energy),
            ("volume", "m^3", volume),
            ("power", "W", power),
            ("volume_flow", "m^3/h", flow),
        )
    )


def telegram(
    mode: int = 5, access: int = 7, counter: int = 40, apl: bytes | None = None
) -> Telegram:
    """Describe a meter telegram of ADDRESS in ``mode`` (records() unless ``apl`` is given)."""
    return new_telegram(
        address=ADDRESS,
        records=records() if apl is None else apl,
        access_number=access,
        security_mode=mode,
        counter=counter,
    )


def frame(
    mode: int = 5, access: int = 7, counter: int = 40, apl: bytes | None = None, key: bytes = KEY
) -> bytes:
    """Return an on-air format A frame, sealed with ``key`` in modes 5 and 7."""
    return encode_telegram(telegram(mode, access, counter, apl), key=key if mode else None)


def entry(mode: int = 5, manufacturer: str = "EMH") -> MeterEntry:
    """Return the registry entry of METER for ``mode``."""
    return MeterEntry(
        meter=METER, manufacturer=manufacturer, key=KEY if mode else b"", security=mode
    )


def check(
    data: bytes,
    *,
    registered: MeterEntry | None = None,
    state: MeterState | None = None,
    limits: Plausibility | None = None,
    t_sim: float = 60.0,
) -> Reading | Rejection:
    """Run process_frame with METER registered as ``registered`` (mode 5 by default)."""
    known = registered or entry()
    return process_frame(
        data,
        t_sim=t_sim,
        registry=lambda meter: known if meter == METER else None,
        state=lambda meter: state,
        limits=limits or Plausibility(),
    )


def rejection(result: Reading | Rejection) -> Rejection:
    """Return ``result`` as a Rejection, failing the test if it is a Reading."""
    assert isinstance(result, Rejection), result
    return result


def state(access: int = 7, counter: int = 40, energy: float = 100_000.0) -> MeterState:
    """Return a meter state after a reading with ``access``, ``counter`` and ``energy``."""
    return MeterState(
        t_sim=0.0, access_number=access, message_counter=counter, counters={ENERGY: energy}
    )


# -- accepted ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0, 5, 7])
def test_accepted_frame_gives_reading_with_record_values(mode: int) -> None:
    """An intact frame gives a reading with the decoded values, the caller's time, the digest."""
    data = frame(mode, access=9, counter=41)
    result = check(data, registered=entry(mode), t_sim=123.5)
    assert isinstance(result, Reading)
    assert (result.meter, result.t_sim, result.access_number) == (METER, 123.5, 9)
    assert result.message_counter == (41 if mode == 7 else 0)
    assert result.frame_digest == hashlib.sha256(data).digest()
    assert [(v.quantity, v.unit, v.value) for v in result.values] == [
        ("energy", "Wh", 123_456.0),
        ("volume", "m^3", 12.345),
        ("power", "W", 1500.0),
        ("volume_flow", "m^3/h", 0.5),
    ]
    assert {(v.storage_number, v.tariff, v.subunit, v.function) for v in result.values} == {
        (0, 0, 0, "instantaneous")
    }


def test_storage_tariff_and_subunit_reach_the_values() -> None:
    """A historic, tariff-2, subunit-1 maximum record keeps those fields in its value."""
    apl = (
        records()
        + new_record(
            quantity="energy",
            unit="Wh",
            value=99_000,
            storage_number=3,
            tariff=2,
            subunit=1,
            function=Function.MAXIMUM,
        ).to_bytes()
    )
    result = check(frame(apl=apl))
    assert isinstance(result, Reading)
    last = result.values[-1]
    assert (last.value, last.storage_number, last.tariff, last.subunit) == (99_000.0, 3, 2, 1)
    assert last.function == "maximum"


def test_counter_equal_to_last_is_accepted() -> None:
    """A counter that did not move (no consumption) is accepted with the next access number."""
    result = check(frame(access=8), state=state(access=7, energy=123_456.0))
    assert isinstance(result, Reading)


# -- link layer ----------------------------------------------------------------------------


def test_bit_error_in_a_data_block_is_bad_crc_naming_the_meter() -> None:
    """A flipped bit after block 1 fails that block's CRC; the intact header names the meter."""
    data = bytearray(frame())
    data[20] ^= 0x04
    refused = rejection(check(bytes(data)))
    assert refused.reason is Reason.BAD_CRC
    assert refused.meter == METER
    assert "CRC of block 2" in refused.message
    assert refused.t_sim == 60.0


def test_bit_error_in_the_header_is_bad_crc_without_meter() -> None:
    """A flipped bit in the ID fails block 1's CRC; its ID cannot be trusted, so none is named."""
    data = bytearray(frame())
    data[5] ^= 0x01
    refused = rejection(check(bytes(data)))
    assert refused.reason is Reason.BAD_CRC
    assert refused.meter == ""


def test_cut_frame_is_malformed_frame() -> None:
    """A frame that ends inside a block is a malformed frame, not a CRC failure."""
    refused = rejection(check(frame()[:-3]))
    assert refused.reason is Reason.MALFORMED_FRAME
    assert "ends inside block" in refused.message


def test_unknown_ci_is_malformed_frame() -> None:
    """A frame whose CI is no transport layer is malformed."""
    plain = bytearray(encode_telegram(telegram(0), crcs=False))
    plain[10] = 0x55
    refused = rejection(check(add_crcs_a(bytes(plain)), registered=entry(0)))
    assert refused.reason is Reason.MALFORMED_FRAME
    assert "0x55" in refused.message


# -- registry and security -----------------------------------------------------------------


def test_unregistered_meter_is_unknown_meter() -> None:
    """A meter ID the registry does not know is refused as unknown, naming the ID."""
    result = process_frame(
        frame(),
        t_sim=1.0,
        registry=lambda meter: None,
        state=lambda meter: None,
        limits=Plausibility(),
    )
    refused = rejection(result)
    assert refused.reason is Reason.UNKNOWN_METER
    assert refused.meter == METER
    assert "not registered" in refused.message


def test_other_manufacturer_is_unknown_meter() -> None:
    """A registered ID sent under another manufacturer code is an unknown meter."""
    refused = rejection(check(frame(), registered=entry(manufacturer="KAM")))
    assert refused.reason is Reason.UNKNOWN_METER
    assert refused.meter == METER
    assert "KAM" in refused.message
    assert "EMH" in refused.message


@pytest.mark.parametrize(("sent", "registered"), [(0, 5), (0, 7), (5, 7), (7, 5), (5, 0)])
def test_other_security_mode_is_security_mismatch(sent: int, registered: int) -> None:
    """A frame in another mode than registered is refused, plaintext for mode 5/7 above all."""
    refused = rejection(check(frame(sent), registered=entry(registered)))
    assert refused.reason is Reason.SECURITY_MISMATCH
    assert refused.meter == METER
    assert f"security mode {sent}" in refused.message


def test_mode5_frame_encrypting_no_block_is_security_mismatch() -> None:
    """A frame that declares mode 5 yet carries its records in plaintext (N = 0) is refused."""
    built = telegram(5)
    assert built.tpl is not None
    assert built.application_data is not None
    plain = dataclasses.replace(
        built,
        tpl=dataclasses.replace(built.tpl, config=make_config(security_mode=5)),
        payload=built.application_data,
    )
    refused = rejection(check(encode_telegram(plain)))
    assert refused.reason is Reason.SECURITY_MISMATCH
    assert "encrypts no block" in refused.message


def test_mode5_frame_under_another_key_is_wrong_key() -> None:
    """A mode-5 frame sealed with another key fails the 2F 2F check: wrong key."""
    refused = rejection(check(frame(5, key=OTHER_KEY)))
    assert refused.reason is Reason.WRONG_KEY
    assert refused.meter == METER
    assert "2F 2F" in refused.message


def test_mode7_frame_under_another_key_is_bad_mac() -> None:
    """A mode-7 frame sealed with another key fails the MAC, checked before decryption."""
    refused = rejection(check(frame(7, key=OTHER_KEY), registered=entry(7)))
    assert refused.reason is Reason.BAD_MAC
    assert refused.meter == METER


def test_mode7_authentic_plaintext_without_2f2f_is_wrong_key() -> None:
    """A MAC that matches over plaintext lacking 2F 2F fails the 2F 2F check: wrong key."""
    built = dataclasses.replace(telegram(7), application_data=records())
    refused = rejection(check(encode_telegram(built, key=KEY), registered=entry(7)))
    assert refused.reason is Reason.WRONG_KEY
    assert "2F 2F" in refused.message


def test_altered_mode7_ciphertext_is_bad_mac() -> None:
    """One changed ciphertext byte (CRCs recomputed, as a forger would) fails the AFL MAC."""
    plain = bytearray(encode_telegram(telegram(7), key=KEY, crcs=False))
    plain[-5] ^= 0x80
    refused = rejection(check(add_crcs_a(bytes(plain)), registered=entry(7)))
    assert refused.reason is Reason.BAD_MAC
    assert "MAC" in refused.message


def test_mode7_frame_without_mac_is_bad_mac() -> None:
    """A mode-7 frame whose AFL carries a counter but no MAC is refused as bad MAC."""
    built = dataclasses.replace(telegram(7), afl=Afl(fcl=FCL_MCR, counter=40))
    refused = rejection(check(encode_telegram(built, key=KEY), registered=entry(7)))
    assert refused.reason is Reason.BAD_MAC
    assert "no AFL MAC" in refused.message


# -- replay --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last", "access", "accepted"),
    [
        (7, 7, False),  # repeat with other bytes
        (7, 6, False),  # one behind
        (7, 7 + ACC_WINDOW - 1, True),  # furthest ahead allowed
        (7, (7 + ACC_WINDOW) % 256, False),  # half the ring ahead: behind
        (250, 3, True),  # wrapped round 255 -> 0
        (3, 250, False),  # behind across the wrap
    ],
)
def test_mode5_access_number_window(last: int, access: int, accepted: bool) -> None:
    """Mode 5 accepts an access number 1..127 ahead of the last (mod 256), else replay."""
    result = check(frame(5, access=access, apl=records(energy=200_000)), state=state(last))
    if accepted:
        assert isinstance(result, Reading)
        return
    refused = rejection(result)
    assert refused.reason is Reason.REPLAY
    assert refused.meter == METER
    assert f"access number {access}" in refused.message


@pytest.mark.parametrize(("counter", "accepted"), [(39, False), (40, False), (41, True)])
def test_mode7_message_counter_must_rise(counter: int, accepted: bool) -> None:
    """Mode 7 accepts only a message counter above the last accepted one."""
    result = check(frame(7, counter=counter), registered=entry(7), state=state(counter=40))
    if accepted:
        assert isinstance(result, Reading)
        return
    refused = rejection(result)
    assert refused.reason is Reason.REPLAY
    assert f"message counter {counter}" in refused.message


def test_repeat_of_last_frame_is_replay_without_pipeline() -> None:
    """Alone, process_frame cannot tell a second copy from a replay and refuses it."""
    data = frame(access=7)
    first = check(data)
    assert isinstance(first, Reading)
    again = rejection(check(data, state=next_state(None, first)))
    assert again.reason is Reason.REPLAY


# -- records and plausibility --------------------------------------------------------------


@pytest.mark.parametrize(
    ("apl", "text"),
    [
        (b"\x3f", "reserved special DIF"),
        (b"\x0c\x13\x1a\x00\x00\x00", "not a number"),  # BCD8 volume with digit A
    ],
)
def test_bad_records_are_malformed_record(apl: bytes, text: str) -> None:
    """A reserved DIF or a BCD digit above 9 in a decrypted payload is a malformed record."""
    refused = rejection(check(frame(apl=apl)))
    assert refused.reason is Reason.MALFORMED_RECORD
    assert refused.meter == METER
    assert text in refused.message


def test_cut_record_in_mode0_is_malformed_record() -> None:
    """A mode-0 payload ending inside an int32 field is a malformed record."""
    refused = rejection(check(frame(0, apl=b"\x04\x03\x01\x02"), registered=entry(0)))
    assert refused.reason is Reason.MALFORMED_RECORD
    assert "premature end" in refused.message


def test_lower_counter_is_counter_backwards() -> None:
    """An energy total below the last accepted one is refused as going backwards."""
    refused = rejection(check(frame(access=8), state=state(energy=200_000.0)))
    assert refused.reason is Reason.COUNTER_BACKWARDS
    assert refused.meter == METER
    assert "123456.0" in refused.message
    assert "200000.0" in refused.message


def test_lower_historic_value_is_not_counter_backwards() -> None:
    """Only current (storage 0) counters are compared; a lower historic value passes."""
    apl = (
        records(energy=300_000)
        + new_record(quantity="energy", unit="Wh", value=1_000, storage_number=1).to_bytes()
    )
    previous = MeterState(
        t_sim=0.0,
        access_number=7,
        message_counter=0,
        counters={ENERGY: 200_000.0, ("energy", "Wh", 1, 0, 0): 5_000.0},
    )
    assert isinstance(check(frame(access=8, apl=apl), state=previous), Reading)


@pytest.mark.parametrize(
    ("apl", "text"),
    [
        (records(power=5_000_000), "power 5000000.0 W"),
        (records(energy=-5), "counter energy is negative"),
        (
            records() + new_record(quantity="flow_temperature", unit="°C", value=300).to_bytes(),
            "flow_temperature 300.0 °C",
        ),
        (
            records() + b"\x05\x2b" + struct.pack("<f", float("nan")),
            "power nan W",
        ),
    ],
)
def test_values_out_of_range_are_implausible(apl: bytes, text: str) -> None:
    """Absurd power, a negative counter, a boiling flow or a NaN are implausible values."""
    refused = rejection(check(frame(apl=apl)))
    assert refused.reason is Reason.IMPLAUSIBLE_VALUE
    assert refused.meter == METER
    assert text in refused.message


def test_configured_range_replaces_default() -> None:
    """Limits from the caller decide: 1500 W passes by default and fails a 1 kW limit."""
    tight = Plausibility(ranges={("power", "W"): (0.0, 1000.0)})
    assert isinstance(check(frame()), Reading)
    assert rejection(check(frame(), limits=tight)).reason is Reason.IMPLAUSIBLE_VALUE


# -- pipeline and overlay ------------------------------------------------------------------


class States:
    """The store's side of meter states: what a committed transaction leaves."""

    def __init__(self) -> None:
        self.states: dict[str, MeterState] = {}

    def get(self, meter: str) -> MeterState | None:
        return self.states.get(meter)

    def commit(self, readings: list[Reading]) -> None:
        for reading in readings:
            self.states[reading.meter] = next_state(self.states.get(reading.meter), reading)


def pipeline(store: States, mode: int = 5) -> Pipeline:
    """Return a pipeline with METER registered in ``mode``."""
    known = entry(mode)
    return Pipeline(lambda meter: known if meter == METER else None, store.get, Plausibility())


def test_overlay_catches_replay_within_one_batch() -> None:
    """Two frames of one meter with the same access number in one batch: the second is a replay."""
    outcome = pipeline(States()).process(
        [
            (frame(access=5, apl=records(energy=100)), 1.0),
            (frame(access=5, apl=records(energy=101)), 2.0),
        ]
    )
    assert [r.access_number for r in outcome.accepted] == [5]
    assert [(r.reason, r.t_sim) for r in outcome.rejected] == [(Reason.REPLAY, 2.0)]


def test_overlay_catches_backwards_counter_within_one_batch() -> None:
    """A lower energy total right after a higher one in the same batch goes backwards."""
    outcome = pipeline(States()).process(
        [
            (frame(access=5, apl=records(energy=500)), 1.0),
            (frame(access=6, apl=records(energy=400)), 2.0),
        ]
    )
    assert [r.values[0].value for r in outcome.accepted] == [500.0]
    assert [r.reason for r in outcome.rejected] == [Reason.COUNTER_BACKWARDS]


def test_copy_of_accepted_frame_is_counted_as_duplicate() -> None:
    """The same bytes heard twice (two receivers) give one reading and one duplicate."""
    data = frame(access=5)
    outcome = pipeline(States()).process([(data, 1.0), (data, 1.001)])
    assert [r.t_sim for r in outcome.accepted] == [1.0]
    assert (outcome.rejected, outcome.duplicates) == ([], 1)


def test_committed_readings_are_checked_against_the_store() -> None:
    """After commit_done the store's state decides; a copy of the committed frame stays a copy."""
    store = States()
    line = pipeline(store)
    first = line.process([(frame(access=5, apl=records(energy=500)), 1.0)])
    store.commit(first.accepted)
    line.commit_done(first.accepted)
    second = line.process(
        [
            (frame(access=5, apl=records(energy=500)), 2.0),
            (frame(access=6, apl=records(energy=400)), 3.0),
        ]
    )
    assert second.duplicates == 1
    assert [r.reason for r in second.rejected] == [Reason.COUNTER_BACKWARDS]


def test_discard_forgets_uncommitted_readings() -> None:
    """After a failed transaction the same frame is accepted again, not a copy or a replay."""
    line = pipeline(States())
    data = frame(access=5)
    assert len(line.process([(data, 1.0)]).accepted) == 1
    line.discard()
    again = line.process([(data, 2.0)])
    assert [r.t_sim for r in again.accepted] == [2.0]
    assert again.duplicates == 0


def test_commit_done_keeps_a_newer_uncommitted_reading() -> None:
    """Committing batch 1 keeps batch 2's reading of the meter in the overlay."""
    store = States()
    line = pipeline(store)
    first = line.process([(frame(access=5, apl=records(energy=500)), 1.0)])
    line.process([(frame(access=6, apl=records(energy=600)), 2.0)])
    store.commit(first.accepted)
    line.commit_done(first.accepted)
    third = line.process([(frame(access=6, apl=records(energy=650)), 3.0)])
    assert [r.reason for r in third.rejected] == [Reason.REPLAY]


def test_unknown_meters_in_a_batch_are_rejected_not_accepted() -> None:
    """A batch mixes meters: the unregistered one is rejected, the registered one accepted."""
    stranger = dataclasses.replace(ADDRESS, ident=0x87654321)
    other = encode_telegram(
        new_telegram(address=stranger, records=records(), access_number=1, security_mode=5),
        key=KEY,
    )
    outcome = pipeline(States()).process([(other, 1.0), (frame(), 2.0)])
    assert [r.meter for r in outcome.accepted] == [METER]
    assert [(r.reason, r.meter) for r in outcome.rejected] == [(Reason.UNKNOWN_METER, "87654321")]


def test_received_frames_pairs_frames_with_receive_time() -> None:
    """A sim.received batch yields each frame with its t_rx column value."""
    frames = [frame(access=1), frame(access=2)]
    batch = FrameBatch.from_frames(frames, columns={"t_rx": array("d", [1.5, 2.5])})
    assert list(received_frames(batch)) == [(frames[0], 1.5), (frames[1], 2.5)]


# -- record layouts ------------------------------------------------------------------------


def assorted(energy: int, scale_step: int) -> bytes:
    """Return records of many codings whose values move with ``energy`` and ``scale_step``."""
    parts = [
        new_record(quantity="energy", unit="Wh", value=energy * 1000, exponent=3),
        new_record(quantity="energy", unit="J", value=energy, data_type=DataType.INT48, exponent=0),
        new_record(
            quantity="volume", unit="m^3", value=energy / 1000, data_type=DataType.BCD8, exponent=-3
        ),
        new_record(quantity="power", unit="W", value=-25.5 * scale_step, data_type=DataType.REAL32),
        new_record(quantity="on_time", value=3600 * scale_step),
        new_record(quantity="flow_temperature", unit="°C", value=45.5, data_type=DataType.INT16),
        new_record(
            quantity="date_time", value=decode_records(b"\x04\x6d\x2a\x0b\x61\x23").records[0].value
        ),
        new_record(quantity="fabrication_number", value=12345678, data_type=DataType.BCD8),
    ]
    negative = bytes.fromhex("0483 3c") + (energy * 2).to_bytes(4, "little")
    return b"\x2f\x2f" + b"".join(p.to_bytes() for p in parts) + negative + b"\x2f" * 3


def reference(plain: bytes) -> list[tuple[str, str, float]]:
    """Return the physical values of ``plain`` as decode_records gives them."""
    wanted = []
    for record in decode_records(plain).records:
        if record.quantity in ("date_time", "fabrication_number"):
            continue
        name = record.quantity + ("_negative" if 0x3C in record.vife else "")
        assert isinstance(record.value, int | float)
        wanted.append((name, record.unit, float(record.value)))
    return wanted


def test_layout_values_equal_decoded_records() -> None:
    """Values read through a cached layout equal decode_records, for a second payload too."""
    layouts = RecordLayouts()
    for energy, step in ((1_000, 1), (987_654, 3)):
        plain = assorted(energy, step)
        got = [(v.quantity, v.unit, v.value) for v in layouts.values(plain)]
        assert got == reference(plain)
    assert len(layouts) == 1


def test_layout_not_reused_for_other_record_bytes() -> None:
    """A payload of the same size but another VIF gets its own layout and its own quantities."""
    layouts = RecordLayouts()
    volume = new_record(quantity="volume", unit="m^3", value=1, data_type=DataType.INT32)
    energy = new_record(quantity="energy", unit="Wh", value=1, data_type=DataType.INT32)
    assert [v.quantity for v in layouts.values(volume.to_bytes())] == ["volume"]
    assert [v.quantity for v in layouts.values(energy.to_bytes())] == ["energy"]
    assert len(layouts) == 2


def test_negative_accumulation_is_its_own_counter() -> None:
    """Electricity A- (VIFE 0x3C) is checked apart from A+: a higher A- passes a lower A+ state."""
    apl = records(energy=150_000) + bytes.fromhex("0483 3c") + (50).to_bytes(4, "little")
    result = check(frame(access=8, apl=apl), state=state(energy=140_000.0))
    assert isinstance(result, Reading)
    assert result.values[-1] == Value(quantity="energy_negative", unit="Wh", value=50.0)


# -- robustness ----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_give_a_rejection(data: bytes) -> None:
    """Random bytes never raise; they give a rejection (no random frame passes every check)."""
    assert isinstance(check(data), Rejection)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=st.sampled_from([0, 5, 7]),
    edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, 40),
    extra=st.binary(max_size=20),
)
def test_mutated_frames_with_valid_crcs_never_raise(
    mode: int, edits: list[tuple[int, int]], cut: int, extra: bytes
) -> None:
    """Changed, cut or extended telegrams (CRCs recomputed) give a reading or a rejection."""
    plain = bytearray(encode_telegram(telegram(mode), key=KEY if mode else None, crcs=False))
    for position, byte in edits:
        if 10 <= position < len(plain):
            plain[position] = byte
    body = bytes(plain[: max(11, len(plain) - cut)]) + extra
    body = bytes((min(len(body) - 1, 255),)) + body[1:256]
    result = check(add_crcs_a(body), registered=entry(mode))
    assert isinstance(result, Reading | Rejection)
    if isinstance(result, Rejection):
        assert result.reason in Reason
