"""Build wireless M-Bus / OMS telegrams byte-exact, in security modes 0, 5 and 7.

Layout produced (CRC-less form; then the link layer adds format A or B CRCs)::

    L C M(2) ID(4) Ver Type                         link header, L = bytes after L
    [CI_ELL CC ACC [M2 A2] [SN(4)] [PayloadCRC(2)]]  ELL; CRC over everything after it,
                                                     AES-CTR from the CRC on when SN says so
    [90 AFLL FCL MCL MCR(4) MAC(8)]                  AFL (mode 7, OMS profile B)
    CI [ID M Ver Type] ACC STS CFG(2) [CFG-ext]       TPL header (0x72 long / 0x7A short)
    2F 2F records ... 2F padding                      APL: N x 16 bytes encrypted, then plain

Steps when a key is given ("sealing"): pad the APL with 0x2F to a block boundary and set N
in CFG; encrypt (mode 5: IV = M A ACCx8; mode 7: Kenc from the KDF, IV = 0); for mode 7 set
the AFL MAC = CMAC(Kmac, MCL MCR [ML] TPL...)[:8]; then the ELL CRC and AES-CTR.
"""

from __future__ import annotations

from dataclasses import replace

from smtestbed.proto.wmbus.afl import AUTH_CMAC_8, FCL_MAC, FCL_MCL, FCL_MCR, MCL_MCR, Afl
from smtestbed.proto.wmbus.crc import crc16
from smtestbed.proto.wmbus.ell import ELL_ENCRYPTION_AES_CTR, Ell
from smtestbed.proto.wmbus.fields import SND_NR, MeterAddress
from smtestbed.proto.wmbus.link import FrameFormat, LinkHeader, add_crcs
from smtestbed.proto.wmbus.security import (
    BLOCK,
    CHECK_BYTES,
    DC_ENC_FROM_METER,
    DC_MAC_FROM_METER,
    ZERO_IV,
    afl_mac,
    cbc_encrypt,
    derive_key,
    ell_ctr,
    encrypt_mode5,
    pad_2f,
)
from smtestbed.proto.wmbus.telegram import Security, Telegram
from smtestbed.proto.wmbus.transport import (
    CI_TPL_LONG,
    CI_TPL_SHORT,
    MODE_AES_CBC_IV,
    MODE_AES_CBC_KDF,
    ConfigField,
    TplHeader,
    make_config,
)

OMS_AFL_FCL = FCL_MCL | FCL_MCR | FCL_MAC  # 0x2C00: the AFL of OMS profile B
OMS_AFL_MCL = MCL_MCR | AUTH_CMAC_8  # 0x25


def new_telegram(
    *,
    address: MeterAddress,
    records: bytes,
    access_number: int,
    security_mode: int = 0,
    status: int = 0,
    counter: int = 0,
    long_header: bool = False,
    c_field: int = SND_NR,
    ell: Ell | None = None,
    bidirectional: bool = False,
    accessible: bool = False,
    synchronous: bool = False,
) -> Telegram:
    """Describe a new meter telegram; :func:`encode_telegram` with a key seals it.

    Args:
        address: the meter (link layer; repeated in a long TPL header).
        records: encoded APL data records (without the 2F 2F check bytes).
        access_number: ACC of the TPL header.
        security_mode: 0, 5 or 7; modes 5 and 7 put 2F 2F before the records.
        status: STS byte.
        counter: AFL message counter MCR (mode 7).
        long_header: CI 0x72 with the address repeated, else CI 0x7A.
        c_field: link C-field.
        ell: an ELL to put before the AFL/TPL (its CRC is computed when encoding).
        bidirectional, accessible, synchronous: configuration bits B, A, S.
    """
    config = make_config(
        security_mode=security_mode,
        bidirectional=bidirectional,
        accessible=accessible,
        synchronous=synchronous,
    )
    tpl = TplHeader(
        ci=CI_TPL_LONG if long_header else CI_TPL_SHORT,
        address=address if long_header else None,
        access_number=access_number,
        status=status,
        config=config,
    )
    afl = None
    if security_mode == MODE_AES_CBC_KDF:
        afl = Afl(fcl=OMS_AFL_FCL, mcl=OMS_AFL_MCL, counter=counter, mac=bytes(8))
    plain = records if security_mode == 0 else CHECK_BYTES + records
    link = LinkHeader(length=0, c_field=c_field, address=address)
    return Telegram(
        link=link,
        ell=ell,
        afl=afl,
        tpl=tpl,
        payload=plain if security_mode == 0 else b"",
        application_data=plain,
        security=Security(mode=security_mode),
    )


def _encrypted_area(tpl: TplHeader, plain: bytes) -> tuple[bytes, int]:
    """Return the plaintext to send and N: N from CFG when it fits (re-encoding), else padded."""
    blocks = 0 if tpl.config is None else tpl.config.encrypted_blocks
    if blocks and len(plain) >= blocks * BLOCK:
        return plain, blocks
    return pad_2f(plain)


def _with_blocks(tpl: TplHeader, blocks: int) -> TplHeader:
    config = tpl.config if tpl.config is not None else ConfigField(word=0)
    return replace(tpl, config=config.with_blocks(blocks))


