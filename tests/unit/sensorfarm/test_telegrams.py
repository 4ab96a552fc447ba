"""Record templates and the batch frame builder against the proto wM-Bus encoder and decoder."""

from __future__ import annotations

import math
import os
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from smtestbed.proto.batch import FrameBatch
from smtestbed.proto.records import encode_records
from smtestbed.proto.wmbus import MeterAddress, decode_telegram, encode_telegram, new_telegram
from smtestbed.services.sensorfarm.aes import expand_keys
from smtestbed.services.sensorfarm.schema import N_VALUES, MeterKind
from smtestbed.services.sensorfarm.telegram_rows import build_rows
from smtestbed.services.sensorfarm.telegrams import build_telegrams
from smtestbed.services.sensorfarm.templates import (
    RECORD_SPECS,
    is_counter,
    raw_value,
    records_for,
    template,
)

# Without the JIT the kernels run as Python: keep the batches small then.
METERS = 6 if os.environ.get("NUMBA_DISABLE_JIT") == "1" else 150
MODES = (0, 5, 7)


# value ranges per kind that fit the record fields (Wh, m^3, W or m^3/h, °C)
SCALES = {
    MeterKind.ELECTRICITY: (1e8, 1e7, 2e4, 0.0, 0.0),
    MeterKind.GAS: (1e5, 0.0, 0.0, 0.0, 0.0),
    MeterKind.WATER: (1e5, 10.0, 0.0, 0.0, 0.0),
    MeterKind.HEAT: (1e9, 1e5, 10.0, 120.0, 120.0),
}


def _meters(rng: np.random.Generator, count: int, kind: int, mode: int) -> dict[str, Any]:
    scale = np.array(SCALES[MeterKind(kind)])
    return {
        "ident": rng.integers(0, 100_000_000, count),
        "manufacturer": rng.integers(0, 2**16, count).astype(np.uint16),
        "version": rng.integers(0, 256, count).astype(np.uint8),
        "device_type": rng.integers(0, 256, count).astype(np.uint8),
        "kind": np.full(count, kind, dtype=np.uint8),
        "security_mode": np.full(count, mode, dtype=np.uint8),
        "key": rng.integers(0, 256, (count, 16), dtype=np.uint8),
        "access_number": rng.integers(0, 256, count).astype(np.uint8),
        "counter": rng.integers(0, 2**32, count, dtype=np.uint32),
        "values": rng.uniform(-0.1, 1.0, (count, N_VALUES)) * scale,
    }


def _address(meters: dict[str, Any], i: int) -> MeterAddress:
    return MeterAddress(
        manufacturer=int(meters["manufacturer"][i]),
        ident=int(str(int(meters["ident"][i])), 16),  # decimal digits as BCD nibbles
        version=int(meters["version"][i]),
        device_type=int(meters["device_type"][i]),
    )


def _proto_frame(meters: dict[str, Any], i: int) -> bytes:
    """Build meter ``i``'s frame with the proto encoder (the slow reference)."""
    kind = MeterKind(int(meters["kind"][i]))
    mode = int(meters["security_mode"][i])
    records = encode_records(records_for(kind, meters["values"][i].tolist()))
    telegram = new_telegram(
        address=_address(meters, i),
        records=records,
        access_number=int(meters["access_number"][i]),
        security_mode=mode,
        counter=int(meters["counter"][i]),
    )
    return encode_telegram(telegram, key=meters["key"][i].tobytes() if mode else None)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(5150)


def test_electricity_records_are_energy_import_export_and_power() -> None:
    """Electricity sends 04 03 (A+ Wh), 04 83 3C (A- Wh) and 04 2B (W) with the values."""
    records = records_for(MeterKind.ELECTRICITY, [1234.9, 56.2, -300.4, 0.0, 0.0])
    heads = [(r.dib + r.vib).hex() for r in records]
    assert heads == ["0403", "04833c", "042b"]
    assert [r.value for r in records] == [1234, 56, -300]
    assert records[1].quantity == "energy"
    assert records[1].vife == (0x3C,)


