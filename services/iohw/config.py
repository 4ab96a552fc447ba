"""Settings of the I/O board service (``[iohw]``).

The board's channels are wired by ``wiring``, a list of tables validated by
:mod:`smtestbed.services.iohw.wiring`; the wired buses by ``uarts``, ``i2c``
and ``spi`` (validated by :mod:`smtestbed.services.iohw.buses`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smtestbed.services._runtime.config import ServiceConfig, choice, doc


@dataclass(frozen=True, slots=True, kw_only=True)
class IohwConfig(ServiceConfig):
    """Board backend, converter ranges, wiring and buses."""

    backend: str = choice(
        "sim", "sim", "serial", help="simulated board, or a real board over a serial line"
    )
    serial_url: str = doc("", "board line for backend serial: device path or socket://HOST:PORT")
    serial_baudrate: int = doc(115200, "baud rate of the board line, bit/s")
    dac_min_v: float = doc(0.0, "DAC output range, lower end, V")
    dac_max_v: float = doc(10.0, "DAC output range, upper end, V")
    dac_bits: int = doc(12, "DAC resolution, bits")
    adc_min_v: float = doc(0.0, "ADC input range, lower end, V")
    adc_max_v: float = doc(10.0, "ADC input range, upper end, V")
    adc_bits: int = doc(12, "ADC resolution, bits")
    sensorfarm: str = doc("sensorfarm", "instance name of the sensor farm the wiring reaches")
    request_timeout_s: float = doc(3.0, "timeout of requests to the sensor farm, s")
    wiring: tuple[dict[str, Any], ...] = doc(
        (),
        "channel wiring: {kind = line|power|load|meter_output|relay, relay|dac|adc, ...}",
    )
    uarts: tuple[dict[str, Any], ...] = doc(
        (), "UART/RS-485 ports: {port, url, baudrate, parity, mode = uart|rs485, ...}"
    )
    i2c: tuple[dict[str, Any], ...] = doc(
        (), "I2C devices: {address, device = metering_ic|eeprom, meter}"
    )
    spi: tuple[dict[str, Any], ...] = doc(
        (), "SPI devices: {cs, device = metering_ic|eeprom, meter}"
    )
