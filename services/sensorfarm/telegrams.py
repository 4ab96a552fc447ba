"""Build the wM-Bus/OMS frames of many meters at once: records, encryption, link CRCs.

Each frame is byte-identical to what :mod:`smtestbed.proto.wmbus` builds for the same meter
with ``new_telegram`` (C-field SND_NR, short TPL header) + ``seal_telegram`` +
``encode_telegram`` (format A). Layout before the link-layer CRCs::

    L 44 M(2) ID(4) Ver Type                     link header; ID = 8 BCD digits, LSB first
    [90 0F 00 2C 25 MCR(4) MAC(8)]               AFL, mode 7 only (OMS profile B)
    7A ACC 00 CFG(2) [10]                        short TPL; CFG = mode << 8 | N << 4;
                                                 CFG-ext 0x10 (OMS KDF, key 0) in mode 7
    [2F 2F] records [2F ... padding]             modes 5/7: N x 16 bytes AES-128-CBC

Mode 5 encrypts with the meter key and IV ``M ID Ver Type ACC x 8``; mode 7 with
``Kenc = KDF(MK, 0x00, MCR, ID)`` and IV 0, then ``MAC = CMAC(Kmac, 25 MCR TPL..end)[:8]``
with ``Kmac = KDF(MK, 0x01, MCR, ID)``. The records and their value rounding are those of
:mod:`smtestbed.services.sensorfarm.templates`. On air (format A) a CRC-16 (MSB first)
follows the 10-byte first block and every 16-byte block after it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit
from smtestbed.proto.wmbus.crc import byte_table
from smtestbed.services.sensorfarm.aes import (
    ROUND_KEY_WORDS,
    Word,
    Words,
    _cbc,
    _cmac,
    _expand,
    _expand_words,
    _kdf,
    _load,
    _store,
    _subkey1,
)
from smtestbed.services.sensorfarm.schema import N_VALUES, MeterKind
from smtestbed.services.sensorfarm.templates import template_table

SND_NR = 0x44
CI_AFL = 0x90
CI_TPL_SHORT = 0x7A
AFL_SIZE = 17  # 90 0F 00 2C 25 MCR(4) MAC(8)
MODES = (0, 5, 7)
MAX_IDENT = 99_999_999
MAX_ABS_VALUE = 1e15  # keeps value * 10^-exponent exactly convertible to int64

_CRC_TABLE = np.array(byte_table(), dtype=np.uint16)


def _plain_size(record_bytes: int, mode: int) -> int:
    """Return the APL size after the TPL header (2F 2F and padding in modes 5 and 7)."""
    return record_bytes if mode == 0 else 16 * (-(-(record_bytes + 2) // 16))


def _sizes(record_bytes: int, mode: int) -> tuple[int, int]:
    """Return (CRC-less length = L + 1, on-air format A length) of a telegram."""
    body = (
        (AFL_SIZE if mode == 7 else 0) + (6 if mode == 7 else 5) + _plain_size(record_bytes, mode)
    )
    length = 10 + body
    return length, length + 2 * (1 + -(-(length - 10) // 16))


def _size_table() -> npt.NDArray[np.int64]:
    """Return on-air sizes ``[kind, mode]`` (mode 0..7; unused modes are 0)."""
    table = np.zeros((len(MeterKind), 8), dtype=np.int64)
    for kind in MeterKind:
        for mode in MODES:
            table[kind, mode] = _sizes(int(template_table().length[kind]), mode)[1]
    return table


_FRAME_SIZES = _size_table()


@njit(cache=True)
def _bcd(ident: Word) -> Word:
    """Return the 8 decimal digits of ``ident`` as BCD (one digit per nibble)."""
    out = np.int64(0)
    for shift in range(0, 32, 4):
        out |= (ident % 10) << shift
        ident //= 10
    return out


@njit(cache=True)
def _put_le(buf: npt.NDArray[np.uint8], p: Word, value: Word, size: Word) -> None:
    for j in range(size):
        buf[p + j] = (value >> (8 * j)) & 0xFF


@njit(cache=True)
def _records(
    t: npt.NDArray[np.uint8],
    p: Word,
    kind: Word,
    values: npt.NDArray[np.float64],
    tdata: npt.NDArray[np.uint8],
    tlen: npt.NDArray[np.int64],
    slots: npt.NDArray[np.int64],
    scale: npt.NDArray[np.float64],
) -> Word:
    """Write a kind's records with ``values`` at ``t[p:]``; return the end offset."""
    size = tlen[kind]
    t[p : p + size] = tdata[kind, :size]
    for s in range(slots.shape[1]):
        width = slots[kind, s, 1]
        if width == 0:
            continue
        x = values[slots[kind, s, 2]] * scale[kind, s, 0] / scale[kind, s, 1]
        raw = np.int64(np.floor(x if slots[kind, s, 3] else x + 0.5))
        _put_le(t, p + slots[kind, s, 0], raw, width)
    end: Word = p + size
    return end


