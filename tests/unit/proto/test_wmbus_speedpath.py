"""Tests of the wM-Bus decode fast path against slow reference versions.

The fast CRC block checks (one ``unpack`` per frame with a word table; the compiled format A
kernel) are compared with a bit-by-bit CRC written from EN 13757-4 on the shared vectors and on
random data.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st
from smtestbed.proto.wmbus.crc import block_layout, crc16, first_bad_block
from smtestbed.proto.wmbus.crc_kernel import strip_format_a
from smtestbed.proto.wmbus.encoder import encode_telegram, new_telegram
from smtestbed.proto.wmbus.fields import MeterAddress
from smtestbed.proto.wmbus.link import (
    FrameFormat,
    _FormatACheck,
    add_crcs_a,
    format_a_size,
    load_crc_kernel,
    strip_crcs,
)
from smtestbed.proto.wmbus.security import cbc_decrypt_static
from smtestbed.proto.wmbus.telegram import Telegram, decode_telegram
from smtestbed.proto.wmbus.transport import TplHeader
from smtestbed.services._runtime.errors import ProtocolError

from tests.unit.proto.vectors import load_jsonl

TELEGRAMS = [bytes.fromhex(row["telegram_hex"]) for row in load_jsonl("wmbus_vectors.jsonl")]
needs_vectors = pytest.mark.skipif(not TELEGRAMS, reason="shared wM-Bus vectors are absent")


def _reference_crc(data: bytes) -> int:
    """CRC-16 bit by bit: poly 0x3D65, init 0, MSB first, complemented."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x3D65) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc ^ 0xFFFF


def _reference_first_bad(data: bytes, sizes: tuple[int, ...]) -> int:
    """Check each block and its CRC one by one with the bitwise reference."""
    pos = 0
    for number, size in enumerate(sizes, 1):
        found = int.from_bytes(data[pos + size : pos + size + 2], "big")
        if _reference_crc(data[pos : pos + size]) != found:
            return number
        pos += size + 2
    return 0


def _with_crcs(blocks: list[bytes]) -> bytes:
    return b"".join(block + _reference_crc(block).to_bytes(2, "big") for block in blocks)


def _a_sizes(frame: bytes) -> tuple[int, ...]:
    """Return the data sizes of the blocks of a format A frame, from its L-field."""
    rest = frame[0] - 9
    return (10, *([16] * (rest // 16)), *([rest % 16] if rest % 16 else []))


@pytest.fixture(scope="module", autouse=True)
def _compiled_kernel() -> None:
    """Load the compiled CRC check before any timed property example runs."""
    load_crc_kernel()


@needs_vectors
def test_vectors_are_loaded() -> None:
    """The shared vector file gives telegrams to check the CRC with."""
    assert len(TELEGRAMS) > 100


@needs_vectors
@pytest.mark.parametrize("index", range(0, 400, 7))
def test_table_crc_equals_reference_on_vectors(index: int) -> None:
    """The table CRC of a vector telegram equals the bitwise reference CRC."""
    data = TELEGRAMS[index % len(TELEGRAMS)]
    assert crc16(data) == _reference_crc(data)


@needs_vectors
def test_format_a_fast_strip_returns_each_vector() -> None:
    """Every vector telegram framed as format A strips back to itself in one pass."""
    for data in TELEGRAMS:
        if data[0] == len(data) - 1:
            assert strip_crcs(add_crcs_a(data)) == (data, FrameFormat.A)


@given(st.lists(st.binary(min_size=0, max_size=40), min_size=1, max_size=9))
def test_block_check_accepts_reference_crcs(blocks: list[bytes]) -> None:
    """Blocks carrying bitwise reference CRCs all pass the one-unpack check."""
    layout = block_layout(tuple(len(block) for block in blocks))
    assert first_bad_block(_with_crcs(blocks), layout) == 0


@given(
    st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=9),
    st.data(),
)
def test_block_check_names_the_same_block_as_reference(
    blocks: list[bytes], data: st.DataObject
) -> None:
    """A flipped bit anywhere is reported in the block the bitwise reference names."""
    sizes = tuple(len(block) for block in blocks)
    frame = bytearray(_with_crcs(blocks))
    bit = data.draw(st.integers(min_value=0, max_value=len(frame) * 8 - 1))
    frame[bit >> 3] ^= 0x80 >> (bit & 7)
    want = _reference_first_bad(bytes(frame), sizes)
    assert want != 0
    assert first_bad_block(bytes(frame), block_layout(sizes)) == want


@given(st.binary(min_size=10, max_size=200), st.integers(min_value=0))
def test_fast_strip_refuses_any_flipped_bit(body: bytes, bit: int) -> None:
    """A format A frame strips to its telegram, and with any one bit flipped it is refused."""
    data = bytes((len(body),)) + body
    frame = bytearray(add_crcs_a(data))
    assert strip_crcs(bytes(frame)) == (data, FrameFormat.A)
    bit %= len(frame) * 8
    frame[bit >> 3] ^= 0x80 >> (bit & 7)
    with pytest.raises(ProtocolError):
        strip_crcs(bytes(frame), FrameFormat.A)


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16), st.data())
def test_cached_key_cbc_equals_cryptography_cbc(key: bytes, iv: bytes, data: st.DataObject) -> None:
    """The cached-key CBC decryption gives the bytes of a fresh Cipher(AES, CBC) decryptor."""
    blocks = data.draw(st.integers(min_value=0, max_value=15))
    ciphertext = data.draw(st.binary(min_size=16 * blocks, max_size=16 * blocks))
    op = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    assert cbc_decrypt_static(key, iv, ciphertext) == op.update(ciphertext) + op.finalize()


