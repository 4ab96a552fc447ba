"""What a simulated meter is: kinds, value columns, radio modes, interfaces.

Every meter holds ``N_VALUES`` float64 values; which quantity each column
means depends on the meter's kind (``VALUE_COLUMNS``). Units are the ones in
the column names: Wh, m^3, W, m^3/h, °C.
"""

from __future__ import annotations

from enum import IntEnum

from smtestbed.proto.radio import DUTY_CYCLE, FREQUENCY_HZ, RadioMode

__all__ = [
    "COUNTER_COLUMNS",
    "DEVICE_TYPE",
    "DUTY_CYCLE",
    "FREQUENCY_HZ",
    "N_VALUES",
    "VALUE_COLUMNS",
    "Interface",
    "MeterKind",
    "RadioMode",
]


class MeterKind(IntEnum):
    """The medium a meter measures."""

    ELECTRICITY = 0
    GAS = 1
    WATER = 2
    HEAT = 3


class Interface(IntEnum):
    """How a meter is attached to the gateway's LMN."""

    WIRELESS = 0
    WIRED_MBUS = 1
    UART = 2
    RS485 = 3
    I2C = 4
    SPI = 5


N_VALUES = 5

# EN 13757-3 device type (medium) byte of each kind
DEVICE_TYPE: dict[MeterKind, int] = {
    MeterKind.ELECTRICITY: 0x02,
    MeterKind.GAS: 0x03,
    MeterKind.WATER: 0x07,
    MeterKind.HEAT: 0x04,
}

# column index -> quantity name with its unit; "" = unused column
VALUE_COLUMNS: dict[MeterKind, tuple[str, ...]] = {
    MeterKind.ELECTRICITY: ("energy_import_wh", "energy_export_wh", "power_w", "", ""),
    MeterKind.GAS: ("volume_m3", "", "", "", ""),
    MeterKind.WATER: ("volume_m3", "flow_m3h", "", "", ""),
    MeterKind.HEAT: (
        "energy_wh",
        "volume_m3",
        "flow_m3h",
        "flow_temperature_c",
        "return_temperature_c",
    ),
}

# which columns are counters (never go backwards unless told to)
COUNTER_COLUMNS: dict[MeterKind, tuple[int, ...]] = {
    MeterKind.ELECTRICITY: (0, 1),
    MeterKind.GAS: (0,),
    MeterKind.WATER: (0,),
    MeterKind.HEAT: (0, 1),
}