def test_counters_round_down_and_never_read_above_the_true_value() -> None:
    """A gas volume of 1.2349 m^3 reads 1.234 (floor), not 1.235."""
    (record,) = records_for(MeterKind.GAS, [1.2349, 0.0, 0.0, 0.0, 0.0])
    assert record.raw_value == 1234
    assert record.value == pytest.approx(1.234)
    assert (record.dib + record.vib).hex() == "0413"


def test_instantaneous_values_round_to_nearest() -> None:
    """A water flow of 0.0015 m^3/h reads 0.002 and 0.0014 reads 0.001 (nearest, halves up)."""
    up = records_for(MeterKind.WATER, [0.0, 0.0015, 0.0, 0.0, 0.0])[1]
    down = records_for(MeterKind.WATER, [0.0, 0.0014, 0.0, 0.0, 0.0])[1]
    assert (up.raw_value, down.raw_value) == (2, 1)


def test_values_beyond_a_field_wrap_like_a_register() -> None:
    """A flow temperature of 4000 °C (40000 in 0.1 °C) wraps in the int16 field to -25536."""
    records = records_for(MeterKind.HEAT, [0.0, 0.0, 0.0, 4000.0, 20.0])
    assert records[3].raw_value == 40000 - 65536
    assert records[4].value == pytest.approx(20.0)


@pytest.mark.parametrize("kind", list(MeterKind))
def test_template_bytes_are_the_records_with_zero_values(kind: MeterKind) -> None:
    """Each kind's template equals its encoded records for all-zero values, slots on the data."""
    tmpl = template(kind)
    assert tmpl.data == encode_records(records_for(kind, [0.0] * N_VALUES))
    values = [float(7 + i) for i in range(N_VALUES)]
    encoded = encode_records(records_for(kind, values))
    for slot, spec in zip(tmpl.slots, RECORD_SPECS[kind], strict=True):
        field = encoded[slot.offset : slot.offset + slot.size]
        counter = is_counter(kind, spec.column)
        want = raw_value(spec, values[spec.column], counter=counter)
        assert int.from_bytes(field, "little", signed=True) == want


def test_records_for_rejects_a_non_finite_sent_value() -> None:
    """NaN in a column the kind sends raises ValueError naming the column."""
    with pytest.raises(ValueError, match="column 0"):
        records_for(MeterKind.GAS, [math.nan, 0.0, 0.0, 0.0, 0.0])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", list(MeterKind))
def test_frames_are_byte_identical_to_the_proto_encoder(
    rng: np.random.Generator, kind: MeterKind, mode: int
) -> None:
    """Every built frame equals new_telegram + seal_telegram + encode_telegram for its meter."""
    meters = _meters(rng, METERS, kind, mode)
    offsets, data = build_telegrams(**meters)
    assert offsets[0] == 0
    assert offsets[-1] == data.size
    for i in range(METERS):
        assert data[offsets[i] : offsets[i + 1]].tobytes() == _proto_frame(meters, i), i


def test_a_mixed_batch_matches_the_proto_encoder(rng: np.random.Generator) -> None:
    """Meters of all kinds and modes in one batch each get their own frame, in order."""
    parts = [_meters(rng, 3, kind, mode) for kind in MeterKind for mode in MODES]
    meters = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    order = rng.permutation(len(meters["ident"]))
    meters = {name: column[order] for name, column in meters.items()}
    offsets, data = build_telegrams(**meters)
    frames = [data[offsets[i] : offsets[i + 1]].tobytes() for i in range(order.size)]
    assert frames == [_proto_frame(meters, i) for i in range(order.size)]


