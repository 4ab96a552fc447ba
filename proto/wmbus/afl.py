"""Authentication and fragmentation layer (EN 13757-7 AFL, CI 0x90).

Layout after the CI byte (multi-byte fields little-endian)::

    AFLL(1) FCL(2) [MCL(1)] [KI(2)] [MCR(4)] [MAC(n)] [ML(2)]

AFLL counts the bytes after itself. FCL bits: 0x2000 MCL present, 0x1000 ML present,
0x0800 MCR present, 0x0400 MAC present, 0x0200 KI present, 0x4000 more fragments, low byte
fragment ID. MCL bits 3..0 authentication type (5 = AES-CMAC-128 truncated to 8 bytes),
0x10 KI, 0x20 MCR, 0x40 ML. The OMS profile B AFL is ``90 0F 00 2C 25 MCR(4) MAC(8)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from smtestbed.services._runtime.errors import ProtocolError

CI_AFL = 0x90
FCL_MORE = 0x4000
FCL_MCL = 0x2000
FCL_ML = 0x1000
FCL_MCR = 0x0800
FCL_MAC = 0x0400
FCL_KI = 0x0200
MCL_KI = 0x10
MCL_MCR = 0x20
MCL_ML = 0x40
AUTH_CMAC_8 = 5
MAC_LENGTHS = {3: 2, 4: 4, 5: 8, 6: 12, 7: 16, 8: 12}


@dataclass(frozen=True, slots=True, kw_only=True)
class Afl:
    """An AFL header.

    Attributes:
        fcl: fragmentation control field.
        mcl: message control field, None when absent.
        key_info: KI, None when absent.
        counter: message counter MCR, None when absent.
        mac: the MAC as carried, None when absent.
        message_length: ML, None when absent.
    """

    fcl: int
    mcl: int | None = None
    key_info: int | None = None
    counter: int | None = None
    mac: bytes | None = None
    message_length: int | None = None

    @property
    def fragment_id(self) -> int:
        """Fragment ID (low byte of FCL)."""
        return self.fcl & 0xFF

    @property
    def more_fragments(self) -> bool:
        """True when more fragments of this message follow."""
        return bool(self.fcl & FCL_MORE)

    @property
    def auth_type(self) -> int:
        """Authentication type from MCL bits 3..0 (0 without MCL)."""
        return 0 if self.mcl is None else self.mcl & 0x0F

    def to_bytes(self) -> bytes:
        """Return CI, AFLL and the present fields."""
        body = self.fcl.to_bytes(2, "little")
        if self.mcl is not None:
            body += bytes((self.mcl,))
        if self.key_info is not None:
            body += self.key_info.to_bytes(2, "little")
        if self.counter is not None:
            body += self.counter.to_bytes(4, "little")
        if self.mac is not None:
            body += self.mac
        if self.message_length is not None:
            body += self.message_length.to_bytes(2, "little")
        return bytes((CI_AFL, len(body))) + body

    def mac_prefix(self) -> bytes:
        """Return ``MCL || MCR || [ML]``, the start of the MAC input (before the TPL CI)."""
        out = bytes((self.mcl or 0,)) + (self.counter or 0).to_bytes(4, "little")
        if self.message_length is not None:
            out += self.message_length.to_bytes(2, "little")
        return out


def _take(pos: int, end: int, size: int, what: str) -> int:
    if pos + size > end:
        raise ProtocolError(
            f"AFL {what} runs past the AFL length", reason="bad_afl_length", offset=pos
        )
    return pos + size


def _mac_length(mcl: int | None, pos: int) -> int:
    size = MAC_LENGTHS.get(0 if mcl is None else mcl & 0x0F)
    if size is None:
        raise ProtocolError("AFL carries a MAC of unknown type", reason="bad_afl", offset=pos)
    return size


def decode_afl(data: bytes, offset: int) -> tuple[Afl, int]:
    """Decode an AFL whose CI byte (0x90) is at ``offset``.

    Returns:
        The AFL and the offset of the next CI byte.

    Raises:
        ProtocolError: ``truncated`` or ``bad_afl_length`` when fields and AFLL disagree.
    """
    if offset + 4 > len(data):
        raise ProtocolError("AFL header is cut short", reason="truncated", offset=len(data))
    end = offset + 2 + data[offset + 1]
    if end > len(data):
        raise ProtocolError(
            "AFL length runs past the telegram", reason="truncated", offset=offset + 1
        )
    pos = _take(offset + 2, end, 2, "FCL")
    fcl = data[pos - 2] | data[pos - 1] << 8
    mcl = key_info = counter = mac = length = None
    if fcl & FCL_MCL:
        pos = _take(pos, end, 1, "MCL")
        mcl = data[pos - 1]
    if fcl & FCL_KI:
        pos = _take(pos, end, 2, "KI")
        key_info = data[pos - 2] | data[pos - 1] << 8
    if fcl & FCL_MCR:
        pos = _take(pos, end, 4, "MCR")
        counter = int.from_bytes(data[pos - 4 : pos], "little")
    if fcl & FCL_MAC:
        size = _mac_length(mcl, pos)
        pos = _take(pos, end, size, "MAC")
        mac = bytes(data[pos - size : pos])
    if fcl & FCL_ML:
        pos = _take(pos, end, 2, "ML")
        length = data[pos - 2] | data[pos - 1] << 8
    if pos != end:
        raise ProtocolError("AFL length leaves unused bytes", reason="bad_afl_length", offset=pos)
    afl = Afl(fcl=fcl, mcl=mcl, key_info=key_info, counter=counter, mac=mac, message_length=length)
    return afl, end
