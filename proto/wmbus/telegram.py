"""Whole wireless M-Bus / OMS telegrams: decode and encode through every layer.

Field order of a telegram (CRC-less form; the link layer adds block CRCs on air)::

    L C M(2) A(6) | [ELL: 8C..8F ...] | [AFL: 90 ...] | TPL CI + header | APL (maybe encrypted)

With an ELL session number the ELL payload CRC covers everything after it and AES-CTR (when
selected) starts at that CRC. Mode 5/7 encrypt N x 16 bytes of APL right after the TPL header.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

from smtestbed.proto.records import DataBlock, decode_records
from smtestbed.proto.wmbus.afl import CI_AFL, Afl, decode_afl
from smtestbed.proto.wmbus.crc import crc16
from smtestbed.proto.wmbus.ell import ELL_CIS, ELL_ENCRYPTION_AES_CTR, Ell, decode_ell
from smtestbed.proto.wmbus.errors import WrongKeyError
from smtestbed.proto.wmbus.fields import MeterAddress
from smtestbed.proto.wmbus.link import (
    HEADER_SIZE,
    FrameFormat,
    LinkHeader,
    decode_link_header,
    strip_crcs,
    strip_crcs_b,
)
from smtestbed.proto.wmbus.security import (
    ACC_IV_HALVES,
    CHECK_BYTES,
    DC_ENC_FROM_METER,
    DC_MAC_FROM_METER,
    decrypt_mode5_iv,
    decrypt_mode7,
    derive_key,
    ell_ctr,
    verify_afl_mac,
)
from smtestbed.proto.wmbus.transport import (
    LONG_CIS,
    MODE_AES_CBC_IV,
    MODE_AES_CBC_KDF,
    TplHeader,
    decode_tpl,
)
from smtestbed.services._runtime.errors import ProtocolError

RECORD_CIS = frozenset({0x72, 0x7A, 0x78})  # APL made of DIF/VIF data records


@dataclass(frozen=True, slots=True, kw_only=True)
class Security:
    """How the payload was protected and what the decoder could do about it.

    Attributes:
        mode: TPL security mode (0, 5, 7, ...).
        encrypted: the headers declare encrypted content (TPL blocks or ELL AES-CTR).
        decrypted: the decoder decrypted it with the given key.
        plain_on_air: declared encrypted but carried in plaintext (2F 2F or ELL CRC shows it).
        mac_verified: the AFL MAC was checked and matched.
    """

    mode: int = 0
    encrypted: bool = False
    decrypted: bool = False
    plain_on_air: bool = False
    mac_verified: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Telegram:
    """A decoded (or to-be-encoded) telegram.

    Attributes:
        link: the link header.
        frame_format: format of the CRC'd frame decoded, None for CRC-less input.
        ell: extended link layer, if present.
        afl: authentication and fragmentation layer, if present.
        tpl: transport header, None when an ELL-encrypted part could not be opened.
        payload: the bytes after the last decoded header exactly as carried (ciphertext when
            encrypted; after the ELL header when ``tpl`` is None).
        application_data: plaintext APL (encrypted blocks decrypted, 2F 2F included), None
            when encrypted and no key was given.
        records: the data records of the APL (CI 0x72/0x7A/0x78), None otherwise.
        security: protection summary.
    """

    link: LinkHeader
    frame_format: FrameFormat | None = None
    ell: Ell | None = None
    afl: Afl | None = None
    tpl: TplHeader | None = None
    payload: bytes = b""
    application_data: bytes | None = None
    records: DataBlock | None = None
    security: Security = Security()

    @property
    def address(self) -> MeterAddress:
        """The meter's address: the long TPL header's if present, else the link layer's."""
        if self.tpl is not None and self.tpl.address is not None:
            return self.tpl.address
        return self.link.address


_set_link = Telegram.__dict__["link"].__set__
_set_frame_format = Telegram.__dict__["frame_format"].__set__
_set_ell = Telegram.__dict__["ell"].__set__
_set_afl = Telegram.__dict__["afl"].__set__
_set_tpl = Telegram.__dict__["tpl"].__set__
_set_payload = Telegram.__dict__["payload"].__set__
_set_application_data = Telegram.__dict__["application_data"].__set__
_set_records = Telegram.__dict__["records"].__set__
_set_security = Telegram.__dict__["security"].__set__