@njit(cache=True)
def _head(
    t: npt.NDArray[np.uint8], mode: Word, m_field: Word, bcd: Word, ver: Word, dev: Word, acc: Word
) -> Word:
    """Write link header, AFL skeleton (mode 7) and short TPL header; return the APL offset."""
    t[1] = SND_NR
    _put_le(t, 2, m_field, 2)
    _put_le(t, 4, bcd, 4)
    t[8], t[9] = ver, dev
    p = 10
    if mode == 7:
        t[10], t[11], t[12], t[13], t[14] = CI_AFL, 0x0F, 0x00, 0x2C, 0x25
        p = 10 + AFL_SIZE
    t[p], t[p + 1], t[p + 2], t[p + 3], t[p + 4] = CI_TPL_SHORT, acc, 0, 0, mode
    if mode == 7:
        t[p + 5] = 0x10
        return p + 6
    return p + 5


@njit(cache=True)
def _seal5(
    t: npt.NDArray[np.uint8], apl: Word, blocks: Word, rk: npt.NDArray[np.uint32], acc: Word
) -> None:
    """Encrypt mode 5: meter key, IV = M ID Ver Type ACC x 8 (the link header's bytes 2..9)."""
    rep = acc * 0x01010101
    _cbc(rk, t, apl, blocks, (_load(t, 2), _load(t, 6), rep, rep))


@njit(cache=True)
def _derived(
    rk: npt.NDArray[np.uint32],
    k1: Words,
    dc: Word,
    mcr: Word,
    ident: Word,
    out: npt.NDArray[np.uint32],
) -> npt.NDArray[np.uint32]:
    """Expand the KDF key of constant ``dc`` into ``out`` (returned)."""
    w = _kdf(rk, k1, dc, mcr, ident)
    _expand_words(w[0], w[1], w[2], w[3], out)
    return out


@njit(cache=True)
def _seal7(
    t: npt.NDArray[np.uint8],
    apl: Word,
    end: Word,
    blocks: Word,
    rk: npt.NDArray[np.uint32],
    mcr: Word,
    scratch: npt.NDArray[np.uint8],
    derived: npt.NDArray[np.uint32],
) -> None:
    """Encrypt mode 7 with Kenc and IV 0, then write the AFL MAC (Kmac, encrypt-then-MAC)."""
    _put_le(t, 15, mcr, 4)
    ident = t[4] | (np.int64(t[5]) << 8) | (np.int64(t[6]) << 16) | (np.int64(t[7]) << 24)
    k1 = _subkey1(rk)
    _cbc(_derived(rk, k1, 0x00, mcr, ident, derived), t, apl, blocks, (0, 0, 0, 0))
    tpl = 10 + AFL_SIZE
    size = 5 + end - tpl
    scratch[:5] = t[14:19]
    scratch[5:size] = t[tpl:end]
    mac = _cmac(_derived(rk, k1, 0x01, mcr, ident, derived), scratch, 0, size)
    _store(t, 19, mac[0])
    _store(t, 23, mac[1])


@njit(cache=True)
def _frame_a(t: npt.NDArray[np.uint8], length: Word, out: npt.NDArray[np.uint8], o: Word) -> Word:
    """Copy ``t[:length]`` to ``out[o:]`` with format A block CRCs; return the end offset."""
    pos: Word = 0
    block: Word = 10
    while pos < length:
        crc = np.int64(0)
        for i in range(pos, pos + block):
            out[o] = t[i]
            o += 1
            crc = ((crc << 8) & 0xFFFF) ^ np.int64(_CRC_TABLE[((crc >> 8) ^ t[i]) & 0xFF])
        crc ^= 0xFFFF
        out[o], out[o + 1] = crc >> 8, crc & 0xFF
        o += 2
        pos += block
        block = min(16, length - pos)
    return o


