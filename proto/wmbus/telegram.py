"""Whole wireless M-Bus / OMS telegrams: decode and encode through every layer.

Field order of a telegram (CRC-less form; the link layer adds block CRCs on air)::

    L C M(2) A(6) | [ELL: 8C..8F ...] | [AFL: 90 ...] | TPL CI + header | APL (maybe encrypted)

With an ELL session number the ELL payload CRC covers everything after it and AES-CTR (when
selected) starts at that CRC. Mode 5/7 encrypt N x 16 bytes of APL right after the TPL header.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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
    CHECK_BYTES,
    DC_ENC_FROM_METER,
    DC_MAC_FROM_METER,
    decrypt_mode5,
    decrypt_mode7,
    derive_key,
    ell_ctr,
    verify_afl_mac,
)
from smtestbed.proto.wmbus.transport import (
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
    payload: bytes,
    key: bytes | None,
    meter: MeterAddress,
    afl: Afl | None,
    message: bytes,
) -> tuple[bytes | None, Security]:
    """Return the plaintext APL (None when it stays encrypted) and the security summary."""
    mode = tpl.security_mode
    config = tpl.config
    blocks = 0 if config is None else config.encrypted_blocks
    if mode == 0 or (mode in (MODE_AES_CBC_IV, MODE_AES_CBC_KDF) and blocks == 0):
        return payload, Security(mode=mode)
    if mode not in (MODE_AES_CBC_IV, MODE_AES_CBC_KDF):
        return None, Security(mode=mode, encrypted=True)
    if key is None:
        if payload[:2] == CHECK_BYTES:
            return payload, Security(mode=mode, encrypted=True, plain_on_air=True)
        return None, Security(mode=mode, encrypted=True)
    if mode == MODE_AES_CBC_IV:
        plain = decrypt_mode5(key, meter, tpl.access_number or 0, payload, blocks)
        return plain, Security(mode=mode, encrypted=True, decrypted=True)
    return _mode7_plain(key, meter, afl, payload, blocks, message)


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
    meter = tpl.address if tpl.address is not None else link.address
    plain, security = _tpl_plain(tpl, payload, key, meter, afl, body[pos:])
    if ell_plain[0] or ell_plain[1]:
        security = Security(
            mode=security.mode,
            encrypted=True,
            decrypted=security.decrypted or ell_plain[0],
            plain_on_air=security.plain_on_air or ell_plain[1],
            mac_verified=security.mac_verified,
        )
    block = _records(tpl, plain) if records else None
    return Telegram(
        link=link,
        frame_format=frame_format,
        ell=ell,
        afl=afl,
        tpl=tpl,
        payload=payload,
        application_data=plain,
        records=block,
        security=security,
    )


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
