"""The sensor farm's own entry to the telegram builder: rows of a trusted meter table.

:func:`build_rows` builds the same frames as :func:`telegrams.build_telegrams` for the meters
at some rows of a table whose columns are already validated (the farm's ``Population``): it
checks dtypes and shapes only, reads the columns in place instead of copying one row per
telegram, and keeps one expanded AES key per meter (``uint32[n, 44]``, 176 bytes), which it
re-expands by itself when a meter's key changed.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeAlias

import numba
import numpy as np
import numpy.typing as npt
from numba import njit
from smtestbed.services.sensorfarm.aes import ROUND_KEY_WORDS, _expand, _load
from smtestbed.services.sensorfarm.schema import N_VALUES
from smtestbed.services.sensorfarm.telegrams import (
    _FRAME_SIZES,
    _bcd,
    _frame_a,
    _head,
    _records,
    _seal5,
    _seal7,
)
from smtestbed.services.sensorfarm.templates import template_table

_Columns: TypeAlias = tuple[
    npt.NDArray[np.uint32],
    npt.NDArray[np.uint16],
    npt.NDArray[np.uint8],
    npt.NDArray[np.uint8],
    npt.NDArray[np.uint8],
    npt.NDArray[np.uint8],
]
"""Meter columns the kernels read: ident, manufacturer, version, device type, kind, security."""
_Tables: TypeAlias = tuple[
    npt.NDArray[np.uint8], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]
]
"""The record templates: bytes, lengths, value slots, scales (see ``template_table``)."""


@njit(cache=True)
def _refresh_kernel(
    rows: npt.NDArray[np.int64],
    security: npt.NDArray[np.uint8],
    keys: npt.NDArray[np.uint8],
    round_keys: npt.NDArray[np.uint32],
) -> int:
    """Re-expand the round keys of sending meters whose key changed; return how many.

    The first four round-key words are the key itself, so a changed key shows there.
    """
    changed = 0
    for j in range(rows.size):
        r = rows[j]
        if security[r] == 0:
            continue
        rk = round_keys[r]
        for w in range(4):
            if np.int64(rk[w]) != _load(keys[r], 4 * w):
                _expand(keys[r], 0, rk)
                changed += 1
                break
    return changed


@njit(cache=True)
def _rows_offsets(
    rows: npt.NDArray[np.int64],
    kind: npt.NDArray[np.uint8],
    security: npt.NDArray[np.uint8],
    sizes: npt.NDArray[np.int64],
) -> npt.NDArray[np.uint32]:
    offsets = np.zeros(rows.size + 1, dtype=np.uint32)
    for j in range(rows.size):
        r = rows[j]
        offsets[j + 1] = np.int64(offsets[j]) + sizes[kind[r], security[r]]
    return offsets


@njit(cache=True)
def _rows_chunk(
    lo: int,
    hi: int,
    rows: npt.NDArray[np.int64],
    cols: _Columns,
    access: npt.NDArray[np.uint8],
    counter: npt.NDArray[np.uint32],
    values: npt.NDArray[np.float64],
    round_keys: npt.NDArray[np.uint32],
    tables: _Tables,
    offsets: npt.NDArray[np.uint32],
    out: npt.NDArray[np.uint8],
) -> None:
    """Build telegrams ``lo..hi-1`` of ``rows`` straight from the population's columns."""
    t = np.zeros(256, dtype=np.uint8)
    scratch = np.zeros(256, dtype=np.uint8)
    derived = np.empty(ROUND_KEY_WORDS, dtype=np.uint32)
    ident, m_field, ver, dev, kind, security = cols
    tdata, tlen, slots, scale = tables
    for j in range(lo, hi):
        r = rows[j]
        mode, acc = np.int64(security[r]), np.int64(access[j])
        bcd = _bcd(np.int64(ident[r]))
        apl = _head(t, mode, np.int64(m_field[r]), bcd, np.int64(ver[r]), np.int64(dev[r]), acc)
        start = apl if mode == 0 else apl + 2
        if mode != 0:
            t[apl], t[apl + 1] = 0x2F, 0x2F
        end = _records(t, start, np.int64(kind[r]), values[r], tdata, tlen, slots, scale)
        if mode != 0:
            blocks = (end - apl + 15) // 16
            t[end : apl + 16 * blocks] = 0x2F
            end = apl + 16 * blocks
            t[apl - (3 if mode == 7 else 2)] = blocks << 4
            if mode == 5:
                _seal5(t, apl, blocks, round_keys[r], acc)
            else:
                _seal7(t, apl, end, blocks, round_keys[r], np.int64(counter[j]), scratch, derived)
        t[0] = end - 1
        _frame_a(t, end, out, offsets[j])


@njit(cache=True)
def _rows_serial(
    rows: npt.NDArray[np.int64],
    cols: _Columns,
    access: npt.NDArray[np.uint8],
    counter: npt.NDArray[np.uint32],
    values: npt.NDArray[np.float64],
    round_keys: npt.NDArray[np.uint32],
    tables: _Tables,
    offsets: npt.NDArray[np.uint32],
    out: npt.NDArray[np.uint8],
) -> None:
    _rows_chunk(0, rows.size, rows, cols, access, counter, values, round_keys, tables, offsets, out)


