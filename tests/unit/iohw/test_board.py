"""The simulated board: converter quantisation, relays, DAC and ADC channels."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from smtestbed.services._runtime.errors import ConfigError, RequestError
from smtestbed.services.iohw.board import Converter, SimBoard


def reference_code(conv: Converter, volts: float) -> int:
    """Nearest code by search over every code (slow and obvious)."""
    return min(range(conv.top + 1), key=lambda k: (abs(conv.volts(k) - volts), k))


def test_a_12_bit_converter_over_0_to_10_v_has_4096_codes_of_2_44_mv() -> None:
    """Top code 4095, one LSB 10/4095 V; the ends map to codes 0 and 4095."""
    conv = Converter(min_v=0.0, max_v=10.0, bits=12)
    assert conv.top == 4095
    assert conv.lsb_v == pytest.approx(0.002442002442)
    assert (conv.code(0.0), conv.code(10.0)) == (0, 4095)
    assert conv.volts(4095) == pytest.approx(10.0)


@given(st.floats(min_value=-1.0, max_value=3.0, allow_nan=False))
def test_quantisation_picks_the_nearest_code_clipped_to_the_range(volts: float) -> None:
    """code() agrees with a search over all codes of a 6-bit converter over -1..2 V."""
    conv = Converter(min_v=-1.0, max_v=2.0, bits=6)
    expected = reference_code(conv, volts)
    got = conv.code(volts)
    # exactly halfway between two codes either neighbour is nearest
    assert abs(conv.volts(got) - volts) == pytest.approx(abs(conv.volts(expected) - volts))
    assert abs(conv.quantise(volts) - min(2.0, max(-1.0, volts))) <= conv.lsb_v / 2 + 1e-12


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"min_v": 5.0, "max_v": 5.0}, "range"), ({"bits": 0}, "bits"), ({"bits": 25}, "bits")],
)
def test_a_converter_with_an_empty_range_or_bad_resolution_is_refused(
    kwargs: dict[str, float], key: str
) -> None:
    """ConfigError naming range or bits."""
    with pytest.raises(ConfigError) as info:
        Converter(**kwargs)  # type: ignore[arg-type]
    assert info.value.key == key


def test_relays_start_in_their_configured_position_and_report_the_old_one() -> None:
    """Relay 3 configured closed; switching returns the previous position; the mask follows."""
    board = SimBoard(relays={3: True})
    assert board.relays()[:4] == [False, False, True, False]
    assert board.dio_mask() == 0b100
    assert board.set_relay(3, False) is True
    assert board.set_relay(16, True) is False
    assert board.dio_mask() == 1 << 15


def test_dac_outputs_the_nearest_code_and_refuses_volts_outside_its_range() -> None:
    """1.0 V on a 12-bit 0..10 V DAC comes out as code 410 = 1.001 V; 10.5 V changes nothing."""
    board = SimBoard()
    out = board.set_dac(2, 1.0)
    assert out == pytest.approx(410 * 10.0 / 4095)
    with pytest.raises(RequestError) as info:
        board.set_dac(2, 10.5)
    assert info.value.field == "volts"
    assert board.dac_volts(2) == out


def test_adc_reads_its_input_quantised_and_saturates_at_the_range_ends() -> None:
    """2.5 V reads as code 1024; 12 V reads 10 V; -1 V reads 0 V."""
    board = SimBoard()
    board.drive_input(1, 2.5)
    assert board.read_adc(1) == pytest.approx(1024 * 10.0 / 4095)
    board.drive_input(1, 12.0)
    assert board.read_adc(1) == 10.0
    board.drive_input(1, -1.0)
    assert board.read_adc(1) == 0.0


@pytest.mark.parametrize("channel", [0, 5, True, "1", 1.0])
def test_a_channel_outside_1_to_4_is_refused_naming_channel(channel: object) -> None:
    """Channels count 1..4; anything else is a RequestError on 'channel'."""
    with pytest.raises(RequestError) as info:
        SimBoard().read_adc(channel)  # type: ignore[arg-type]
    assert info.value.field == "channel"
