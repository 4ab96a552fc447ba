"""``smtb iohw run|show-config|serve-serial``."""

from __future__ import annotations

from smtestbed.services._runtime.commands import service_group
from smtestbed.services.iohw.serve_serial import serve_serial
from smtestbed.services.iohw.service import Iohw

group = service_group(
    Iohw, "Run the manipulation I/O board (relays, DAC/ADC, UART/RS-485, I2C, SPI)."
)
group.add_command(serve_serial)