@pytest.mark.parametrize("mode", MODES)
def test_decoding_a_frame_with_its_key_gives_back_the_rounded_values(
    rng: np.random.Generator, mode: int
) -> None:
    """decode_telegram(frame, key) reads each sent value within its resolution, as documented."""
    parts = [_meters(rng, 4, kind, mode) for kind in MeterKind]
    meters = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    offsets, data = build_telegrams(**meters)
    for i, kind in enumerate(MeterKind(int(k)) for k in meters["kind"]):
        frame = data[offsets[i] : offsets[i + 1]].tobytes()
        telegram = decode_telegram(frame, key=meters["key"][i].tobytes())
        assert telegram.records is not None
        assert telegram.address == _address(meters, i)
        for record, spec in zip(telegram.records.records, RECORD_SPECS[kind], strict=True):
            true, step = meters["values"][i][spec.column], 10.0**spec.exponent
            assert isinstance(record.value, int | float)
            if is_counter(kind, spec.column):
                assert true - step - 1e-9 <= record.value <= true + 1e-9
            else:
                assert abs(record.value - true) <= step / 2 + 1e-9


def test_built_buffers_form_a_frame_batch(rng: np.random.Generator) -> None:
    """FrameBatch.from_buffers accepts the offsets and data; frame i is meter i's frame."""
    meters = _meters(rng, 5, MeterKind.WATER, 5)
    offsets, data = build_telegrams(**meters)
    batch = FrameBatch.from_buffers(offsets, data)
    assert batch.count == 5
    assert bytes(batch[2]) == _proto_frame(meters, 2)


def test_an_empty_window_gives_no_frames(rng: np.random.Generator) -> None:
    """Zero meters give offsets [0] and an empty buffer."""
    offsets, data = build_telegrams(**_meters(rng, 0, MeterKind.GAS, 0))
    assert offsets.tolist() == [0]
    assert data.size == 0


def test_unused_value_columns_may_hold_nan(rng: np.random.Generator) -> None:
    """A gas meter's columns 1..4 are not sent, so NaN there builds the same frame."""
    meters = _meters(rng, 2, MeterKind.GAS, 5)
    _, clean = build_telegrams(**meters)
    meters["values"][:, 1:] = math.nan
    _, with_nan = build_telegrams(**meters)
    assert with_nan.tobytes() == clean.tobytes()


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("ident", 100_000_000, "ident"),
        ("security_mode", 3, "security_mode"),
        ("kind", 4, "kind"),
        ("counter", -1, "counter"),
    ],
)
def test_out_of_range_columns_are_rejected(
    rng: np.random.Generator, column: str, value: int, message: str
) -> None:
    """A column value outside its field raises ValueError naming the column."""
    meters = _meters(rng, 3, MeterKind.HEAT, 7)
    meters[column] = meters[column].astype(np.int64)
    meters[column][1] = value
    with pytest.raises(ValueError, match=message):
        build_telegrams(**meters)


def test_a_non_finite_sent_value_is_rejected(rng: np.random.Generator) -> None:
    """Infinity in a heat meter's flow temperature raises ValueError."""
    meters = _meters(rng, 2, MeterKind.HEAT, 0)
    meters["values"][0, 3] = math.inf
    with pytest.raises(ValueError, match="finite"):
        build_telegrams(**meters)


def test_keys_of_the_wrong_shape_are_rejected(rng: np.random.Generator) -> None:
    """Keys of 8 bytes per meter raise ValueError naming uint8[n, 16]."""
    meters = _meters(rng, 2, MeterKind.GAS, 5)
    meters["key"] = meters["key"][:, :8]
    with pytest.raises(ValueError, match=r"uint8\[2, 16\]"):
        build_telegrams(**meters)


@pytest.mark.parametrize("mode", [5, 7])
def test_pre_expanded_round_keys_build_the_same_frames(rng: np.random.Generator, mode: int) -> None:
    """Passing each meter's expand_keys(key) gives the frames built from the raw keys."""
    meters = _meters(rng, 8, MeterKind.HEAT, mode)
    _, plain = build_telegrams(**meters)
    _, expanded = build_telegrams(**meters, round_keys=expand_keys(meters["key"]))
    assert expanded.tobytes() == plain.tobytes()
    assert expanded[-10:].tobytes() == _proto_frame(meters, 7)[-10:]


