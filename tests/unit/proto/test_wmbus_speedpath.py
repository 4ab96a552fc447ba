"""Tests of the wM-Bus decode fast path against slow reference versions.

The fast CRC block check (one ``unpack`` per frame, word table) is compared with a bit-by-bit
CRC written from EN 13757-4 on the shared vectors and on random data.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st
from smtestbed.proto.wmbus.crc import block_layout, crc16, first_bad_block
from smtestbed.proto.wmbus.link import FrameFormat, add_crcs_a, strip_crcs
from smtestbed.proto.wmbus.security import cbc_decrypt_static
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
