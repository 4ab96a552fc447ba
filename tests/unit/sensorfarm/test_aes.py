"""Compiled batch AES against FIPS-197 / RFC 4493 vectors, cryptography and slow references."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC
from smtestbed.proto.wmbus.security import derive_key
from smtestbed.services.sensorfarm import aes

# --- slow pure-Python references (byte-oriented, straight from FIPS-197 and RFC 4493) ---


def _mul(a: int, b: int) -> int:
    out = 0
    while b:
        if b & 1:
            out ^= a
        a = (a << 1) ^ (0x11B if a & 0x80 else 0)
        b >>= 1
    return out


def _ref_sbox() -> list[int]:
    box = []
    for a in range(256):
        inv = next((b for b in range(1, 256) if _mul(a, b) == 1), 0)
        s = inv
        for i in range(1, 5):
            s ^= ((inv << i) | (inv >> (8 - i))) & 0xFF
        box.append(s ^ 0x63)
    return box


SBOX = _ref_sbox()


def ref_expand(key: bytes) -> list[list[int]]:
    """Return the 44 round-key words as 4-byte lists (FIPS-197 section 5.2)."""
    words = [list(key[4 * i : 4 * i + 4]) for i in range(4)]
    rcon = 1
    for i in range(4, 44):
        temp = list(words[i - 1])
        if i % 4 == 0:
            temp = [SBOX[b] for b in temp[1:] + temp[:1]]
            temp[0] ^= rcon
            rcon = _mul(rcon, 2)
        words.append([x ^ y for x, y in zip(words[i - 4], temp, strict=True)])
    return words


def _flat(words: list[list[int]]) -> list[int]:
    return [byte for word in words for byte in word]


def ref_encrypt(key: bytes, block: bytes) -> bytes:
    """Encrypt one block: SubBytes, ShiftRows, MixColumns, AddRoundKey on a column-major state."""
    words = ref_expand(key)
    state = [b ^ k for b, k in zip(block, _flat(words[0:4]), strict=True)]
    for rnd in range(1, 11):
        state = [SBOX[b] for b in state]
        state = [state[(4 * (c + r) + r) % 16] for c in range(4) for r in range(4)]
        if rnd < 10:
            state = [
                _mul(state[4 * c + r], 2)
                ^ _mul(state[4 * c + (r + 1) % 4], 3)
                ^ state[4 * c + (r + 2) % 4]
                ^ state[4 * c + (r + 3) % 4]
                for c in range(4)
                for r in range(4)
            ]
        state = [b ^ k for b, k in zip(state, _flat(words[4 * rnd : 4 * rnd + 4]), strict=True)]
    return bytes(state)


def ref_cbc(key: bytes, iv: bytes, data: bytes) -> bytes:
    out, prev = b"", iv
    for p in range(0, len(data), 16):
        prev = ref_encrypt(key, bytes(x ^ y for x, y in zip(data[p : p + 16], prev, strict=True)))
        out += prev
    return out


def _dbl(block: bytes) -> bytes:
    value = int.from_bytes(block, "big") << 1
    if value >> 128:
        value ^= 0x87
    return (value & ((1 << 128) - 1)).to_bytes(16, "big")


def ref_cmac(key: bytes, message: bytes) -> bytes:
    """RFC 4493 section 2.4, literally."""
    k1 = _dbl(ref_encrypt(key, bytes(16)))
    k2 = _dbl(k1)
    blocks = max(1, -(-len(message) // 16))
    last = message[16 * (blocks - 1) :]
    if len(last) == 16:
        last = bytes(x ^ y for x, y in zip(last, k1, strict=True))
    else:
        padded = last + b"\x80" + bytes(15 - len(last))
        last = bytes(x ^ y for x, y in zip(padded, k2, strict=True))
    mac = ref_cbc(key, bytes(16), message[: 16 * (blocks - 1)] + last)
    return mac[-16:]


def ref_kdf(key: bytes, constant: int, counter: int, ident: int) -> bytes:
    block = bytes((constant,)) + counter.to_bytes(4, "little") + ident.to_bytes(4, "little")
    return ref_cmac(key, block + b"\x07" * 7)


# --- helpers ---

RFC4493_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
RFC4493_MESSAGE = bytes.fromhex(
    "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
)
RFC4493 = (
    (0, "bb1d6929e95937287fa37d129b756746"),
    (16, "070a16b46b4d4144f79bdd9dd04a287c"),
    (40, "dfa66747de9ae63030ca32611497c827"),
    (64, "51f0bebf7e3b9d92fc49741779363cfe"),
)


def _rows(data: bytes) -> npt.NDArray[np.uint8]:
    return np.frombuffer(data, dtype=np.uint8).reshape(1, -1).copy()


def _random(rng: np.random.Generator, *shape: int) -> npt.NDArray[np.uint8]:
    return rng.integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240605)


# --- tests ---


@pytest.mark.parametrize(
    ("key", "plain", "cipher"),
    [
        (
            "000102030405060708090a0b0c0d0e0f",
            "00112233445566778899aabbccddeeff",
            "69c4e0d86a7b0430d8cdb78070b4c55a",
        ),
        (
            "2b7e151628aed2a6abf7158809cf4f3c",
            "3243f6a8885a308d313198a2e0370734",
            "3925841d02dc09fbdc118597196a0b32",
        ),
    ],
)
def test_encrypt_blocks_gives_the_fips197_ciphertext(key: str, plain: str, cipher: str) -> None:
    """The compiled cipher and the slow reference both reproduce FIPS-197 appendix B / C.1."""
    got = aes.encrypt_blocks(_rows(bytes.fromhex(key)), _rows(bytes.fromhex(plain)))
    assert got.tobytes().hex() == cipher
    assert ref_encrypt(bytes.fromhex(key), bytes.fromhex(plain)).hex() == cipher


def test_expand_keys_matches_fips197_and_the_reference(rng: np.random.Generator) -> None:
    """Round keys equal FIPS-197 A.1's last word and the reference expansion for random keys."""
    fips = aes.expand_keys(_rows(RFC4493_KEY))
    assert int(fips[0, 43]) == 0xB6630CA6
    keys = _random(rng, 8, 16)
    got = aes.expand_keys(keys)
    for row, key in zip(got, keys, strict=True):
        want = [int.from_bytes(bytes(w), "big") for w in ref_expand(key.tobytes())]
        assert row.tolist() == want


