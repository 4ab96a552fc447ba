"""Master requests of wired M-Bus: polling, selection, reset, primary address.

- SND_NKE ``10 40 A CS 16``; REQ_UD2 ``10 5B|7B A CS 16``.
- Select by secondary address: SND_UD to 0xFD with CI 0x52 and 8 bytes
  ID(4, BCD, LSB first) manufacturer(2, LE) version(1) medium(1); in a
  pattern, ID nibbles 0xF and bytes 0xFF are wildcards.
- Application reset: SND_UD with CI 0x50, optionally one subcode byte.
- Set primary address: SND_UD with CI 0x51 and the record ``01 7A <address>``.
"""

from __future__ import annotations

from dataclasses import dataclass

from smtestbed.proto.mbus.cfield import SND_NKE, req_ud2, snd_ud
from smtestbed.proto.mbus.frames import (
    ControlFrame,
    LongFrame,
    encode_control,
    encode_long,
    encode_short,
)
from smtestbed.proto.mbus.header import SlaveInfo, decode_ident, encode_ident
from smtestbed.services._runtime.errors import ProtocolError

ADDRESS_SELECTED = 0xFD
"""Primary address that means "the slave selected by secondary address"."""
ADDRESS_BROADCAST_REPLY = 0xFE
ADDRESS_BROADCAST = 0xFF
CI_RESET = 0x50
CI_DATA_SEND = 0x51
CI_SELECT = 0x52
_SET_ADDRESS_DIB_VIF = b"\x01\x7a"


@dataclass(frozen=True, slots=True, kw_only=True)
class SecondaryAddress:
    """A secondary address or a selection pattern.

    Attributes:
        ident: 8 ID digits; in a pattern "F" digits match anything.
        manufacturer_code: 16-bit manufacturer code; 0xFF bytes are wildcards.
        version: version byte, 0xFF = any.
        medium: medium byte, 0xFF = any.
    """

    ident: str
    manufacturer_code: int = 0xFFFF
    version: int = 0xFF
    medium: int = 0xFF

    @classmethod
    def of(cls, info: SlaveInfo) -> SecondaryAddress:
        """Return the secondary address of a slave's header."""
        return cls(
            ident=info.ident,
            manufacturer_code=info.manufacturer_code,
            version=info.version,
            medium=info.medium,
        )

    @classmethod
    def parse(cls, text: str) -> SecondaryAddress:
        """Parse libmbus's 16-character form: ID digits, then M (frame order), version, medium."""
        if len(text) != 16:
            raise ValueError(f"secondary address must have 16 hex digits, got {text!r}")
        return cls.from_bytes(encode_ident(text[:8]) + bytes.fromhex(text[8:]))

    @classmethod
    def from_bytes(cls, data: bytes) -> SecondaryAddress:
        """Decode the 8 address bytes of a selection frame."""
        return cls(
            ident=decode_ident(data[0:4]),
            manufacturer_code=int.from_bytes(data[4:6], "little"),
            version=data[6],
            medium=data[7],
        )

    def to_bytes(self) -> bytes:
        """Encode the 8 address bytes of a selection frame."""
        return (
            encode_ident(self.ident)
            + self.manufacturer_code.to_bytes(2, "little")
            + bytes([self.version, self.medium])
        )

    def __str__(self) -> str:
        return self.ident + self.to_bytes()[4:].hex().upper()


def matches(address: SecondaryAddress, pattern: SecondaryAddress) -> bool:
    """Tell whether a slave's secondary address is selected by a pattern."""
    digits_match = all(
        want in ("F", "f") or want.upper() == have.upper()
        for have, want in zip(address.ident, pattern.ident, strict=True)
    )
    tail = zip(address.to_bytes()[4:], pattern.to_bytes()[4:], strict=True)
    return digits_match and all(want in (0xFF, have) for have, want in tail)


def encode_snd_nke(address: int) -> bytes:
    """Encode SND_NKE (link reset) to a primary address."""
    return encode_short(SND_NKE, address)


def encode_req_ud2(address: int, *, fcb: bool = False) -> bytes:
    """Encode REQ_UD2 (request class 2 data) with the given frame count bit."""
    return encode_short(req_ud2(fcb=fcb), address)


def encode_select(pattern: SecondaryAddress, *, fcb: bool = False) -> bytes:
    """Encode the selection frame for a secondary address or pattern."""
    return encode_long(snd_ud(fcb=fcb), ADDRESS_SELECTED, CI_SELECT, pattern.to_bytes())


def encode_application_reset(
    address: int, subcode: int | None = None, *, fcb: bool = False
) -> bytes:
    """Encode an application reset, as a control frame or with a subcode byte."""
    if subcode is None:
        return encode_control(snd_ud(fcb=fcb), address, CI_RESET)
    return encode_long(snd_ud(fcb=fcb), address, CI_RESET, bytes([subcode]))


def encode_set_primary_address(address: int, new_address: int, *, fcb: bool = False) -> bytes:
    """Encode SND_UD that gives the slave at ``address`` a new primary address."""
    if not 0 <= new_address <= 250:
        raise ValueError(f"primary address must be 0..250, got {new_address}")
    body = _SET_ADDRESS_DIB_VIF + bytes([new_address])
    return encode_long(snd_ud(fcb=fcb), address, CI_DATA_SEND, body)


def decode_select(frame: LongFrame) -> SecondaryAddress:
    """Return the pattern of a selection frame.

    Raises:
        ProtocolError: ``unsupported_ci`` or ``bad_length`` when it is no selection.
    """
    if frame.ci != CI_SELECT:
        raise ProtocolError(
            f"CI 0x{frame.ci:02X} is not a selection", reason="unsupported_ci", offset=6
        )
    if len(frame.data) != 8:
        raise ProtocolError(
            f"selection carries {len(frame.data)} bytes, not 8", reason="bad_length", offset=7
        )
    return SecondaryAddress.from_bytes(frame.data)


def decode_set_primary_address(frame: LongFrame) -> int:
    """Return the new primary address of a set-address frame (CI 0x51, ``01 7A A``).

    Raises:
        ProtocolError: ``unsupported_ci`` or ``bad_record`` when it is not one.
    """
    if frame.ci != CI_DATA_SEND:
        raise ProtocolError(
            f"CI 0x{frame.ci:02X} is not a data send", reason="unsupported_ci", offset=6
        )
    if len(frame.data) != 3 or frame.data[:2] != _SET_ADDRESS_DIB_VIF:
        raise ProtocolError("data is not the record 01 7A <address>", reason="bad_record", offset=7)
    return frame.data[2]


def decode_application_reset(frame: ControlFrame | LongFrame) -> int | None:
    """Return the subcode of an application reset (None when it has none).

    Raises:
        ProtocolError: ``unsupported_ci`` or ``bad_length`` when it is not one.
    """
    if frame.ci != CI_RESET:
        raise ProtocolError(
            f"CI 0x{frame.ci:02X} is not a reset", reason="unsupported_ci", offset=6
        )
    if isinstance(frame, ControlFrame):
        return None
    if len(frame.data) != 1:
        raise ProtocolError(
            "application reset takes at most one subcode byte", reason="bad_length", offset=8
        )
    return frame.data[0]