@njit(cache=True)
def _build_kernel(
    meters: npt.NDArray[np.int64],
    keys: npt.NDArray[np.uint8],
    round_keys: npt.NDArray[np.uint32],
    values: npt.NDArray[np.float64],
    offsets: npt.NDArray[np.uint32],
    out: npt.NDArray[np.uint8],
    tdata: npt.NDArray[np.uint8],
    tlen: npt.NDArray[np.int64],
    slots: npt.NDArray[np.int64],
    scale: npt.NDArray[np.float64],
) -> None:
    """Build every frame; ``meters`` columns: ident, M, ver, type, kind, mode, ACC, MCR.

    ``round_keys`` holds each meter's expanded key, or no rows: then each key is expanded here.
    """
    t = np.zeros(256, dtype=np.uint8)
    scratch = np.zeros(256, dtype=np.uint8)
    scratch_rk = np.empty(ROUND_KEY_WORDS, dtype=np.uint32)
    rk = scratch_rk
    derived = np.empty(ROUND_KEY_WORDS, dtype=np.uint32)
    for i in range(meters.shape[0]):
        row = meters[i]
        kind, mode, acc = row[4], row[5], row[6]
        apl = _head(t, mode, row[1], _bcd(row[0]), row[2], row[3], acc)
        start = apl if mode == 0 else apl + 2
        if mode != 0:
            t[apl], t[apl + 1] = 0x2F, 0x2F
        end = _records(t, start, kind, values[i], tdata, tlen, slots, scale)
        if mode != 0:
            blocks = (end - apl + 15) // 16
            t[end : apl + 16 * blocks] = 0x2F
            end = apl + 16 * blocks
            t[apl - (3 if mode == 7 else 2)] = blocks << 4
            if round_keys.shape[0]:
                rk = round_keys[i]
            else:
                _expand(keys[i], 0, scratch_rk)
                rk = scratch_rk
            if mode == 5:
                _seal5(t, apl, blocks, rk, acc)
            else:
                _seal7(t, apl, end, blocks, rk, row[7], scratch, derived)
        t[0] = end - 1
        _frame_a(t, end, out, offsets[i])


def _column(
    name: str, values: npt.ArrayLike, count: int, low: int, high: int
) -> npt.NDArray[np.int64]:
    """Return one per-meter integer column as int64 after checking its shape and range."""
    array = np.asarray(values)
    if array.shape != (count,) or array.dtype.kind not in "iu":
        raise ValueError(f"{name} must be {count} integers, got {array.dtype}{list(array.shape)}")
    if count and (int(array.min()) < low or int(array.max()) > high):
        raise ValueError(f"{name} must lie in {low}..{high}")
    return array.astype(np.int64)