def test_encrypt_blocks_matches_cryptography_and_reference(rng: np.random.Generator) -> None:
    """One random block per random key encrypts as cryptography's ECB and the reference do."""
    keys, blocks = _random(rng, 16, 16), _random(rng, 16, 16)
    got = aes.encrypt_blocks(keys, blocks)
    for i in range(16):
        op = Cipher(algorithms.AES(keys[i].tobytes()), modes.ECB()).encryptor()
        want = op.update(blocks[i].tobytes()) + op.finalize()
        assert got[i].tobytes() == want == ref_encrypt(keys[i].tobytes(), blocks[i].tobytes())


def test_cbc_encrypt_matches_cryptography_and_reference(rng: np.random.Generator) -> None:
    """Each row's CBC ciphertext (3 blocks, own key and IV) equals cryptography's and the ref's."""
    keys, ivs, data = _random(rng, 12, 16), _random(rng, 12, 16), _random(rng, 12, 48)
    got = aes.cbc_encrypt(keys, ivs, data)
    for i in range(12):
        key, iv, plain = keys[i].tobytes(), ivs[i].tobytes(), data[i].tobytes()
        op = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        assert got[i].tobytes() == op.update(plain) + op.finalize() == ref_cbc(key, iv, plain)
    assert data.sum() > 0
    assert not np.array_equal(got, data)


@pytest.mark.parametrize(("length", "tag"), RFC4493)
def test_cmac_gives_the_rfc4493_tags(length: int, tag: str) -> None:
    """AES-CMAC of the RFC 4493 example messages (0, 16, 40, 64 bytes) gives their tags."""
    message = np.frombuffer(RFC4493_MESSAGE[:length], dtype=np.uint8)
    got = aes.cmac(_rows(RFC4493_KEY), message, [0, length])
    assert got.tobytes().hex() == tag
    assert ref_cmac(RFC4493_KEY, RFC4493_MESSAGE[:length]).hex() == tag


def test_cmac_matches_cryptography_for_every_length_up_to_five_blocks(
    rng: np.random.Generator,
) -> None:
    """Messages of 0..80 bytes (full and partial last blocks) give cryptography's CMAC."""
    lengths = np.arange(0, 81, 5)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    data = _random(rng, int(offsets[-1]))
    keys = _random(rng, lengths.size, 16)
    got = aes.cmac(keys, data, offsets)
    for i in range(lengths.size):
        mac = CMAC(algorithms.AES(keys[i].tobytes()))
        mac.update(data[offsets[i] : offsets[i + 1]].tobytes())
        assert got[i].tobytes() == mac.finalize()


def test_derive_keys_matches_the_proto_kdf_and_reference(rng: np.random.Generator) -> None:
    """Mode-7 Kenc and Kmac equal proto's derive_key and the reference for random inputs."""
    keys = _random(rng, 10, 16)
    counters = rng.integers(0, 2**32, 10)
    idents = rng.integers(0, 2**32, 10)
    for constant in (0x00, 0x01):
        got = aes.derive_keys(keys, constant=constant, counters=counters, idents=idents)
        for i in range(10):
            key, mcr, ident = keys[i].tobytes(), int(counters[i]), int(idents[i])
            want = derive_key(key, constant=constant, counter=mcr, ident=ident)
            assert got[i].tobytes() == want == ref_kdf(key, constant, mcr, ident)


def test_wrappers_reject_keys_that_are_not_uint8_rows_of_16() -> None:
    """Keys of the wrong dtype or width raise ValueError naming the expected shape."""
    with pytest.raises(ValueError, match=r"uint8\[n, 16\]"):
        aes.expand_keys(np.zeros((2, 16), dtype=np.int64))
    with pytest.raises(ValueError, match=r"uint8\[n, 16\]"):
        aes.encrypt_blocks(np.zeros((2, 15), dtype=np.uint8), np.zeros((2, 16), dtype=np.uint8))


def test_cbc_encrypt_rejects_rows_that_are_not_whole_blocks() -> None:
    """Data rows of 20 bytes raise ValueError instead of encrypting a partial block."""
    keys = np.zeros((1, 16), dtype=np.uint8)
    with pytest.raises(ValueError, match="whole AES blocks"):
        aes.cbc_encrypt(keys, keys, np.zeros((1, 20), dtype=np.uint8))


def test_cmac_rejects_offsets_that_go_backwards() -> None:
    """Offsets 0, 8, 4 raise ValueError: every message must be a forward slice."""
    keys = np.zeros((2, 16), dtype=np.uint8)
    with pytest.raises(ValueError, match="backwards"):
        aes.cmac(keys, np.zeros(8, dtype=np.uint8), [0, 8, 4])


def test_derive_keys_rejects_counters_beyond_32_bits() -> None:
    """A message counter of 2^32 raises ValueError (MCR is a 4-byte field)."""
    keys = np.zeros((1, 16), dtype=np.uint8)
    with pytest.raises(ValueError, match="counters"):
        aes.derive_keys(keys, constant=0, counters=[2**32], idents=[1])