def _seal_mode7(telegram: Telegram, tpl: TplHeader, plain: bytes, key: bytes) -> Telegram:
    afl = telegram.afl
    if afl is None or afl.counter is None:
        raise ValueError("mode 7 needs an AFL with a message counter")
    ident, counter = telegram.address.ident, afl.counter
    padded, blocks = _encrypted_area(tpl, plain)
    size = blocks * BLOCK
    kenc = derive_key(key, constant=DC_ENC_FROM_METER, counter=counter, ident=ident)
    payload = cbc_encrypt(kenc, ZERO_IV, padded[:size]) + padded[size:]
    tpl = _with_blocks(tpl, blocks)
    message = tpl.to_bytes() + payload
    if afl.message_length is not None:
        afl = replace(afl, message_length=len(message))
    if afl.mac is not None:
        kmac = derive_key(key, constant=DC_MAC_FROM_METER, counter=counter, ident=ident)
        afl = replace(afl, mac=afl_mac(kmac, afl.mac_prefix(), message, len(afl.mac)))
    return replace(telegram, tpl=tpl, afl=afl, payload=payload, application_data=padded)


def seal_telegram(telegram: Telegram, key: bytes) -> Telegram:
    """Encrypt the APL as the TPL security mode says and fill in N and the AFL MAC.

    Modes other than 5 and 7 send the APL as it is. The returned telegram's ``payload`` holds
    the bytes as sent and ``application_data`` the padded plaintext.

    Raises:
        ValueError: there is no plaintext APL to seal, or mode 7 lacks its AFL counter.
        WrongKeyError: the key is not 16 bytes.
    """
    tpl, plain = telegram.tpl, telegram.application_data
    if tpl is None or plain is None:
        raise ValueError("only a telegram with a TPL header and plaintext APL can be sealed")
    if tpl.security_mode == MODE_AES_CBC_KDF:
        return _seal_mode7(telegram, tpl, plain, key)
    if tpl.security_mode != MODE_AES_CBC_IV:
        return replace(telegram, payload=plain)
    padded, blocks = _encrypted_area(tpl, plain)
    size = blocks * BLOCK
    payload, _ = encrypt_mode5(key, telegram.address, tpl.access_number or 0, padded[:size])
    tpl = _with_blocks(tpl, blocks)
    return replace(telegram, tpl=tpl, payload=payload + padded[size:], application_data=padded)


def _ell_part(telegram: Telegram, ell: Ell, inner: bytes, key: bytes | None) -> bytes:
    """Return the ELL header, payload CRC and ``inner``, AES-CTR encrypted when selected."""
    if ell.session_number is None:
        return ell.header_bytes() + inner
    tail = crc16(inner).to_bytes(2, "little") + inner
    if key is not None and ell.encryption == ELL_ENCRYPTION_AES_CTR:
        tail = ell_ctr(key, telegram.link.address, ell.cc, ell.session_number, tail)
    return ell.header_bytes() + tail


def _body(telegram: Telegram, key: bytes | None) -> bytes:
    """Return every byte after the link header."""
    ell, tpl = telegram.ell, telegram.tpl
    if tpl is None:  # an ELL part that was never opened: payload is as carried
        return (b"" if ell is None else ell.header_bytes()) + telegram.payload
    afl = b"" if telegram.afl is None else telegram.afl.to_bytes()
    inner = afl + tpl.to_bytes() + telegram.payload
    return inner if ell is None else _ell_part(telegram, ell, inner, key)


def _needs_key(telegram: Telegram) -> bool:
    """Tell a telegram built to be sealed (plaintext APL but no payload yet)."""
    tpl = telegram.tpl
    if tpl is None or tpl.security_mode not in (MODE_AES_CBC_IV, MODE_AES_CBC_KDF):
        return False
    return not telegram.payload and bool(telegram.application_data)


def encode_telegram(
    telegram: Telegram,
    *,
    key: bytes | None = None,
    crcs: bool = True,
    frame_format: FrameFormat = FrameFormat.A,
) -> bytes:
    """Encode a telegram into a frame (format A with CRCs by default).

    With a key the APL is sealed first (see :func:`seal_telegram`) and an ELL with AES-CTR
    selected is encrypted; without one the carried ``payload`` is sent as it is, so that
    ``encode_telegram(decode_telegram(frame))`` gives the frame back.

    Raises:
        ValueError: an encrypted telegram without payload and no key, or too long a telegram.
    """
    if key is not None and telegram.tpl is not None and telegram.application_data is not None:
        telegram = seal_telegram(telegram, key)
    elif _needs_key(telegram):
        raise ValueError("an encrypted telegram needs a key to be encoded")
    body = _body(telegram, key)
    if len(body) + 9 > 255:
        raise ValueError(f"telegram of {len(body) + 10} bytes is longer than an L-field allows")
    head = LinkHeader(
        length=len(body) + 9, c_field=telegram.link.c_field, address=telegram.link.address
    )
    data = head.to_bytes() + body
    return add_crcs(data, frame_format) if crcs else data
