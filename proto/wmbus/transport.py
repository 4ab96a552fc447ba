"""Wireless M-Bus transport layer (EN 13757-7, OMS Vol. 2): TPL headers and the config field.

TPL headers after the CI byte (multi-byte fields little-endian)::

    CI 0x72 long:   ID(4) M(2) Ver(1) Type(1) ACC(1) STS(1) CFG(2) [CFG-ext(1) in mode 7]
    CI 0x7A short:  ACC(1) STS(1) CFG(2) [CFG-ext(1) in mode 7]
    CI 0x78 none:   -

Configuration field (16-bit word): bit 15 bidirectional, 14 accessibility, 13 synchronous,
12..8 security mode; in modes 5 and 7 bits 7..4 are the number of encrypted 16-byte blocks,
bits 3..2 the content type, bit 1 repeated access, bit 0 hop counter. The mode-7 CFG-ext
byte holds the KDF selection (bits 5..4) and the key ID (bits 3..0).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from smtestbed.proto.wmbus.fields import MeterAddress
from smtestbed.services._runtime.errors import ProtocolError

CI_TPL_LONG = 0x72
CI_TPL_SHORT = 0x7A
CI_TPL_NONE = 0x78
CI_COMPACT_LONG = 0x73
CI_COMPACT_SHORT = 0x7B
CI_COMPACT_NONE = 0x79
CI_ERROR = 0x70
CI_ALARM = 0x71
CI_SML_SHORT = 0x7E
CI_SML_LONG = 0x7F
CI_TPL_ONLY_SHORT = 0x8A
CI_TPL_ONLY_LONG = 0x8B

LONG_CIS = frozenset({CI_TPL_LONG, CI_COMPACT_LONG, CI_SML_LONG, CI_TPL_ONLY_LONG})
SHORT_CIS = frozenset({CI_TPL_SHORT, CI_COMPACT_SHORT, CI_SML_SHORT, CI_TPL_ONLY_SHORT})
NO_HEADER_CIS = frozenset({CI_TPL_NONE, CI_COMPACT_NONE, CI_ERROR, CI_ALARM})
MANUFACTURER_CIS = range(0xA0, 0xB8)

MODE_NONE = 0
MODE_AES_CBC_IV = 5
MODE_AES_CBC_KDF = 7


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigField:
    """The TPL configuration field and, in mode 7, its extension byte.

    Attributes:
        word: the 16-bit configuration word (little-endian on the wire).
        ext: the CFG-ext byte (mode 7 only), else None.
    """

    word: int
    ext: int | None = None

    @property
    def security_mode(self) -> int:
        """Security mode M (0 none, 5 AES-CBC with IV, 7 AES-CBC with derived keys, ...)."""
        return (self.word >> 8) & 0x1F

    @property
    def encrypted_blocks(self) -> int:
        """Number N of encrypted 16-byte blocks (modes 5 and 7; else 0)."""
        if self.security_mode in (MODE_AES_CBC_IV, MODE_AES_CBC_KDF):
            return (self.word >> 4) & 0x0F
        return 0

    @property
    def bidirectional(self) -> bool:
        """Bit B: the meter can receive."""
        return bool(self.word & 0x8000)

    @property
    def accessible(self) -> bool:
        """Bit A: the meter opens a receive window after this telegram."""
        return bool(self.word & 0x4000)

    @property
    def synchronous(self) -> bool:
        """Bit S: the telegram is sent at a synchronous (predictable) time."""
        return bool(self.word & 0x2000)

    @property
    def content(self) -> int:
        """Content type bits 3..2 (0 = normal data) in modes 5 and 7."""
        return (self.word >> 2) & 0x03

    @property
    def repeated_access(self) -> bool:
        """Bit RA: repeated access."""
        return bool(self.word & 0x0002)

    @property
    def hop_count(self) -> int:
        """Hop counter bit: 1 when a repeater has forwarded the telegram."""
        return self.word & 0x0001

    @property
    def kdf_selection(self) -> int:
        """KDF selection of the CFG-ext byte (1 = OMS KDF), 0 without extension."""
        return 0 if self.ext is None else (self.ext >> 4) & 0x03

    @property
    def key_id(self) -> int:
        """Key ID of the CFG-ext byte, 0 without extension."""
        return 0 if self.ext is None else self.ext & 0x0F

    def to_bytes(self) -> bytes:
        """Return CFG (2 bytes, little-endian) and CFG-ext if present."""
        head = self.word.to_bytes(2, "little")
        return head if self.ext is None else head + bytes((self.ext,))

    def with_blocks(self, blocks: int) -> ConfigField:
        """Return a copy whose encrypted-block count is ``blocks`` (0..15)."""
        return ConfigField(word=(self.word & ~0x00F0) | (blocks & 0x0F) << 4, ext=self.ext)


def make_config(
    *,
    security_mode: int,
    encrypted_blocks: int = 0,
    bidirectional: bool = False,
    accessible: bool = False,
    synchronous: bool = False,
    hop_count: int = 0,
    kdf_selection: int = 1,
    key_id: int = 0,
) -> ConfigField:
    """Build a configuration field from its parts (CFG-ext added for mode 7)."""
    word = (
        bidirectional << 15
        | accessible << 14
        | synchronous << 13
        | (security_mode & 0x1F) << 8
        | (encrypted_blocks & 0x0F) << 4
        | (hop_count & 1)
    )
    ext = (kdf_selection & 0x03) << 4 | (key_id & 0x0F) if security_mode == 7 else None
    return ConfigField(word=word, ext=ext)


@dataclass(frozen=True, slots=True, kw_only=True)
class TplHeader:
    """Transport-layer header after a TPL CI byte.

    Attributes:
        ci: the CI byte (0x72, 0x7A, 0x78, ... or a manufacturer-specific 0xA0-0xB7).
        address: ID, manufacturer, version, type of a long header, else None.
        access_number: ACC, None without a header.
        status: STS, None without a header.
        config: configuration field, None without a header.
    """

    ci: int
    address: MeterAddress | None = None
    access_number: int | None = None
    status: int | None = None
    config: ConfigField | None = None

    @property
    def security_mode(self) -> int:
        """Security mode from the configuration field (0 without a header)."""
        return 0 if self.config is None else self.config.security_mode

    def to_bytes(self) -> bytes:
        """Return the CI byte and the header fields."""
        out = bytes((self.ci,))
        if self.address is not None:
            out += self.address.tpl_order()
        if self.config is not None:
            out += bytes((self.access_number or 0, self.status or 0)) + self.config.to_bytes()
        return out


_set_ci = TplHeader.__dict__["ci"].__set__
_set_address = TplHeader.__dict__["address"].__set__
_set_access_number = TplHeader.__dict__["access_number"].__set__
_set_status = TplHeader.__dict__["status"].__set__
_set_config = TplHeader.__dict__["config"].__set__


def _tpl_header(
    ci: int, address: MeterAddress | None, acc: int, sts: int, config: ConfigField
) -> TplHeader:
    # Fills the slots directly: a frozen dataclass __init__ goes through object.__setattr__
    # per field, three times slower, and this runs once per received telegram.
    header = object.__new__(TplHeader)
    _set_ci(header, ci)
    _set_address(header, address)
    _set_access_number(header, acc)
    _set_status(header, sts)
    _set_config(header, config)
    return header


@lru_cache(maxsize=1024)
def config_field(word: int, ext: int | None) -> ConfigField:
    """Return the (shared, immutable) configuration field of ``word`` and ``ext``."""
    return ConfigField(word=word, ext=ext)


def _need(data: bytes, offset: int, size: int, what: str) -> None:
    if offset + size > len(data):
        raise ProtocolError(
            f"{what} needs {size} bytes, {max(0, len(data) - offset)} left",
            reason="truncated",
            offset=len(data),
        )


def _decode_short(data: bytes, offset: int) -> tuple[int, int, ConfigField, int]:
    if offset + 5 > len(data):
        _need(data, offset, 4, "short TPL header")
    word = data[offset + 2] | data[offset + 3] << 8
    if (word >> 8) & 0x1F != MODE_AES_CBC_KDF:
        return data[offset], data[offset + 1], config_field(word, None), offset + 4
    _need(data, offset, 5, "TPL CFG-ext of mode 7")
    return data[offset], data[offset + 1], config_field(word, data[offset + 4]), offset + 5


def decode_tpl(data: bytes, offset: int) -> tuple[TplHeader, int]:
    """Decode the TPL CI byte and header at ``offset``.

    Returns:
        The header and the offset of the first byte after it (the APL, maybe encrypted).

    Raises:
        ProtocolError: ``unknown_ci`` for a CI that is not a TPL, ``truncated`` headers.
    """
    _need(data, offset, 1, "TPL CI field")
    ci = data[offset]
    pos = offset + 1
    if ci in SHORT_CIS:
        acc, sts, config, pos = _decode_short(data, pos)
        return _tpl_header(ci, None, acc, sts, config), pos
    if ci in NO_HEADER_CIS or ci in MANUFACTURER_CIS:
        return TplHeader(ci=ci), pos
    if ci not in LONG_CIS:
        raise ProtocolError(
            f"CI 0x{ci:02X} is not a transport layer", reason="unknown_ci", offset=offset
        )
    _need(data, pos, 8, "long TPL header")
    address = MeterAddress.from_tpl_order(data, pos)
    acc, sts, config, pos = _decode_short(data, pos + 8)
    return _tpl_header(ci, address, acc, sts, config), pos
