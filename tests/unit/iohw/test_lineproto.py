"""The board's line protocol as the simulated board answers it."""

from __future__ import annotations

import pytest
from smtestbed.services.iohw.board import SimBoard
from smtestbed.services.iohw.lineproto import answer


def test_relay_commands_switch_and_report_the_relay() -> None:
    """RELAY 3 CLOSE -> OK; RELAY 3? -> CLOSED; RELAYS? shows bit 2."""
    board = SimBoard()
    assert answer(board, "RELAY 3 CLOSE") == "OK"
    assert answer(board, "relay 3?") == "RELAY 3 CLOSED"
    assert answer(board, "RELAYS?") == "RELAYS 0x0004"
    assert answer(board, "RELAY 3 OPEN") == "OK"
    assert board.relay(3) is False


def test_dac_and_adc_answer_quantised_volts() -> None:
    """DAC 1 2.5 -> OK, DAC 1? the 12-bit output; ADC 2? its input's code."""
    board = SimBoard()
    board.drive_input(2, 2.5)
    assert answer(board, "DAC 1 2.5") == "OK"
    assert answer(board, "DAC 1?") == f"DAC 1 {1024 * 10 / 4095:.6f}"
    assert answer(board, "ADC 2?") == f"ADC 2 {1024 * 10 / 4095:.6f}"
    assert answer(board, "ID?") == "ID smtestbed-sim 16 4 4"


@pytest.mark.parametrize(
    "line",
    ["RELAY 17 OPEN", "RELAY 1 AJAR", "DAC 1 11", "DAC 1 nan", "ADC 5?", "ADC x?", "FAN 1 ON", ""],
)
def test_bad_requests_get_err_and_change_nothing(line: str) -> None:
    """Every bad line is answered ERR <reason>; relays and DACs keep their state."""
    board = SimBoard()
    reply = answer(board, line)
    assert reply.startswith("ERR ")
    assert board.dio_mask() == 0
    assert board.dac_volts(1) == 0.0