def _telegram(
    link: LinkHeader,
    frame_format: FrameFormat | None,
    ell: Ell | None,
    afl: Afl | None,
    tpl: TplHeader,
    payload: bytes,
    plain: bytes | None,
    records: DataBlock | None,
    security: Security,
) -> Telegram:
    # Fills the slots directly: the frozen dataclass __init__ sets each of the nine fields
    # through object.__setattr__, about 1 us per received telegram more.
    telegram = object.__new__(Telegram)
    _set_link(telegram, link)
    _set_frame_format(telegram, frame_format)
    _set_ell(telegram, ell)
    _set_afl(telegram, afl)
    _set_tpl(telegram, tpl)
    _set_payload(telegram, payload)
    _set_application_data(telegram, plain)
    _set_records(telegram, records)
    _set_security(telegram, security)
    return telegram


@lru_cache(maxsize=64)
def _security(
    mode: int, encrypted: bool, decrypted: bool = False, plain_on_air: bool = False
) -> Security:
    """Return the shared summary of a TPL security outcome without MAC (immutable)."""
    return Security(mode=mode, encrypted=encrypted, decrypted=decrypted, plain_on_air=plain_on_air)


def _unframe(data: bytes, crcs: bool | None) -> tuple[bytes, FrameFormat | None]:
    """Return the CRC-less telegram and the frame format it came in."""
    if crcs is None:
        crcs = not (data and data[0] == len(data) - 1) or _is_format_b(data)
    if not crcs:
        return data, None
    return strip_crcs(data)


def _is_format_b(data: bytes) -> bool:
    try:
        strip_crcs_b(data)
    except ProtocolError:
        return False
    return True


def _open_ell(
    data: bytes, ell: Ell, pos: int, link: LinkHeader, key: bytes | None
) -> tuple[Ell, bytes | None, bool]:
    """Check or decrypt the part after an ELL session number (``pos`` is just after its CRC).

    Returns:
        The ELL (payload CRC as found, None while closed), the telegram with that part in
        plaintext (None when it stays closed) and whether it was decrypted.
    """
    if crc16(memoryview(data)[pos:]) == ell.payload_crc:
        return ell, data, False
    if ell.encryption != ELL_ENCRYPTION_AES_CTR:
        raise ProtocolError("ELL payload CRC does not match", reason="bad_crc", offset=pos - 2)
    if key is None:
        return replace(ell, payload_crc=None), None, False
    sn = ell.session_number or 0
    opened = ell_ctr(key, link.address, ell.cc, sn, data[pos - 2 :])
    crc = opened[0] | opened[1] << 8
    if crc16(memoryview(opened)[2:]) != crc:
        raise WrongKeyError("ELL payload CRC fails after AES-CTR: wrong key", offset=pos - 2)
    return replace(ell, payload_crc=crc), data[: pos - 2] + opened, True


def _tpl_plain(
    tpl: TplHeader,
    body: bytes,
    ci_pos: int,
    payload: bytes,
    key: bytes | None,
    afl: Afl | None,
    link: LinkHeader,
) -> tuple[bytes | None, Security]:
    """Return the plaintext APL (None when it stays encrypted) and the security summary.

    ``body`` is the telegram with the TPL CI at ``ci_pos``; ``payload`` all bytes after the
    TPL header.
    """
    config = tpl.config
    if config is None:
        return payload, _security(0, False)
    word = config.word
    mode = (word >> 8) & 0x1F  # CFG bits 12..8; N (bits 7..4) counts in modes 5 and 7 only
    blocks = (word >> 4) & 0x0F
    if mode == 0 or (mode in (MODE_AES_CBC_IV, MODE_AES_CBC_KDF) and blocks == 0):
        return payload, _security(mode, False)
    if mode not in (MODE_AES_CBC_IV, MODE_AES_CBC_KDF):
        return None, _security(mode, True)
    if key is None:
        if payload[:2] == CHECK_BYTES:
            return payload, _security(mode, True, plain_on_air=True)
        return None, _security(mode, True)
    if mode == MODE_AES_CBC_IV:
        iv = _mode5_iv(body, ci_pos) + ACC_IV_HALVES[tpl.access_number or 0]
        return decrypt_mode5_iv(key, iv, payload, blocks), _security(mode, True, True)
    meter = tpl.address if tpl.address is not None else link.address
    return _mode7_plain(key, meter, afl, payload, blocks, body[ci_pos:])


