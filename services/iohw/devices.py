"""I2C and SPI at transaction level: devices as register maps.

A device holds 8-bit registers with auto-increment (a read or write of n bytes
covers registers r..r+n-1). The buses:

- I2C: a device answers at its 7-bit address; a transaction to an address with
  no device is not acknowledged (NACK), reported as an error on ``address``.
- SPI: a full-duplex transfer with one chip select (1..8). The first byte is the
  command (bit 7: 1 = read, 0 = write; bits 6..0: first register), the device
  shifts out 0x00 meanwhile; each further byte is written to, or answered from,
  the next register. With no device on the chip select MISO floats high: every
  byte reads 0xFF, as on a real bus.

Devices: ``eeprom`` (256 bytes of memory, 0xFF when blank) and ``metering_ic``,
the register map of an electricity metering IC fed from a sensor farm meter
(``meter.get`` on each transaction):

====  =====  ====  ================================================================
reg   bytes  r/w   content (big-endian)
====  =====  ====  ================================================================
0x00  1      r     part id 0x5A
0x01  1      r     status: bit 0 meter running (sending), bit 1 no load (power 0)
0x02  1      r/w   configuration (kept, no effect)
0x04  4      r     active energy import, Wh (integer part of the meter's counter)
0x08  4      r     active energy export, Wh
0x0C  4      r     active power, 0.1 W, signed
0x10  2      r     voltage RMS, 0.01 V (nominal 230 V: the farm models no voltage)
0x12  4      r     current RMS, mA (power / nominal voltage)
====  =====  ====  ================================================================
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from smtestbed.services._runtime.errors import ConfigError, PeerError, RequestError

DEVICES = ("eeprom", "metering_ic")
MAX_TRANSFER = 64
CHIP_SELECTS = 8
PART_ID = 0x5A
NOMINAL_V = 230.0
MeterSource = Callable[[str], Awaitable[Any]]


class RegisterDevice(Protocol):
    """A device with 8-bit registers and auto-increment."""

    kind: str

    async def read(self, register: int, length: int) -> bytes:
        """Return ``length`` bytes from ``register`` on."""
        ...

    async def write(self, register: int, data: bytes) -> None:
        """Write ``data`` from ``register`` on."""
        ...


class Eeprom:
    """256 bytes of memory (a 24C02-like EEPROM); blank cells read 0xFF."""

    kind = "eeprom"

    def __init__(self) -> None:
        self.memory = bytearray(b"\xff" * 256)

    async def read(self, register: int, length: int) -> bytes:
        """Return ``length`` bytes from ``register`` on (wrapping at 256)."""
        return bytes(self.memory[(register + i) % 256] for i in range(length))

    async def write(self, register: int, data: bytes) -> None:
        """Write ``data`` from ``register`` on (wrapping at 256)."""
        for i, byte in enumerate(data):
            self.memory[(register + i) % 256] = byte


class MeteringIc:
    """Register map of an electricity metering IC whose values come from a farm meter."""

    kind = "metering_ic"
    writable = frozenset({0x02})

    def __init__(self, meter: str, source: MeterSource) -> None:
        self.meter = meter
        self._source = source
        self.config = 0

    async def snapshot(self) -> bytes:
        """Return the whole register map (0x00..0x15) from one ``meter.get``."""
        state = await self._source(self.meter)
        if not isinstance(state, dict) or state.get("kind") != "electricity":
            kind = state.get("kind") if isinstance(state, dict) else None
            raise PeerError(f"meter {self.meter} is {kind!r}, a metering IC needs electricity")
        values = state.get("values", {})
        energy_in = int(float(values.get("energy_import_wh", 0.0)))
        energy_out = int(float(values.get("energy_export_wh", 0.0)))
        power = float(values.get("power_w", 0.0))
        status = (0 if state.get("stopped") else 1) | (2 if power == 0 else 0)
        return struct.pack(
            ">BBBBIIiHI",
            PART_ID,
            status,
            self.config,
            0,
            energy_in & 0xFFFFFFFF,
            energy_out & 0xFFFFFFFF,
            round(power * 10),
            round(NOMINAL_V * 100),
            round(abs(power) / NOMINAL_V * 1000),
        )

    async def read(self, register: int, length: int) -> bytes:
        """Return ``length`` bytes from ``register`` on; unmapped registers read 0x00."""
        regs = await self.snapshot()
        return bytes(regs[r] if r < len(regs) else 0 for r in range(register, register + length))

    async def write(self, register: int, data: bytes) -> None:
        """Write the configuration register; the others are read-only."""
        for i in range(len(data)):
            if register + i not in self.writable:
                raise RequestError(
                    f"register 0x{register + i:02X} of the metering IC is read-only",
                    field="register",
                )
        self.config = data[-1]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceSpec:
    """One validated ``i2c`` or ``spi`` table: where, which device, which meter."""

    where: int  # I2C address or SPI chip select
    device: str
    meter: str = ""


def parse_devices(tables: Sequence[Any], bus: str) -> list[DeviceSpec]:
    """Validate the ``i2c`` (key ``address``) or ``spi`` (key ``cs``) tables.

    Raises:
        ConfigError: naming ``iohw.<bus>[i].<key>``.
    """
    key, low, high = ("address", 0x08, 0x77) if bus == "i2c" else ("cs", 1, CHIP_SELECTS)
    out: list[DeviceSpec] = []
    for i, table in enumerate(tables):
        where = f"iohw.{bus}[{i}]"
        if not isinstance(table, Mapping):
            raise ConfigError("must be a table", key=where)
        value = table.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(
                f"must be an integer {low}..{high}, got {value!r}", key=f"{where}.{key}"
            )
        if value in (d.where for d in out):
            raise ConfigError(f"{value} is used twice", key=f"{where}.{key}")
        device = table.get("device")
        if device not in DEVICES:
            raise ConfigError(f"must be one of {', '.join(DEVICES)}", key=f"{where}.device")
        meter = table.get("meter", "")
        if device == "metering_ic" and not (
            isinstance(meter, str) and meter.isdigit() and len(meter) <= 8
        ):
            raise ConfigError("a metering_ic needs an 8-digit meter id", key=f"{where}.meter")
        unknown = set(table) - {key, "device", "meter"}
        if unknown:
            raise ConfigError("unknown key", key=f"{where}.{sorted(unknown)[0]}")
        out.append(
            DeviceSpec(where=value, device=device, meter=f"{int(meter):08d}" if meter else "")
        )
    return out


def build(spec: DeviceSpec, source: MeterSource) -> RegisterDevice:
    """Return the device a spec names."""
    if spec.device == "metering_ic":
        return MeteringIc(spec.meter, source)
    return Eeprom()


def _int(p: Mapping[str, Any], key: str, low: int, high: int, default: int | None = None) -> int:
    value = p.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError(f"must be an integer {low}..{high}, got {value!r}", field=key)
    return value


def hex_bytes(p: Mapping[str, Any], key: str, *, max_len: int = MAX_TRANSFER) -> bytes:
    """Return ``p[key]`` (hex digits) as 1..max_len bytes; RequestError naming ``key``."""
    raw = p.get(key)
    try:
        data = bytes.fromhex(raw) if isinstance(raw, str) else b""
    except ValueError:
        data = b""
    if not 1 <= len(data) <= max_len:
        raise RequestError(f"must be 1..{max_len} bytes as hex digits, got {raw!r}", field=key)
    return data


class I2cBus:
    """Devices at 7-bit addresses."""

    def __init__(self, devices: Mapping[int, RegisterDevice]) -> None:
        self.devices = dict(devices)
        self.nacks = 0

    def _device(self, p: Mapping[str, Any]) -> tuple[int, RegisterDevice]:
        address = _int(p, "address", 0, 0x7F)
        device = self.devices.get(address)
        if device is None:
            self.nacks += 1
            raise RequestError(f"no device acknowledged 0x{address:02X} (NACK)", field="address")
        return address, device

    async def read(self, p: Mapping[str, Any]) -> dict[str, Any]:
        """``iohw.i2c_read`` {address, register, length}."""
        address, device = self._device(p)
        register = _int(p, "register", 0, 0xFF)
        length = _int(p, "length", 1, MAX_TRANSFER, 1)
        data = await device.read(register, length)
        return {"address": address, "register": register, "data": data.hex()}

    async def write(self, p: Mapping[str, Any]) -> dict[str, Any]:
        """``iohw.i2c_write`` {address, register, data}."""
        address, device = self._device(p)
        register = _int(p, "register", 0, 0xFF)
        data = hex_bytes(p, "data")
        await device.write(register, data)
        return {"address": address, "register": register, "written": len(data)}


class SpiBus:
    """Devices on chip selects 1..8."""

    def __init__(self, devices: Mapping[int, RegisterDevice]) -> None:
        self.devices = dict(devices)

    async def transfer(self, p: Mapping[str, Any]) -> dict[str, Any]:
        """``iohw.spi_transfer`` {cs, data}: MOSI bytes in, as many MISO bytes out."""
        cs = _int(p, "cs", 1, CHIP_SELECTS)
        mosi = hex_bytes(p, "data")
        device = self.devices.get(cs)
        if device is None:
            return {"cs": cs, "data": (b"\xff" * len(mosi)).hex()}
        command, rest = mosi[0], mosi[1:]
        register = command & 0x7F
        if command & 0x80:
            miso = b"\x00" + (await device.read(register, len(rest)) if rest else b"")
        else:
            if rest:
                await device.write(register, rest)
            miso = bytes(len(mosi))
        return {"cs": cs, "data": miso.hex()}