def _check_values(values: npt.ArrayLike, kind: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Return the values as float64[n, N_VALUES]; the columns a kind sends must be finite."""
    array = np.ascontiguousarray(np.asarray(values, dtype=np.float64))
    if array.shape != (kind.size, N_VALUES):
        raise ValueError(
            f"values must be float64[{kind.size}, {N_VALUES}], got {list(array.shape)}"
        )
    used = _USED[kind]
    sent = np.where(used, array, 0.0)
    if not np.all(np.isfinite(sent)) or np.any(np.abs(sent) > MAX_ABS_VALUE):
        raise ValueError(f"sent values must be finite and within +-{MAX_ABS_VALUE:g}")
    return array


def _check_keys(keys: npt.ArrayLike, count: int) -> npt.NDArray[np.uint8]:
    array = np.asarray(keys)
    if array.dtype != np.uint8 or array.shape != (count, 16):
        raise ValueError(f"keys must be uint8[{count}, 16], got {array.dtype}{list(array.shape)}")
    return np.ascontiguousarray(array)


def _check_round_keys(round_keys: npt.ArrayLike | None, count: int) -> npt.NDArray[np.uint32]:
    if round_keys is None:
        return np.empty((0, ROUND_KEY_WORDS), dtype=np.uint32)
    array = np.asarray(round_keys)
    if array.dtype != np.uint32 or array.shape != (count, ROUND_KEY_WORDS):
        raise ValueError(
            f"round_keys must be uint32[{count}, {ROUND_KEY_WORDS}], got"
            f" {array.dtype}{list(array.shape)}"
        )
    return np.ascontiguousarray(array)


def _used_table() -> npt.NDArray[np.bool_]:
    table = template_table()
    used = np.zeros((len(MeterKind), N_VALUES), dtype=np.bool_)
    for kind in MeterKind:
        for slot in table.slots[kind]:
            if slot[1]:
                used[kind, slot[2]] = True
    return used


_USED = _used_table()


def _meter_matrix(
    ident: npt.ArrayLike,
    manufacturer: npt.ArrayLike,
    version: npt.ArrayLike,
    device_type: npt.ArrayLike,
    kind: npt.ArrayLike,
    security_mode: npt.ArrayLike,
    access_number: npt.ArrayLike,
    counter: npt.ArrayLike,
) -> npt.NDArray[np.int64]:
    """Check the integer columns and stack them as int64[n, 8] in the kernel's order."""
    count = np.asarray(ident).shape[0] if np.ndim(ident) == 1 else -1
    if count < 0:
        raise ValueError("ident must be a 1-D array")
    columns = (
        _column("ident", ident, count, 0, MAX_IDENT),
        _column("manufacturer", manufacturer, count, 0, 0xFFFF),
        _column("version", version, count, 0, 0xFF),
        _column("device_type", device_type, count, 0, 0xFF),
        _column("kind", kind, count, 0, len(MeterKind) - 1),
        _column("security_mode", security_mode, count, 0, 7),
        _column("access_number", access_number, count, 0, 0xFF),
        _column("counter", counter, count, 0, 0xFFFFFFFF),
    )
    mode = columns[5]
    if not np.all((mode == 0) | (mode == 5) | (mode == 7)):
        raise ValueError(f"security_mode must be one of {MODES}")
    return np.ascontiguousarray(np.stack(columns, axis=1))


def build_telegrams(
    *,
    ident: npt.ArrayLike,
    manufacturer: npt.ArrayLike,
    version: npt.ArrayLike,
    device_type: npt.ArrayLike,
    kind: npt.ArrayLike,
    security_mode: npt.ArrayLike,
    key: npt.ArrayLike,
    access_number: npt.ArrayLike,
    counter: npt.ArrayLike,
    values: npt.ArrayLike,
    round_keys: npt.ArrayLike | None = None,
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint8]]:
    """Build the format A frames (link CRCs included) of ``n`` meters.

    Args:
        ident: meter IDs as decimal numbers 0..99999999 (sent as 8 BCD digits).
        manufacturer: M-field values (16 bits).
        version: version bytes.
        device_type: device type (medium) bytes.
        kind: ``MeterKind`` values; they select the records (see ``templates``).
        security_mode: 0, 5 or 7 per meter.
        key: uint8[n, 16], the mode-5 key or mode-7 master key (ignored in mode 0).
        access_number: TPL access numbers ACC (0..255).
        counter: AFL message counters MCR (mode 7; 32 bits).
        values: float64[n, N_VALUES] in the units of ``schema.VALUE_COLUMNS``.
        round_keys: optional uint32[n, 44], ``aes.expand_keys(key)`` kept per meter: saves
            the key expansion per telegram. It must belong to ``key`` (not checked).

    Returns:
        ``offsets`` (uint32[n + 1]) and ``data`` (uint8): frame ``i`` is
        ``data[offsets[i]:offsets[i + 1]]``, ready for ``FrameBatch.from_buffers``.

    Raises:
        ValueError: a column has the wrong shape, type or range, or a sent value is not
            finite (or beyond +-1e15).
    """
    meters = _meter_matrix(
        ident, manufacturer, version, device_type, kind, security_mode, access_number, counter
    )
    count = meters.shape[0]
    keys = _check_keys(key, count)
    expanded = _check_round_keys(round_keys, count)
    checked = _check_values(values, meters[:, 4])
    sizes = _FRAME_SIZES[meters[:, 4], meters[:, 5]]
    offsets = np.zeros(count + 1, dtype=np.uint32)
    np.cumsum(sizes, out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.uint8)
    table = template_table()
    _build_kernel(
        meters,
        keys,
        expanded,
        checked,
        offsets,
        out,
        table.data,
        table.length,
        table.slots,
        table.scale,
    )
    return offsets, out
