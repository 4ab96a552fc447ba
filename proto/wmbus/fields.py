"""Link-layer field values of wireless M-Bus (EN 13757-4): C-field, M-field, A-field.

A-field layout on air (6 bytes): ID (4 bytes BCD, least significant byte first), version
(1 byte), device type (1 byte). The M-field (2 bytes, little-endian) packs three letters of
five bits each: ``(c1 - 64) << 10 | (c2 - 64) << 5 | (c3 - 64)``; bit 15 is not a letter.
"""

from __future__ import annotations

from dataclasses import dataclass

from smtestbed.services._runtime.errors import ProtocolError

# C-field values (meter -> other unless noted).
SND_NKE = 0x40  # other -> meter: link reset
SND_UD = 0x53  # other -> meter: command, expects ACK (0x73 with FCB)
SND_UD2 = 0x43  # other -> meter: command, expects RSP_UD
REQ_UD1 = 0x5A  # other -> meter: alarm request
REQ_UD2 = 0x5B  # other -> meter: data request
CNF_IR = 0x06  # other -> meter: confirms an installation request
ACK = 0x00
NACK = 0x01
SND_NR = 0x44  # spontaneous data, no reply expected
SND_IR = 0x46  # installation request, expects CNF_IR
ACC_NR = 0x47  # no data, opens a receive window
ACC_DMD = 0x48  # access demand, expects ACK
RSP_UD = 0x08  # response data

C_FIELD_NAMES: dict[int, str] = {
    SND_NKE: "SND_NKE",
    SND_UD: "SND_UD",
    0x73: "SND_UD",
    SND_UD2: "SND_UD2",
    REQ_UD1: "REQ_UD1",
    0x7A: "REQ_UD1",
    REQ_UD2: "REQ_UD2",
    0x7B: "REQ_UD2",
    CNF_IR: "CNF_IR",
    ACK: "ACK",
    NACK: "NACK",
    SND_NR: "SND_NR",
    SND_IR: "SND_IR",
    ACC_NR: "ACC_NR",
    ACC_DMD: "ACC_DMD",
    RSP_UD: "RSP_UD",
}

DEVICE_TYPE_NAMES: dict[int, str] = {
    0x00: "other",
    0x01: "oil",
    0x02: "electricity",
    0x03: "gas",
    0x04: "heat (outlet)",
    0x05: "steam",
    0x06: "warm water",
    0x07: "water",
    0x08: "heat cost allocator",
    0x09: "compressed air",
    0x0A: "cooling load (outlet)",
    0x0B: "cooling load (inlet)",
    0x0C: "heat (inlet)",
    0x0D: "heat/cooling",
    0x0E: "bus/system component",
    0x0F: "unknown",
    0x15: "hot water",
    0x16: "cold water",
    0x17: "hot/cold water",
    0x18: "pressure",
    0x19: "A/D converter",
    0x1A: "smoke detector",
    0x1B: "room sensor",
    0x1C: "gas detector",
    0x20: "breaker",
    0x21: "valve",
    0x25: "customer unit",
    0x28: "waste water",
    0x29: "garbage",
    0x31: "communication controller",
    0x32: "unidirectional repeater",
    0x33: "bidirectional repeater",
    0x36: "radio converter (system side)",
    0x37: "radio converter (meter side)",
}


def c_field_name(c_field: int) -> str:
    """Return the name of a C-field value, or ``C_0x..`` for one without a name."""
    return C_FIELD_NAMES.get(c_field, f"C_0x{c_field:02X}")


def device_type_name(device_type: int) -> str:
    """Return the medium name of a device-type byte, or ``reserved_0x..``."""
    return DEVICE_TYPE_NAMES.get(device_type, f"reserved_0x{device_type:02X}")


def manufacturer_code(value: int) -> str:
    """Unpack an M-field value into its three letters (``0x2C2D`` -> ``"KAM"``).

    Five-bit groups outside 1..26 map to the neighbouring ASCII characters (``@``, ``[``..``_``)
    so that every 15-bit value has a spelling and packs back to itself.
    """
    return "".join(chr(64 + ((value >> shift) & 0x1F)) for shift in (10, 5, 0))


def manufacturer_value(code: str) -> int:
    """Pack a three-letter manufacturer code into its M-field value (``"KAM"`` -> ``0x2C2D``).

    Raises:
        ProtocolError: the code is not three characters from ``@`` to ``_`` (A-Z in practice).
    """
    if len(code) != 3 or any(not 64 <= ord(ch) <= 95 for ch in code):
        raise ProtocolError(
            f"manufacturer code {code!r} is not three letters", reason="bad_m_field"
        )
    return (ord(code[0]) - 64) << 10 | (ord(code[1]) - 64) << 5 | (ord(code[2]) - 64)


def ident_text(ident: int) -> str:
    """Return the 8 digits of an ID as printed on the meter (the BCD nibbles as hex)."""
    return f"{ident:08x}"


def ident_value(text: str) -> int:
    """Parse 8 printed ID digits into the ID value (``"12345678"`` -> ``0x12345678``).

    Raises:
        ProtocolError: ``text`` is not 8 hexadecimal digits.
    """
    if len(text) != 8 or any(ch not in "0123456789abcdefABCDEF" for ch in text):
        raise ProtocolError(f"meter ID {text!r} is not 8 digits", reason="bad_a_field")
    return int(text, 16)


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterAddress:
    """Manufacturer and A-field of a meter, as in the link header or a long TPL header.

    Attributes:
        manufacturer: M-field value (16 bits, little-endian on the wire).
        ident: ID as a 32-bit value whose hex digits are the BCD digits (LSB first on the wire).
        version: version byte.
        device_type: device type (medium) byte.
    """

    manufacturer: int
    ident: int
    version: int
    device_type: int

    @property
    def manufacturer_code(self) -> str:
        """Three-letter manufacturer code."""
        return manufacturer_code(self.manufacturer)

    @property
    def id_text(self) -> str:
        """The 8 ID digits as printed on the meter."""
        return ident_text(self.ident)

    @property
    def device_type_name(self) -> str:
        """Name of the medium."""
        return device_type_name(self.device_type)

    def link_order(self) -> bytes:
        """Return ``M(2) ID(4) Ver Type`` as in the link header and the mode-5 IV."""
        return (
            self.manufacturer.to_bytes(2, "little")
            + self.ident.to_bytes(4, "little")
            + bytes((self.version, self.device_type))
        )

    def tpl_order(self) -> bytes:
        """Return ``ID(4) M(2) Ver Type`` as in the long TPL header (CI 0x72)."""
        return (
            self.ident.to_bytes(4, "little")
            + self.manufacturer.to_bytes(2, "little")
            + bytes((self.version, self.device_type))
        )

    @classmethod
    def from_link_order(cls, data: bytes, offset: int = 0) -> MeterAddress:
        """Read ``M(2) ID(4) Ver Type`` at ``offset`` (caller checks 8 bytes are there)."""
        return cls(
            manufacturer=data[offset] | data[offset + 1] << 8,
            ident=int.from_bytes(data[offset + 2 : offset + 6], "little"),
            version=data[offset + 6],
            device_type=data[offset + 7],
        )

    @classmethod
    def from_tpl_order(cls, data: bytes, offset: int = 0) -> MeterAddress:
        """Read ``ID(4) M(2) Ver Type`` at ``offset`` (caller checks 8 bytes are there)."""
        return cls(
            manufacturer=data[offset + 4] | data[offset + 5] << 8,
            ident=int.from_bytes(data[offset : offset + 4], "little"),
            version=data[offset + 6],
            device_type=data[offset + 7],
        )
