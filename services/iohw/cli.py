"""``smtb iohw run|show-config``."""

from __future__ import annotations

from smtestbed.services._runtime.commands import service_group
from smtestbed.services.iohw.service import Iohw

group = service_group(
    Iohw, "Run the manipulation I/O board (relays, DAC/ADC, UART/RS-485, I2C, SPI)."
)
