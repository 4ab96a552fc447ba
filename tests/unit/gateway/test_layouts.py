"""Record layouts: values read again from registers that did or did not change."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from smtestbed.proto.records import DataType, new_record
from smtestbed.services._runtime.errors import ProtocolError
from smtestbed.services.gateway.layouts import RecordLayouts
from smtestbed.services.gateway.schema import Value

_INT32 = st.integers(-(2**31), 2**31 - 1)


def _plain(energy: int, power: int) -> bytes:
    return b"".join(
        new_record(quantity=q, unit=u, value=v, data_type=DataType.INT32).to_bytes()
        for q, u, v in (("energy", "Wh", energy), ("power", "W", power))
    )


@given(st.lists(st.tuples(_INT32, _INT32), min_size=1, max_size=8))
def test_values_equal_a_fresh_read_whatever_came_before(fields: list[tuple[int, int]]) -> None:
    """Each payload reads as it does through new layouts, repeated registers or not."""
    layouts = RecordLayouts()
    for energy, power in fields:
        plain = _plain(energy, power)
        assert layouts.values(plain) == RecordLayouts().values(plain)
        assert layouts.values(plain) == (
            Value(quantity="energy", unit="Wh", value=float(energy)),
            Value(quantity="power", unit="W", value=float(power)),
        )


def test_unchanged_register_gives_the_same_value_object() -> None:
    """A register at rest is not built again; a changed one is."""
    layouts = RecordLayouts()
    first, second = layouts.values(_plain(5, 0)), layouts.values(_plain(6, 0))
    assert second[1] is first[1]
    assert second[0] == Value(quantity="energy", unit="Wh", value=6.0)


def test_a_bcd_field_holding_no_number_is_malformed_also_in_a_known_layout() -> None:
    """A BCD register read before is read again when its bytes change: a digit above 9
    is refused as a malformed record, a valid one after it reads as usual."""
    bcd = new_record(quantity="volume", unit="m^3", value=12.0, data_type=DataType.BCD8)
    good = bcd.to_bytes()
    bad = good[:-1] + bytes([0xFA])  # last byte: digits A and F
    layouts = RecordLayouts()
    assert layouts.values(_plain(5, 0) + good)[2].value == 12.0
    for _ in range(2):
        with pytest.raises(ProtocolError) as refused:
            layouts.values(_plain(6, 0) + bad)
        assert refused.value.reason == "malformed_record"
    assert layouts.values(_plain(7, 0) + good)[2].value == 12.0