def test_round_keys_of_the_wrong_shape_are_rejected(rng: np.random.Generator) -> None:
    """Round keys with 40 words per meter raise ValueError naming uint32[n, 44]."""
    meters = _meters(rng, 2, MeterKind.GAS, 5)
    with pytest.raises(ValueError, match=r"uint32\[2, 44\]"):
        build_telegrams(**meters, round_keys=np.zeros((2, 40), dtype=np.uint32))


def _table(rng: np.random.Generator, count: int) -> SimpleNamespace:
    """Return a meter table (the columns a Population has) of mixed kinds and modes."""
    parts = [_meters(rng, count, kind, mode) for kind in MeterKind for mode in MODES]
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return SimpleNamespace(
        ident=cols["ident"].astype(np.uint32),
        manufacturer=cols["manufacturer"],
        version=cols["version"],
        device_type=cols["device_type"],
        kind=cols["kind"],
        security=cols["security_mode"],
        key=cols["key"],
        values=cols["values"],
        access_number=cols["access_number"],
        counter=cols["counter"],
    )


@pytest.mark.parametrize("parallel", [False, True])
def test_rows_of_a_table_build_the_frames_of_build_telegrams(
    rng: np.random.Generator, parallel: bool
) -> None:
    """build_rows on rows of a table (repeats, any order) equals build_telegrams on their copies."""
    table = _table(rng, max(2, METERS // 12))
    rows = rng.integers(0, table.ident.size, 2 * table.ident.size).astype(np.int64)
    acc, mcr = table.access_number[rows], table.counter[rows]
    offsets, data = build_rows(
        table, rows, access_number=acc, counter=mcr, round_keys=expand_keys(table.key),
        parallel=parallel,
    )  # fmt: skip
    want_offsets, want = build_telegrams(
        ident=table.ident[rows], manufacturer=table.manufacturer[rows],
        version=table.version[rows], device_type=table.device_type[rows], kind=table.kind[rows],
        security_mode=table.security[rows], key=table.key[rows], access_number=acc, counter=mcr,
        values=table.values[rows],
    )  # fmt: skip
    assert offsets.tolist() == want_offsets.tolist()
    assert data.tobytes() == want.tobytes()


def test_rows_pick_up_a_changed_key(rng: np.random.Generator) -> None:
    """After a key changes, the meter's next frame uses it and its round keys are re-expanded."""
    table = _table(rng, 1)
    round_keys = expand_keys(table.key)
    row = int(np.flatnonzero(table.security == 7)[0])
    table.key[row] ^= 0x5A
    rows = np.array([row], dtype=np.int64)
    _, data = build_rows(
        table, rows, access_number=table.access_number[rows], counter=table.counter[rows],
        round_keys=round_keys,
    )  # fmt: skip
    meters = {k: getattr(table, k)[rows] for k in ("ident", "manufacturer", "version", "kind")}
    meters |= {"device_type": table.device_type[rows], "security_mode": table.security[rows]}
    meters |= {"key": table.key[rows], "values": table.values[rows]}
    meters |= {"access_number": table.access_number[rows], "counter": table.counter[rows]}
    assert data.tobytes() == _proto_frame(meters, 0)
    assert round_keys[row].tolist() == expand_keys(table.key[rows])[0].tolist()


def test_rows_refuse_a_column_of_another_dtype(rng: np.random.Generator) -> None:
    """A table whose ident column is int64 is refused with a message naming the column."""
    table = _table(rng, 1)
    table.ident = table.ident.astype(np.int64)
    rows = np.zeros(1, dtype=np.int64)
    with pytest.raises(ValueError, match="ident must be contiguous uint32"):
        build_rows(
            table, rows, access_number=table.access_number[:1], counter=table.counter[:1],
            round_keys=expand_keys(table.key),
        )  # fmt: skip