@njit(parallel=True)  # not cached: Numba cannot cache parallel code reading the AES tables
def _rows_parallel(
    rows: npt.NDArray[np.int64],
    cols: _Columns,
    access: npt.NDArray[np.uint8],
    counter: npt.NDArray[np.uint32],
    values: npt.NDArray[np.float64],
    round_keys: npt.NDArray[np.uint32],
    tables: _Tables,
    offsets: npt.NDArray[np.uint32],
    out: npt.NDArray[np.uint8],
) -> None:
    chunks = 8 * numba.get_num_threads()
    for c in numba.prange(chunks):
        lo, hi = rows.size * c // chunks, rows.size * (c + 1) // chunks
        _rows_chunk(lo, hi, rows, cols, access, counter, values, round_keys, tables, offsets, out)


class MeterTable(Protocol):
    """The per-meter columns :func:`build_rows` reads (a ``Population`` has them all)."""

    @property
    def ident(self) -> npt.NDArray[np.uint32]: ...
    @property
    def manufacturer(self) -> npt.NDArray[np.uint16]: ...
    @property
    def version(self) -> npt.NDArray[np.uint8]: ...
    @property
    def device_type(self) -> npt.NDArray[np.uint8]: ...
    @property
    def kind(self) -> npt.NDArray[np.uint8]: ...
    @property
    def security(self) -> npt.NDArray[np.uint8]: ...
    @property
    def key(self) -> npt.NDArray[np.uint8]: ...
    @property
    def values(self) -> npt.NDArray[np.float64]: ...


def _want(
    name: str, array: npt.NDArray[Any], dtype: type[np.generic], shape: tuple[int, ...]
) -> None:
    if array.dtype != dtype or array.shape != shape or not array.flags.c_contiguous:
        raise ValueError(
            f"{name} must be contiguous {np.dtype(dtype).name}{list(shape)},"
            f" got {array.dtype}{list(array.shape)}"
        )


def _check_table(
    meters: MeterTable, rows: npt.NDArray[np.int64], round_keys: npt.NDArray[Any]
) -> None:
    """Check dtypes and shapes only (O(1)): the values are the table owner's promise."""
    n = meters.ident.shape[0]
    for name, dtype in (("ident", np.uint32), ("manufacturer", np.uint16)):
        _want(name, getattr(meters, name), dtype, (n,))
    for name in ("version", "device_type", "kind", "security"):
        _want(name, getattr(meters, name), np.uint8, (n,))
    _want("key", meters.key, np.uint8, (n, 16))
    _want("values", meters.values, np.float64, (n, N_VALUES))
    _want("round_keys", round_keys, np.uint32, (n, ROUND_KEY_WORDS))
    _want("rows", rows, np.int64, (rows.size,))


def build_rows(
    meters: MeterTable,
    rows: npt.NDArray[np.int64],
    *,
    access_number: npt.NDArray[np.uint8],
    counter: npt.NDArray[np.uint32],
    round_keys: npt.NDArray[np.uint32],
    parallel: bool = False,
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint8]]:
    """Build the frames of meters ``rows`` of a trusted table, as :func:`build_telegrams` does.

    The entry of a caller that already guarantees the columns' values (a ``Population``
    validates them on load and on every change): it checks dtypes and shapes only, reads the
    columns in place (no per-telegram copies) and keeps ``round_keys`` (uint32[n, 44], one row
    per meter of the table) in step with ``key``: a sending meter whose key changed since its
    row was expanded is re-expanded first, in place.

    Args:
        meters: the table; ``ident`` 0..99999999, ``security`` 0, 5 or 7 and the sent
            ``values`` finite within +-1e15 are not checked here.
        rows: int64 row of each telegram's meter, each in ``0..n-1`` (not checked).
        access_number, counter: ACC and MCR per telegram.
        round_keys: the table's expanded keys (see :func:`aes.expand_keys`).
        parallel: build on all of Numba's threads (chunks of telegrams).

    Returns:
        ``offsets`` (uint32[m + 1]) and ``data`` as :func:`build_telegrams` returns them.
    """
    _check_table(meters, rows, round_keys)
    _want("access_number", access_number, np.uint8, (rows.size,))
    _want("counter", counter, np.uint32, (rows.size,))
    _refresh_kernel(rows, meters.security, meters.key, round_keys)
    offsets = _rows_offsets(rows, meters.kind, meters.security, _FRAME_SIZES)
    out = np.empty(int(offsets[-1]), dtype=np.uint8)
    cols = (
        meters.ident, meters.manufacturer, meters.version, meters.device_type, meters.kind,
        meters.security,
    )  # fmt: skip
    table = template_table()
    tables = (table.data, table.length, table.slots, table.scale)
    kernel = _rows_parallel if parallel else _rows_serial
    kernel(rows, cols, access_number, counter, meters.values, round_keys, tables, offsets, out)
    return offsets, out
