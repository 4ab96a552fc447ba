"""Several slaves on one M-Bus line: collisions, garbage, idle timeout, interruption."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from smtestbed.proto.mbus import (
    VariableData,
    decode_response,
    encode_req_ud2,
    encode_snd_nke,
    parse_frame,
)
from smtestbed.proto.records import new_record
from smtestbed.services._runtime.errors import ProtocolError
from smtestbed.services.sensorfarm.mbus_line import MbusLine, collide
from smtestbed.services.sensorfarm.mbus_slave import MbusSlave, WiredMeter

ACK = b"\xe5"


class ManualClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def slave(ident: str, address: int, energy_wh: int) -> MbusSlave:
    record = new_record(quantity="energy", unit="Wh", value=energy_wh, exponent=0)
    meter = WiredMeter(
        ident=ident,
        manufacturer="ABC",
        version=1,
        medium=0x02,
        primary_address=address,
        records=lambda: [record],
    )
    return MbusSlave(meter)


def energy(reply: bytes) -> object:
    payload = decode_response(reply).payload
    assert isinstance(payload, VariableData)
    return payload.block.records[0].value


def reference_and(replies: list[bytes]) -> bytes:
    """Bit by bit: a 0 from any slave pulls the line to 0; idle is 1."""
    size = max(len(r) for r in replies)
    bits = []
    for index in range(size * 8):
        byte, bit = divmod(index, 8)
        ones = all(byte >= len(r) or (r[byte] >> bit) & 1 for r in replies)
        bits.append(1 if ones else 0)
    return bytes(sum(bits[i * 8 + b] << b for b in range(8)) for i in range(size))


@given(st.lists(st.binary(min_size=1, max_size=20), min_size=2, max_size=4))
def test_collision_is_the_bitwise_and_of_idle_padded_replies(replies: list[bytes]) -> None:
    """collide() matches a bit-by-bit wired-AND of replies padded with idle 1 bits."""
    assert collide(replies) == reference_and(replies)


def test_single_reply_passes_unchanged_and_none_gives_nothing() -> None:
    """One reply is not garbled; no reply gives no bytes."""
    assert collide([b"\x68\x01"]) == b"\x68\x01"
    assert collide([]) == b""


def test_two_slaves_at_one_address_garble_the_telegram() -> None:
    """Two meters at address 1 answer REQ_UD2 together; the master's bytes fail to parse."""
    line = MbusLine([slave("11111111", 1, 1000), slave("22222222", 1, 2345)])
    garbled = line.feed(encode_req_ud2(1))
    with pytest.raises(ProtocolError):
        parse_frame(garbled)
    assert line.collisions == 1


def test_two_acks_at_once_look_like_one() -> None:
    """Two slaves acknowledging SND_NKE together give one E5, as on a real bus."""
    line = MbusLine([slave("11111111", 1, 1000), slave("22222222", 1, 2345)])
    assert line.feed(encode_snd_nke(1)) == ACK
    assert line.collisions == 1


def test_each_slave_answers_its_own_address() -> None:
    """Slaves at addresses 1 and 2 on one line answer only their own requests."""
    line = MbusLine([slave("11111111", 1, 1000), slave("22222222", 2, 2345)])
    assert energy(line.feed(encode_req_ud2(1))) == 1000
    assert energy(line.feed(encode_req_ud2(2))) == 2345
    assert line.feed(encode_req_ud2(3)) == b""
    assert line.collisions == 0


def test_garbage_gets_silence_and_the_next_request_an_answer() -> None:
    """Noise bytes are not answered; a request right after them is."""
    line = MbusLine([slave("11111111", 1, 1000)])
    assert line.feed(b"\x00\x42\xff\x13\x37") == b""
    assert energy(line.feed(encode_req_ud2(1))) == 1000


def test_bad_checksum_gets_silence() -> None:
    """A REQ_UD2 with a wrong checksum is not answered, the same frame fixed is."""
    line = MbusLine([slave("11111111", 1, 1000)])
    bad = bytearray(encode_req_ud2(1))
    bad[3] ^= 0x01
    assert line.feed(bytes(bad)) == b""
    assert line.feed(encode_req_ud2(1)) != b""


def test_partial_frame_is_dropped_after_the_idle_timeout() -> None:
    """A long-frame start that never completes does not swallow the next request."""
    clock = ManualClock()
    line = MbusLine([slave("11111111", 1, 1000)], idle_timeout=0.2, clock=clock)
    assert line.feed(b"\x68\x40\x40\x68\x53\x01") == b""
    clock.now = 1.0
    assert energy(line.feed(encode_req_ud2(1))) == 1000
    assert line.counters()["bytes_discarded"] == 6


def test_frame_split_over_chunks_is_put_together() -> None:
    """A request arriving in two pieces within the idle timeout is answered once."""
    clock = ManualClock()
    line = MbusLine([slave("11111111", 1, 1000)], clock=clock)
    request = encode_req_ud2(1)
    assert line.feed(request[:2]) == b""
    clock.now = 0.05
    assert energy(line.feed(request[2:])) == 1000


def test_two_frames_in_one_chunk_get_both_answers() -> None:
    """SND_NKE and REQ_UD2 sent back to back give E5 followed by the telegram."""
    line = MbusLine([slave("11111111", 1, 1000)])
    reply = line.feed(encode_snd_nke(1) + encode_req_ud2(1))
    assert reply[:1] == ACK
    assert energy(reply[1:]) == 1000


def test_interrupted_line_is_silent_until_restored() -> None:
    """A cut line answers nothing; after restore the same slave answers again."""
    line = MbusLine([slave("11111111", 1, 1000)])
    line.interrupt()
    assert line.interrupted
    assert line.feed(encode_snd_nke(1)) == b""
    line.restore()
    assert line.feed(encode_snd_nke(1)) == ACK


def test_bytes_sent_while_cut_are_lost() -> None:
    """The first half of a frame sent while the line was cut does not count after restore."""
    line = MbusLine([slave("11111111", 1, 1000)])
    request = encode_req_ud2(1)
    line.interrupt()
    line.feed(request[:3])
    line.restore()
    assert line.feed(request[3:]) == b""
    assert energy(line.feed(request)) == 1000


def test_broadcast_fe_makes_every_slave_answer() -> None:
    """REQ_UD2 to 0xFE with two slaves is a collision."""
    line = MbusLine([slave("11111111", 1, 1000), slave("22222222", 2, 2345)])
    with pytest.raises(ProtocolError):
        parse_frame(line.feed(encode_req_ud2(0xFE)))
    assert line.counters()["collisions"] == 1