def test_cached_key_cbc_is_right_from_many_threads() -> None:
    """Threads sharing one key's cached context all get their own correct plaintexts."""
    key = bytes(range(16))
    jobs = [(bytes((n,)) * 16, bytes((n * 7 & 0xFF,)) * 64) for n in range(64)]

    def run(job: tuple[bytes, bytes]) -> bool:
        iv, ciphertext = job
        op = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        want = op.update(ciphertext) + op.finalize()
        return all(cbc_decrypt_static(key, iv, ciphertext) == want for _ in range(200))

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(run, jobs, timeout=60))


@needs_vectors
def test_kernel_strips_each_vector_framed_as_format_a() -> None:
    """The compiled format A check passes every vector frame and returns the telegram."""
    for data in TELEGRAMS:
        if data[0] == len(data) - 1:
            assert strip_format_a(add_crcs_a(data)) == (0, data)


@given(st.binary(min_size=9, max_size=254), st.data())
def test_kernel_names_the_same_block_as_reference(body: bytes, data: st.DataObject) -> None:
    """A flipped bit in a random format A frame is found in the block the reference names."""
    frame = bytearray(add_crcs_a(bytes((len(body),)) + body))
    assert strip_format_a(bytes(frame)) == (0, bytes((len(body),)) + body)
    bit = data.draw(st.integers(min_value=0, max_value=len(frame) * 8 - 1))
    frame[bit >> 3] ^= 0x80 >> (bit & 7)
    if len(frame) != format_a_size(frame[0]):  # the L-field itself was hit
        return
    want = _reference_first_bad(bytes(frame), _a_sizes(bytes(frame)))
    assert want != 0
    assert strip_format_a(bytes(frame)) == (want, b"")


@pytest.mark.parametrize("frame", [b"", b"\x08" + bytes(11), b"\x0a" + bytes(15), bytes(20)])
def test_kernel_refuses_a_size_that_is_not_format_a(frame: bytes) -> None:
    """Sizes that do not match the L-field (or L below 9) are a bad_length error."""
    with pytest.raises(ProtocolError) as info:
        strip_format_a(frame)
    assert info.value.reason == "bad_length"


def test_python_check_hands_over_to_the_kernel_after_its_frames() -> None:
    """The pure-Python tier checks the first frames alike, then the compiled kernel runs."""
    check = _FormatACheck(python_frames=3)
    plain = bytes((30,)) + bytes(range(30))
    good = add_crcs_a(plain)
    bad = good[:20] + bytes((good[20] ^ 4,)) + good[21:]
    assert [check.run(frame) for frame in (good, bad)] == [(0, plain), (2, b"")]
    assert check.run is not strip_format_a
    check.run(good)
    assert check.run is strip_format_a
    assert check.run(bad) == (2, b"")


@pytest.mark.parametrize(("mode", "long_header"), [(0, False), (5, False), (5, True), (7, True)])
def test_decoded_objects_have_every_field_of_their_dataclass(mode: int, long_header: bool) -> None:
    """Telegram and TplHeader built slot by slot equal the same built by their __init__."""
    key = bytes(range(16))
    address = MeterAddress(manufacturer=0x2C2D, ident=0x87654321, version=3, device_type=7)
    built = new_telegram(
        address=address,
        records=bytes.fromhex("0403e8030000"),
        access_number=201,
        security_mode=mode,
        long_header=long_header,
    )
    telegram = decode_telegram(encode_telegram(built, key=key), key=key)
    assert telegram.tpl is not None
    tpl = TplHeader(**{f.name: getattr(telegram.tpl, f.name) for f in fields(TplHeader)})
    again = Telegram(**{f.name: getattr(telegram, f.name) for f in fields(Telegram)})
    assert (tpl, again) == (telegram.tpl, telegram)
    assert telegram.application_data is not None
    assert telegram.application_data.startswith(b"" if mode == 0 else b"\x2f\x2f")