def _mode5_iv(body: bytes, ci_pos: int) -> bytes:
    """Return ``M(2) ID(4) Ver Type`` of the meter from the frame bytes.

    The long TPL header's address (``ID(4) M(2) Ver Type`` after its CI) if there is one,
    else the link header's (``M(2) A(6)`` at offset 2).
    """
    if body[ci_pos] not in LONG_CIS:
        return body[2:HEADER_SIZE]
    start = ci_pos + 1
    return body[start + 4 : start + 6] + body[start : start + 4] + body[start + 6 : start + 8]


def _mode7_plain(
    key: bytes, meter: MeterAddress, afl: Afl | None, payload: bytes, blocks: int, message: bytes
) -> tuple[bytes, Security]:
    if afl is None or afl.counter is None:
        raise ProtocolError("mode 7 needs the AFL message counter", reason="no_counter")
    kenc = derive_key(key, constant=DC_ENC_FROM_METER, counter=afl.counter, ident=meter.ident)
    checked = afl.mac is not None
    if afl.mac is not None:
        kmac = derive_key(key, constant=DC_MAC_FROM_METER, counter=afl.counter, ident=meter.ident)
        verify_afl_mac(kmac, afl.mac_prefix(), message, afl.mac)
    plain = decrypt_mode7(kenc, payload, blocks, authenticated=checked)
    return plain, Security(mode=7, encrypted=True, decrypted=True, mac_verified=checked)


def _records(tpl: TplHeader, plain: bytes | None) -> DataBlock | None:
    if plain is None or tpl.ci not in RECORD_CIS:
        return None
    return decode_records(plain)


def decode_telegram(
    data: bytes, *, key: bytes | None = None, crcs: bool | None = None, records: bool = True
) -> Telegram:
    """Decode a telegram through link, ELL, AFL, TPL, security and (optionally) records.

    Args:
        data: the frame: with link-layer CRCs (format A or B) or without (as dongles give).
        key: the meter's AES-128 key (mode 5 key, mode 7 master key, ELL key), if known.
        crcs: True for a frame with CRCs, False without, None to tell from L and the CRCs.
        records: decode the APL data records (off for header-only work).

    Raises:
        ProtocolError: bytes that do not follow the format; its subclasses in
            :mod:`smtestbed.proto.wmbus.errors` for failed keys, MACs and 2F 2F checks.
    """
    data = bytes(data)
    plain_frame, frame_format = _unframe(data, crcs)
    link = decode_link_header(plain_frame)
    body, pos, ell, ell_plain = _after_ell(plain_frame, link, key)
    if body is None:
        return Telegram(
            link=link,
            frame_format=frame_format,
            ell=ell,
            payload=plain_frame[pos:],
            security=Security(encrypted=True),
        )
    afl = None
    if pos < len(body) and body[pos] == CI_AFL:
        afl, pos = decode_afl(body, pos)
    tpl, start = decode_tpl(body, pos)
    payload = body[start:]
    plain, security = _tpl_plain(tpl, body, pos, payload, key, afl, link)
    if ell_plain[0] or ell_plain[1]:
        security = Security(
            mode=security.mode,
            encrypted=True,
            decrypted=security.decrypted or ell_plain[0],
            plain_on_air=security.plain_on_air or ell_plain[1],
            mac_verified=security.mac_verified,
        )
    block = _records(tpl, plain) if records else None
    return _telegram(link, frame_format, ell, afl, tpl, payload, plain, block, security)


def _after_ell(
    data: bytes, link: LinkHeader, key: bytes | None
) -> tuple[bytes | None, int, Ell | None, tuple[bool, bool]]:
    """Return the telegram to go on with (ELL part opened), the next CI offset, the ELL, flags.

    The flags say (decrypted by ELL AES-CTR, declared ELL-encrypted but carried plain). The
    telegram is None when an ELL-encrypted part stays closed; the offset then points at the
    encrypted payload CRC.
    """
    pos = HEADER_SIZE
    if pos >= len(data):
        raise ProtocolError("telegram ends after the link header", reason="truncated", offset=pos)
    if data[pos] not in ELL_CIS:
        return data, pos, None, (False, False)
    ell, pos = decode_ell(data, pos)
    if ell.session_number is None:
        return data, pos, ell, (False, False)
    ell, opened, decrypted = _open_ell(data, ell, pos, link, key)
    if opened is None:
        return None, pos - 2, ell, (False, False)
    plain = ell.encryption == ELL_ENCRYPTION_AES_CTR and not decrypted
    return opened, pos, ell, (decrypted, plain)
