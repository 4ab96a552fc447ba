"""Extended link layer (EN 13757-4 ELL, CI 0x8C-0x8F).

Layouts after the CI byte::

    0x8C  CC ACC                                  2 bytes
    0x8D  CC ACC SN(4) PayloadCRC(2)              8 bytes
    0x8E  CC ACC M2(2) A2(6)                      10 bytes (receiver address)
    0x8F  CC ACC M2(2) A2(6) SN(4) PayloadCRC(2)  16 bytes

SN (session number, 32 bits little-endian): bits 31..29 encryption (1 = AES-128-CTR), bits
28..4 time, bits 3..0 session. With SN present the payload CRC (2 bytes, little-endian) is
the EN 13757-4 CRC of every byte after it; when encrypted, AES-CTR starts at that CRC.
"""

from __future__ import annotations

from dataclasses import dataclass

from smtestbed.proto.wmbus.fields import MeterAddress
from smtestbed.services._runtime.errors import ProtocolError

CI_ELL_SHORT = 0x8C
CI_ELL_SESSION = 0x8D
CI_ELL_RECEIVER = 0x8E
CI_ELL_FULL = 0x8F
ELL_CIS = frozenset({CI_ELL_SHORT, CI_ELL_SESSION, CI_ELL_RECEIVER, CI_ELL_FULL})
ELL_ENCRYPTION_AES_CTR = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Ell:
    """An extended link layer header.

    Attributes:
        ci: 0x8C, 0x8D, 0x8E or 0x8F.
        cc: communication control byte (B D S H P A R bits).
        access_number: ACC.
        receiver: M2 and A2 of the receiver (0x8E, 0x8F), else None.
        session_number: SN (0x8D, 0x8F), else None.
        payload_crc: PayloadCRC as carried (plaintext value), else None.
    """

    ci: int
    cc: int
    access_number: int
    receiver: MeterAddress | None = None
    session_number: int | None = None
    payload_crc: int | None = None

    @property
    def encryption(self) -> int:
        """ELL encryption method from SN bits 31..29 (0 none, 1 AES-128-CTR)."""
        return 0 if self.session_number is None else self.session_number >> 29

    def header_bytes(self) -> bytes:
        """Return CI, CC, ACC, receiver address and SN (everything before PayloadCRC)."""
        out = bytes((self.ci, self.cc, self.access_number))
        if self.receiver is not None:
            out += self.receiver.link_order()
        if self.session_number is not None:
            out += self.session_number.to_bytes(4, "little")
        return out


def _size(ci: int) -> int:
    return {CI_ELL_SHORT: 2, CI_ELL_SESSION: 8, CI_ELL_RECEIVER: 10, CI_ELL_FULL: 16}[ci]


def decode_ell(data: bytes, offset: int) -> tuple[Ell, int]:
    """Decode an ELL header whose CI byte is at ``offset``.

    Returns:
        The header and the offset after it (after the PayloadCRC when present).

    Raises:
        ProtocolError: ``truncated`` when the header does not fit.
    """
    ci = data[offset]
    pos = offset + 1
    if pos + _size(ci) > len(data):
        raise ProtocolError(
            f"ELL CI 0x{ci:02X} header is cut short", reason="truncated", offset=len(data)
        )
    receiver = sn = crc = None
    cc, acc = data[pos], data[pos + 1]
    pos += 2
    if ci in (CI_ELL_RECEIVER, CI_ELL_FULL):
        receiver = MeterAddress.from_link_order(data, pos)
        pos += 8
    if ci in (CI_ELL_SESSION, CI_ELL_FULL):
        sn = int.from_bytes(data[pos : pos + 4], "little")
        crc = data[pos + 4] | data[pos + 5] << 8
        pos += 6
    ell = Ell(
        ci=ci, cc=cc, access_number=acc, receiver=receiver, session_number=sn, payload_crc=crc
    )
    return ell, pos
