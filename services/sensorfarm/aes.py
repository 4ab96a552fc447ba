"""Batch AES-128 for simulated meters: compiled table AES, CBC, AES-CMAC and the OMS KDF.

One row per meter: keys are ``uint8[n, 16]``, expanded round keys ``uint32[n, 44]``
(big-endian words, FIPS-197 order). The block cipher is the classic four-T-table
implementation; integers are computed in int64 and masked to 32 bits (Numba infers float64
when unsigned arrays and integer literals mix).

- :func:`encrypt_blocks`: one AES-128 block per key (ECB of a single block).
- :func:`cbc_encrypt`: AES-128-CBC over each row's whole blocks with that row's IV.
- :func:`cmac`: AES-CMAC (RFC 4493) of each row's message (flat buffer plus offsets).
- :func:`derive_keys`: OMS mode-7 KDF, ``CMAC(MK, DC || MCR(4, LE) || ID(4, LE) || 07 x 7)``,
  as :func:`smtestbed.proto.wmbus.security.derive_key` computes it.

Not constant-time: table lookups indexed by secret bytes leak through cache timing. That is
fine for simulated meters whose keys protect nothing; real keys (gateway, CA) use
``cryptography``. Results are byte-identical to ``cryptography`` and to the FIPS-197 and
RFC 4493 test vectors (see the unit tests).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

MASK = 0xFFFFFFFF
ROUND_KEY_WORDS = 44

Word = int | np.int64
"""A 32-bit word (or byte) held in int64 inside kernels."""
Words = tuple[Word, Word, Word, Word]
"""A 128-bit block as four big-endian words."""


def _xtime(value: int) -> int:
    value <<= 1
    return (value ^ 0x11B) if value & 0x100 else value


def _sbox() -> list[int]:
    """Return the AES S-box: GF(2^8) inverse (via powers of 3) then the affine map."""
    exp, log, x = [0] * 255, [0] * 256, 1
    for i in range(255):
        exp[i], log[x] = x, i
        x ^= _xtime(x)
    box = []
    for a in range(256):
        b = 0 if a == 0 else exp[(255 - log[a]) % 255]
        s = b
        for shift in range(1, 5):
            s ^= ((b << shift) | (b >> (8 - shift))) & 0xFF
        box.append(s ^ 0x63)
    return box


def _tables() -> tuple[npt.NDArray[np.uint32], ...]:
    """Return the S-box and the T-tables Te0..Te3 (column ``2s, s, s, 3s`` and rotations)."""
    box = _sbox()
    te0 = [(_xtime(s) << 24) | (s << 16) | (s << 8) | (_xtime(s) ^ s) for s in box]
    tables = [te0]
    for _ in range(3):
        tables.append([((w >> 8) | (w << 24)) & MASK for w in tables[-1]])
    return tuple(np.array(t, dtype=np.uint32) for t in ([*box], *tables))


_SBOX, _TE0, _TE1, _TE2, _TE3 = _tables()
_RCON = np.array([0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x1B, 0x36], dtype=np.uint32)


@njit(cache=True, inline="always")
def _sub_word(w: Word) -> Word:
    return (
        (np.int64(_SBOX[(w >> 24) & 0xFF]) << 24)
        | (np.int64(_SBOX[(w >> 16) & 0xFF]) << 16)
        | (np.int64(_SBOX[(w >> 8) & 0xFF]) << 8)
        | np.int64(_SBOX[w & 0xFF])
    )


@njit(cache=True)
def _expand_words(k0: Word, k1: Word, k2: Word, k3: Word, rk: npt.NDArray[np.uint32]) -> None:
    # One round key (four words) per step keeps the dependency chain in registers.
    rk[0], rk[1], rk[2], rk[3] = k0, k1, k2, k3
    for r in range(10):
        rot = ((k3 << 8) | (k3 >> 24)) & MASK
        k0 = k0 ^ _sub_word(rot) ^ (np.int64(_RCON[r]) << 24)
        k1 = k1 ^ k0
        k2 = k2 ^ k1
        k3 = k3 ^ k2
        p = 4 * r + 4
        rk[p], rk[p + 1], rk[p + 2], rk[p + 3] = k0, k1, k2, k3


@njit(cache=True, inline="always")
def _load(buf: npt.NDArray[np.uint8], p: Word) -> Word:
    return (
        (np.int64(buf[p]) << 24)
        | (np.int64(buf[p + 1]) << 16)
        | (np.int64(buf[p + 2]) << 8)
        | np.int64(buf[p + 3])
    )


@njit(cache=True, inline="always")
def _store(buf: npt.NDArray[np.uint8], p: Word, w: Word) -> None:
    buf[p] = (w >> 24) & 0xFF
    buf[p + 1] = (w >> 16) & 0xFF
    buf[p + 2] = (w >> 8) & 0xFF
    buf[p + 3] = w & 0xFF


@njit(cache=True)
def _expand(key: npt.NDArray[np.uint8], p: Word, rk: npt.NDArray[np.uint32]) -> None:
    _expand_words(_load(key, p), _load(key, p + 4), _load(key, p + 8), _load(key, p + 12), rk)


@njit(cache=True, inline="always")
def _round(rk: npt.NDArray[np.uint32], k: int, a: Word, b: Word, c: Word, d: Word) -> Word:
    return (
        np.int64(_TE0[(a >> 24) & 0xFF])
        ^ np.int64(_TE1[(b >> 16) & 0xFF])
        ^ np.int64(_TE2[(c >> 8) & 0xFF])
        ^ np.int64(_TE3[d & 0xFF])
        ^ np.int64(rk[k])
    )


@njit(cache=True, inline="always")
def _last(rk: npt.NDArray[np.uint32], k: int, a: Word, b: Word, c: Word, d: Word) -> Word:
    return (
        (np.int64(_SBOX[(a >> 24) & 0xFF]) << 24)
        ^ (np.int64(_SBOX[(b >> 16) & 0xFF]) << 16)
        ^ (np.int64(_SBOX[(c >> 8) & 0xFF]) << 8)
        ^ np.int64(_SBOX[d & 0xFF])
        ^ np.int64(rk[k])
    )


@njit(cache=True)
def _enc(rk: npt.NDArray[np.uint32], a: Word, b: Word, c: Word, d: Word) -> Words:
    """Encrypt the block of big-endian words a, b, c, d."""
    a ^= np.int64(rk[0])
    b ^= np.int64(rk[1])
    c ^= np.int64(rk[2])
    d ^= np.int64(rk[3])
    for r in range(1, 10):
        k = 4 * r
        a, b, c, d = (
            _round(rk, k, a, b, c, d),
            _round(rk, k + 1, b, c, d, a),
            _round(rk, k + 2, c, d, a, b),
            _round(rk, k + 3, d, a, b, c),
        )
    return (
        _last(rk, 40, a, b, c, d),
        _last(rk, 41, b, c, d, a),
        _last(rk, 42, c, d, a, b),
        _last(rk, 43, d, a, b, c),
    )


@njit(cache=True)
def _cbc(
    rk: npt.NDArray[np.uint32],
    buf: npt.NDArray[np.uint8],
    start: Word,
    blocks: Word,
    iv: Words,
) -> None:
    """Encrypt ``blocks`` whole blocks of ``buf`` from ``start`` in place (CBC)."""
    a, b, c, d = iv
    for p in range(start, start + 16 * blocks, 16):
        a, b, c, d = _enc(
            rk,
            a ^ _load(buf, p),
            b ^ _load(buf, p + 4),
            c ^ _load(buf, p + 8),
            d ^ _load(buf, p + 12),
        )
        _store(buf, p, a)
        _store(buf, p + 4, b)
        _store(buf, p + 8, c)
        _store(buf, p + 12, d)


@njit(cache=True)
def _dbl(a: Word, b: Word, c: Word, d: Word) -> Words:
    """Double a 128-bit value in GF(2^128) (RFC 4493 subkey step)."""
    carry = a >> 31
    return (
        ((a << 1) | (b >> 31)) & MASK,
        ((b << 1) | (c >> 31)) & MASK,
        ((c << 1) | (d >> 31)) & MASK,
        ((d << 1) & MASK) ^ (0x87 * carry),
    )


@njit(cache=True)
def _subkey1(rk: npt.NDArray[np.uint32]) -> Words:
    """Return the CMAC subkey K1 = dbl(AES(K, 0))."""
    a, b, c, d = _enc(rk, 0, 0, 0, 0)
    return _dbl(a, b, c, d)


@njit(cache=True)
def _padded_word(buf: npt.NDArray[np.uint8], p: Word, count: Word, j: Word) -> Word:
    """Return word ``j`` of the last CMAC block: ``count`` bytes at ``p``, 0x80, zeros."""
    word = np.int64(0)
    for i in range(4 * j, 4 * j + 4):
        byte = np.int64(buf[p + i]) if i < count else (np.int64(0x80) if i == count else 0)
        word = (word << 8) | byte
    return word


@njit(cache=True)
def _cmac(
    rk: npt.NDArray[np.uint32], buf: npt.NDArray[np.uint8], start: Word, length: Word
) -> Words:
    """Return AES-CMAC (RFC 4493) of ``buf[start:start + length]`` as four words."""
    k = _subkey1(rk)
    full = length > 0 and length % 16 == 0
    if not full:
        k = _dbl(k[0], k[1], k[2], k[3])
    blocks = max(1, (length + 15) // 16)
    a: Word = np.int64(0)
    b: Word = a
    c: Word = a
    d: Word = a
    for p in range(start, start + 16 * (blocks - 1), 16):
        a, b, c, d = _enc(
            rk,
            a ^ _load(buf, p),
            b ^ _load(buf, p + 4),
            c ^ _load(buf, p + 8),
            d ^ _load(buf, p + 12),
        )
    last: Word = start + 16 * (blocks - 1)
    count = length - 16 * (blocks - 1)
    return _enc(
        rk,
        a ^ k[0] ^ _padded_word(buf, last, count, 0),
        b ^ k[1] ^ _padded_word(buf, last, count, 1),
        c ^ k[2] ^ _padded_word(buf, last, count, 2),
        d ^ k[3] ^ _padded_word(buf, last, count, 3),
    )


@njit(cache=True)
def _kdf(
    rk: npt.NDArray[np.uint32],
    k1: Words,
    constant: Word,
    counter: Word,
    ident: Word,
) -> Words:
    """Return CMAC(MK, DC || MCR LE || ID LE || 07 x 7) for one full block (subkey K1)."""
    m0 = (constant << 24) | ((counter & 0xFF) << 16) | (((counter >> 8) & 0xFF) << 8)
    m0 |= (counter >> 16) & 0xFF
    m1 = (((counter >> 24) & 0xFF) << 24) | ((ident & 0xFF) << 16)
    m1 |= (((ident >> 8) & 0xFF) << 8) | ((ident >> 16) & 0xFF)
    m2 = (((ident >> 24) & 0xFF) << 24) | 0x070707
    return _enc(rk, m0 ^ k1[0], m1 ^ k1[1], m2 ^ k1[2], 0x07070707 ^ k1[3])


@njit(cache=True)
def _store_words(out: npt.NDArray[np.uint8], p: Word, words: Words) -> None:
    for j in range(4):
        _store(out, p + 4 * j, words[j])


@njit(cache=True)
def _expand_kernel(keys: npt.NDArray[np.uint8], out: npt.NDArray[np.uint32]) -> None:
    for i in range(keys.shape[0]):
        _expand(keys[i], 0, out[i])


@njit(cache=True)
def _ecb_kernel(
    keys: npt.NDArray[np.uint8], blocks: npt.NDArray[np.uint8], out: npt.NDArray[np.uint8]
) -> None:
    rk = np.empty(ROUND_KEY_WORDS, dtype=np.uint32)
    for i in range(keys.shape[0]):
        _expand(keys[i], 0, rk)
        row = blocks[i]
        words = _enc(rk, _load(row, 0), _load(row, 4), _load(row, 8), _load(row, 12))
        _store_words(out[i], 0, words)


@njit(cache=True)
def _cbc_kernel(
    keys: npt.NDArray[np.uint8], ivs: npt.NDArray[np.uint8], data: npt.NDArray[np.uint8]
) -> None:
    rk = np.empty(ROUND_KEY_WORDS, dtype=np.uint32)
    for i in range(keys.shape[0]):
        _expand(keys[i], 0, rk)
        iv = ivs[i]
        words = (_load(iv, 0), _load(iv, 4), _load(iv, 8), _load(iv, 12))
        _cbc(rk, data[i], 0, data.shape[1] // 16, words)


@njit(cache=True)
def _cmac_kernel(
    keys: npt.NDArray[np.uint8],
    data: npt.NDArray[np.uint8],
    offsets: npt.NDArray[np.int64],
    out: npt.NDArray[np.uint8],
) -> None:
    rk = np.empty(ROUND_KEY_WORDS, dtype=np.uint32)
    for i in range(keys.shape[0]):
        _expand(keys[i], 0, rk)
        start = offsets[i]
        _store_words(out[i], 0, _cmac(rk, data, start, offsets[i + 1] - start))


@njit(cache=True)
def _kdf_kernel(
    keys: npt.NDArray[np.uint8],
    constant: Word,
    counters: npt.NDArray[np.int64],
    idents: npt.NDArray[np.int64],
    out: npt.NDArray[np.uint8],
) -> None:
    rk = np.empty(ROUND_KEY_WORDS, dtype=np.uint32)
    for i in range(keys.shape[0]):
        _expand(keys[i], 0, rk)
        words = _kdf(rk, _subkey1(rk), constant, counters[i], idents[i])
        _store_words(out[i], 0, words)


def _keys(keys: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    array = np.asarray(keys)
    if array.dtype != np.uint8 or array.ndim != 2 or array.shape[1] != 16:
        raise ValueError(f"keys must be uint8[n, 16], got {array.dtype}{list(array.shape)}")
    return np.ascontiguousarray(array)


def _rows(name: str, rows: npt.ArrayLike, count: int, width: int) -> npt.NDArray[np.uint8]:
    array = np.asarray(rows)
    if array.dtype != np.uint8 or array.ndim != 2 or array.shape[0] != count:
        raise ValueError(
            f"{name} must be uint8[{count}, ...], got {array.dtype}{list(array.shape)}"
        )
    if (width and array.shape[1] != width) or array.shape[1] % 16:
        raise ValueError(f"{name} rows of {array.shape[1]} bytes are not whole AES blocks")
    return np.ascontiguousarray(array)


def _words32(name: str, values: npt.ArrayLike, count: int) -> npt.NDArray[np.int64]:
    array = np.asarray(values)
    if array.shape != (count,) or array.dtype.kind not in "iu":
        raise ValueError(f"{name} must be {count} integers, got {array.dtype}{list(array.shape)}")
    if count and (int(array.min()) < 0 or int(array.max()) > MASK):
        raise ValueError(f"{name} must lie in 0..2^32-1")
    return array.astype(np.int64)


def expand_keys(keys: npt.ArrayLike) -> npt.NDArray[np.uint32]:
    """Expand AES-128 keys ``uint8[n, 16]`` into round keys ``uint32[n, 44]``.

    Raises:
        ValueError: ``keys`` is not uint8[n, 16].
    """
    checked = _keys(keys)
    out = np.empty((checked.shape[0], ROUND_KEY_WORDS), dtype=np.uint32)
    _expand_kernel(checked, out)
    return out


def encrypt_blocks(keys: npt.ArrayLike, blocks: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """Encrypt one 16-byte block per key: ``out[i] = AES(keys[i], blocks[i])``.

    Raises:
        ValueError: ``keys`` or ``blocks`` is not uint8[n, 16].
    """
    checked = _keys(keys)
    rows = _rows("blocks", blocks, checked.shape[0], 16)
    out = np.empty_like(rows)
    _ecb_kernel(checked, rows, out)
    return out


def cbc_encrypt(
    keys: npt.ArrayLike, ivs: npt.ArrayLike, data: npt.ArrayLike
) -> npt.NDArray[np.uint8]:
    """AES-128-CBC encrypt each row of ``data`` (whole blocks, no padding) with its key and IV.

    Args:
        keys: uint8[n, 16].
        ivs: uint8[n, 16].
        data: uint8[n, 16 * m].

    Raises:
        ValueError: shapes or dtypes do not fit.
    """
    checked = _keys(keys)
    count = checked.shape[0]
    iv_rows = _rows("ivs", ivs, count, 16)
    out = _rows("data", data, count, 0).copy()
    _cbc_kernel(checked, iv_rows, out)
    return out


def cmac(keys: npt.ArrayLike, data: npt.ArrayLike, offsets: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """Return the AES-CMAC (RFC 4493) of each message: ``data[offsets[i]:offsets[i + 1]]``.

    Raises:
        ValueError: keys not uint8[n, 16], data not 1-D uint8, or offsets not n + 1
            non-decreasing bounds inside ``data``.
    """
    checked = _keys(keys)
    buffer = np.ascontiguousarray(np.asarray(data))
    if buffer.dtype != np.uint8 or buffer.ndim != 1:
        raise ValueError("data must be a 1-D uint8 array")
    bounds = np.asarray(offsets).astype(np.int64)
    count = checked.shape[0]
    if bounds.shape != (count + 1,) or (count + 1 and (bounds[0] < 0 or bounds[-1] > buffer.size)):
        raise ValueError(f"offsets must be {count + 1} bounds inside {buffer.size} bytes")
    if np.any(np.diff(bounds) < 0):
        raise ValueError("offsets go backwards")
    out = np.empty((count, 16), dtype=np.uint8)
    _cmac_kernel(checked, buffer, bounds, out)
    return out


def derive_keys(
    keys: npt.ArrayLike, *, constant: int, counters: npt.ArrayLike, idents: npt.ArrayLike
) -> npt.NDArray[np.uint8]:
    """Derive OMS mode-7 keys ``CMAC(MK, DC || MCR(4, LE) || ID(4, LE) || 07 x 7)``.

    Args:
        keys: master keys uint8[n, 16].
        constant: derivation constant DC (0x00 Kenc, 0x01 Kmac from the meter, ...).
        counters: message counters MCR (n integers, 32 bits).
        idents: meter IDs as on the wire (BCD digits in the hex digits, as
            ``MeterAddress.ident``), n integers of 32 bits.

    Raises:
        ValueError: shapes, dtypes or ranges do not fit.
    """
    checked = _keys(keys)
    count = checked.shape[0]
    if not 0 <= constant <= 0xFF:
        raise ValueError(f"derivation constant {constant} is not a byte")
    mcr = _words32("counters", counters, count)
    ids = _words32("idents", idents, count)
    out = np.empty((count, 16), dtype=np.uint8)
    _kdf_kernel(checked, constant, mcr, ids, out)
    return out
