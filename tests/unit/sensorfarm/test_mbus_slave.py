"""The wired M-Bus slave state machine, bytes in and bytes out."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from smtestbed.proto.mbus import (
    SecondaryAddress,
    VariableData,
    decode_response,
    encode_application_reset,
    encode_req_ud2,
    encode_select,
    encode_set_primary_address,
    encode_snd_nke,
    parse_frame,
)
from smtestbed.proto.mbus.frames import encode_long, encode_short
from smtestbed.proto.records import Record, new_record
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.sensorfarm.mbus_slave import (
    MAX_RECORD_BYTES,
    MbusSlave,
    WiredMeter,
    split_telegrams,
)

ACK = b"\xe5"


class Counter:
    """A meter whose energy register is set by the test."""

    def __init__(self, energy_wh: int = 1000, extra: int = 0) -> None:
        self.energy_wh = energy_wh
        self.extra = extra

    def records(self) -> Sequence[Record]:
        main = [
            new_record(quantity="energy", unit="Wh", value=self.energy_wh, exponent=0),
            new_record(quantity="volume", value=12.5, exponent=-3),
        ]
        more = [
            new_record(quantity="power", unit="W", value=n, tariff=n + 1) for n in range(self.extra)
        ]
        return main + more


def make_slave(
    counter: Counter,
    *,
    ident: str = "12345678",
    address: int = 5,
    per_telegram: int | None = None,
    version: int = 0x21,
) -> MbusSlave:
    meter = WiredMeter(
        ident=ident,
        manufacturer="ABC",
        version=version,
        medium=0x02,
        primary_address=address,
        records=counter.records,
    )
    return MbusSlave(meter, records_per_telegram=per_telegram, access_number=7)


def send(slave: MbusSlave, data: bytes) -> bytes | None:
    """Give the slave one encoded frame; return its answer."""
    return slave.handle(parse_frame(data))


def read(slave: MbusSlave, address: int = 5, *, fcb: bool = False) -> VariableData:
    """Send REQ_UD2 and decode the variable data of the answer."""
    reply = send(slave, encode_req_ud2(address, fcb=fcb))
    assert reply is not None
    payload = decode_response(reply).payload
    assert isinstance(payload, VariableData)
    return payload


def values(data: VariableData) -> list[object]:
    return [record.value for record in data.block.records]


def test_snd_nke_is_acknowledged_with_e5() -> None:
    """SND_NKE to the slave's primary address gets the single character E5."""
    assert send(make_slave(Counter()), encode_snd_nke(5)) == ACK


def test_req_ud2_returns_header_and_current_records() -> None:
    """REQ_UD2 gets RSP_UD CI 0x72 with the meter's identity and its records now."""
    counter = Counter(energy_wh=4242)
    reply = send(make_slave(counter), encode_req_ud2(5))
    assert reply is not None
    response = decode_response(reply)
    assert (response.c, response.a) == (0x08, 5)
    payload = response.payload
    assert isinstance(payload, VariableData)
    info = payload.info
    assert (info.ident, info.manufacturer, info.version, info.medium) == (
        "12345678",
        "ABC",
        0x21,
        2,
    )
    assert (info.access_number, info.status, info.signature) == (7, 0, 0)
    assert values(payload) == [4242, 12.5]
    assert not payload.block.more_follow


def test_access_number_increments_per_new_telegram() -> None:
    """Each new telegram carries the next access number, wrapping at 256."""
    slave = MbusSlave(make_slave(Counter()).meter, access_number=255)
    numbers = [read(slave, fcb=index % 2 == 1).info.access_number for index in range(3)]
    assert numbers == [255, 0, 1]


def test_repeated_fcb_repeats_the_last_telegram_byte_for_byte() -> None:
    """A REQ_UD2 with the same FCB as before gets the very same telegram again."""
    counter = Counter(energy_wh=100)
    slave = make_slave(counter)
    first = send(slave, encode_req_ud2(5, fcb=True))
    counter.energy_wh = 200
    assert send(slave, encode_req_ud2(5, fcb=True)) == first


def test_toggled_fcb_gets_a_new_telegram_with_new_values() -> None:
    """A toggled FCB starts the next readout with the values the meter holds now."""
    counter = Counter(energy_wh=100)
    slave = make_slave(counter)
    first = read(slave, fcb=True)
    counter.energy_wh = 200
    second = read(slave, fcb=False)
    assert values(first)[0] == 100
    assert values(second)[0] == 200
    assert second.info.access_number == first.info.access_number + 1


def test_snd_nke_clears_the_frame_count_state() -> None:
    """After SND_NKE the same FCB as before is a new request, not a repeat."""
    counter = Counter(energy_wh=100)
    slave = make_slave(counter)
    read(slave, fcb=False)
    counter.energy_wh = 300
    send(slave, encode_snd_nke(5))
    assert values(read(slave, fcb=False))[0] == 300


def test_records_per_telegram_splits_a_readout_with_dif_1f() -> None:
    """With 2 records per telegram, 5 records take 3 telegrams; all but the last end in 0x1F."""
    counter = Counter(energy_wh=55, extra=3)
    slave = make_slave(counter, per_telegram=2)
    parts = [read(slave, fcb=index % 2 == 1) for index in range(3)]
    assert [part.block.more_follow for part in parts] == [True, True, False]
    assert [len(part.block.records) for part in parts] == [2, 2, 1]
    joined = [value for part in parts for value in values(part)]
    assert joined == [55, 12.5, 0, 1, 2]


def test_repeat_inside_a_multi_telegram_readout_repeats_that_part() -> None:
    """A lost second telegram is sent again when the master repeats its FCB."""
    slave = make_slave(Counter(extra=3), per_telegram=2)
    read(slave, fcb=True)
    second = send(slave, encode_req_ud2(5, fcb=False))
    assert send(slave, encode_req_ud2(5, fcb=False)) == second


def test_readout_takes_the_records_once_so_its_telegrams_agree() -> None:
    """Values changing during a multi-telegram readout only show in the next readout."""
    counter = Counter(energy_wh=10, extra=2)
    slave = make_slave(counter, per_telegram=2)
    read(slave, fcb=True)
    counter.energy_wh, counter.extra = 20, 4
    last = read(slave, fcb=False)
    assert not last.block.more_follow
    assert values(last) == [0, 1]
    assert values(read(slave, fcb=True))[0] == 20


def test_snd_nke_restarts_a_readout_at_its_first_telegram() -> None:
    """SND_NKE in the middle of a multi-telegram readout starts over."""
    slave = make_slave(Counter(energy_wh=77, extra=3), per_telegram=2)
    read(slave, fcb=True)
    send(slave, encode_snd_nke(5))
    assert values(read(slave, fcb=False))[:1] == [77]


def test_long_readout_is_split_where_a_telegram_is_full() -> None:
    """Records beyond one telegram's 239 bytes go on in further telegrams."""
    slave = make_slave(Counter(extra=60))
    parts = [read(slave, fcb=index % 2 == 1) for index in range(3)]
    assert [part.block.more_follow for part in parts] == [True, True, False]
    sizes = [sum(len(r.to_bytes()) for r in part.block.records) for part in parts]
    assert all(size <= MAX_RECORD_BYTES for size in sizes)
    assert sum(len(part.block.records) for part in parts) == 62


def test_split_telegrams_without_records_gives_one_empty_block() -> None:
    """A meter without records still answers with one header-only telegram."""
    blocks = split_telegrams([])
    assert len(blocks) == 1
    assert blocks[0].records == ()
    assert not blocks[0].more_follow


def test_selection_with_wildcards_acknowledges_and_opens_address_fd() -> None:
    """A matching wildcard selection gets E5, then REQ_UD2 to 0xFD is answered."""
    slave = make_slave(Counter(energy_wh=9))
    pattern = SecondaryAddress(ident="1234FFFF")
    assert send(slave, encode_select(pattern)) == ACK
    assert slave.selected
    assert values(read(slave, 0xFD))[0] == 9


def test_selection_matches_manufacturer_version_and_medium() -> None:
    """A full secondary address selects; one with another version does not."""
    slave = make_slave(Counter())
    exact = slave.secondary_address
    other = SecondaryAddress(ident="12345678", manufacturer_code=exact.manufacturer_code, version=3)
    assert send(slave, encode_select(other)) is None
    assert send(slave, encode_select(exact)) == ACK


def test_non_matching_selection_is_silent_and_deselects() -> None:
    """A selection for another meter gets no answer and ends this slave's selection."""
    slave = make_slave(Counter())
    send(slave, encode_select(SecondaryAddress(ident="12345678")))
    assert send(slave, encode_select(SecondaryAddress(ident="9999FFFF"))) is None
    assert not slave.selected
    assert send(slave, encode_req_ud2(0xFD)) is None


def test_snd_nke_to_fd_acknowledges_and_deselects() -> None:
    """SND_NKE to 0xFD is acknowledged by the selected slave, which then stops answering 0xFD."""
    slave = make_slave(Counter())
    send(slave, encode_select(SecondaryAddress(ident="FFFFFFFF")))
    assert send(slave, encode_snd_nke(0xFD)) == ACK
    assert send(slave, encode_req_ud2(0xFD)) is None


def test_unselected_slave_ignores_address_fd() -> None:
    """Without a selection, frames to 0xFD get no answer."""
    slave = make_slave(Counter())
    assert send(slave, encode_snd_nke(0xFD)) is None
    assert send(slave, encode_req_ud2(0xFD)) is None


def test_set_primary_address_moves_the_slave() -> None:
    """CI 0x51 with 01 7A 17 is acknowledged; the slave then answers 17, not 5."""
    slave = make_slave(Counter())
    assert send(slave, encode_set_primary_address(5, 17)) == ACK
    assert slave.primary_address == 17
    assert send(slave, encode_snd_nke(5)) is None
    assert decode_response(send(slave, encode_req_ud2(17)) or b"").a == 17


def test_set_primary_address_out_of_range_is_ignored() -> None:
    """A new address above 250 gets no answer and changes nothing."""
    slave = make_slave(Counter())
    frame = encode_long(0x53, 5, 0x51, bytes([0x01, 0x7A, 251]))
    assert send(slave, frame) is None
    assert slave.primary_address == 5


def test_application_reset_is_acknowledged_with_and_without_subcode() -> None:
    """CI 0x50 as a control frame or with a subcode byte gets E5."""
    slave = make_slave(Counter())
    assert send(slave, encode_application_reset(5)) == ACK
    assert send(slave, encode_application_reset(5, 0x10, fcb=True)) == ACK


def test_broadcast_fe_is_answered() -> None:
    """Address 0xFE (broadcast with reply) is answered by the slave."""
    slave = make_slave(Counter())
    assert send(slave, encode_snd_nke(0xFE)) == ACK
    assert read(slave, 0xFE).info.ident == "12345678"


def test_broadcast_ff_is_applied_without_answer() -> None:
    """Address 0xFF: a set-address command takes effect, but nothing is sent back."""
    slave = make_slave(Counter())
    assert send(slave, encode_req_ud2(0xFF)) is None
    assert send(slave, encode_set_primary_address(0xFF, 33)) is None
    assert slave.primary_address == 33


def test_frames_for_other_addresses_get_no_answer() -> None:
    """SND_NKE and REQ_UD2 for address 6 leave slave 5 silent."""
    slave = make_slave(Counter())
    assert send(slave, encode_snd_nke(6)) is None
    assert send(slave, encode_req_ud2(6)) is None


@pytest.mark.parametrize(
    "frame",
    [
        b"\xe5",
        encode_short(0x08, 5),
        encode_short(0x4A, 5),
        encode_long(0x53, 5, 0x51, b"\x04\x13\x00\x00\x00\x00"),
        encode_long(0x08, 5, 0x72, bytes(12)),
    ],
    ids=["ack", "rsp-short", "unknown-c", "unknown-data", "slave-telegram"],
)
def test_unsupported_frames_get_no_answer(frame: bytes) -> None:
    """ACKs, frames from slaves, unknown C fields and data sends get no answer."""
    assert send(make_slave(Counter()), frame) is None


def test_primary_address_outside_0_to_250_is_a_config_error() -> None:
    """A meter at address 251 cannot be built; the error names the field."""
    with pytest.raises(ConfigError, match="primary_address"):
        make_slave(Counter(), address=251)


def test_repeated_request_after_a_new_primary_address_answers_with_the_new_address() -> None:
    """After set-primary-address the kept telegram is dropped: the reply carries the new address.

    Found by ``smtb fuzz mbus-slave``: REQ_UD2 (FCB 0), set address 5 -> 7, REQ_UD2 (FCB 0)
    to the broadcast address returned the kept telegram still saying address 5.
    """
    from smtestbed.proto.mbus import decode_response, encode_set_primary_address, encode_short

    slave = make_slave(Counter(), address=5, per_telegram=2)
    first = send(slave, encode_short(0x5B, 5))
    assert first is not None
    assert decode_response(first).a == 5
    assert send(slave, encode_set_primary_address(5, 7)) == b"\xe5"
    again = send(slave, encode_short(0x5B, 0xFE))
    assert again is not None
    assert decode_response(again).a == 7
