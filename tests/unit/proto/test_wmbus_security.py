"""Tests of wM-Bus security: AES-CMAC, the OMS KDF, modes 5 and 7, ELL AES-CTR, config field."""

from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC
from smtestbed.proto.wmbus.afl import Afl, decode_afl
from smtestbed.proto.wmbus.ell import CI_ELL_SESSION, Ell
from smtestbed.proto.wmbus.encoder import encode_telegram, new_telegram, seal_telegram
from smtestbed.proto.wmbus.errors import BadMacError, No2F2FError, WrongKeyError
from smtestbed.proto.wmbus.fields import MeterAddress
from smtestbed.proto.wmbus.security import aes_cmac, derive_key, mode5_iv, pad_2f
from smtestbed.proto.wmbus.telegram import decode_telegram
from smtestbed.proto.wmbus.transport import ConfigField, decode_tpl, make_config
from smtestbed.services._runtime.errors import ProtocolError

RFC_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
RFC_MSG = bytes.fromhex(
    "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
)
METER = MeterAddress(manufacturer=0x15A8, ident=0x12345678, version=0x01, device_type=0x02)
KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
RECORDS = bytes.fromhex("0403a08601000413e8030000")  # 100000 Wh, 1000 l


@pytest.mark.parametrize(
    ("size", "mac"),
    [
        (0, "bb1d6929e95937287fa37d129b756746"),
        (16, "070a16b46b4d4144f79bdd9dd04a287c"),
        (40, "dfa66747de9ae63030ca32611497c827"),
        (64, "51f0bebf7e3b9d92fc49741779363cfe"),
    ],
)
def test_aes_cmac_matches_rfc4493(size: int, mac: str) -> None:
    """AES-CMAC gives the four RFC 4493 example MACs."""
    assert aes_cmac(RFC_KEY, RFC_MSG[:size]).hex() == mac


def _reference_kdf(key: bytes, dc: int, counter: int, ident: int) -> bytes:
    """The OMS KDF written out from the standard's formula with cryptography's CMAC."""
    message = bytes([dc]) + counter.to_bytes(4, "little") + ident.to_bytes(4, "little")
    mac = CMAC(algorithms.AES(key))
    mac.update(message + bytes([7] * 7))
    return mac.finalize()


@pytest.mark.parametrize("dc", [0x00, 0x01, 0x10, 0x11])
def test_kdf_equals_standard_formula(dc: int) -> None:
    """derive_key equals CMAC(MK, DC || MCR LE || ID LE || 07 x 7) for every constant."""
    got = derive_key(KEY, constant=dc, counter=0x01020304, ident=0x12345678)
    assert got == _reference_kdf(KEY, dc, 0x01020304, 0x12345678)
    assert got != derive_key(KEY, constant=dc, counter=0x01020305, ident=0x12345678)


def test_mode5_iv_is_address_then_access_number_eight_times() -> None:
    """The mode-5 IV is M, ID LSB first, version, type, then ACC x 8."""
    assert mode5_iv(METER, 0x2A).hex() == "a815785634120102" + "2a" * 8


def test_padding_fills_with_2f_to_a_block() -> None:
    """Plaintext is padded with 0x2F to 16 bytes; 2 blocks for 17 bytes."""
    assert pad_2f(b"\x2f\x2f\x01") == (b"\x2f\x2f\x01" + b"\x2f" * 13, 1)
    assert pad_2f(bytes(17))[1] == 2


def test_config_field_bits_decode() -> None:
    """Mode, N, B/A/S bits, hop count and the mode-7 extension decode from CFG bytes."""
    header, end = decode_tpl(bytes.fromhex("7a2a00f5c5153f"), 0)
    cfg = header.config
    assert cfg is not None
    assert end == 5
    assert (cfg.security_mode, cfg.encrypted_blocks) == (5, 0xF)
    assert (cfg.bidirectional, cfg.accessible, cfg.synchronous) == (True, True, False)
    assert (cfg.content, cfg.repeated_access, cfg.hop_count) == (1, False, 1)
    seven = make_config(security_mode=7, encrypted_blocks=2, kdf_selection=1, key_id=3)
    assert seven.to_bytes().hex() == "200713"
    assert (seven.kdf_selection, seven.key_id) == (1, 3)
    assert ConfigField(word=0x0000).encrypted_blocks == 0


def test_mode5_frame_decrypts_with_reference_aes() -> None:
    """A mode-5 frame's ciphertext decrypts with plain AES-CBC and the standard IV."""
    frame = encode_telegram(
        new_telegram(address=METER, records=RECORDS, access_number=7, security_mode=5),
        key=KEY,
        crcs=False,
    )
    assert frame[10] == 0x7A
    assert frame[13:15] == bytes((0x10, 0x05))  # N = 1 block, mode 5
    op = Cipher(algorithms.AES(KEY), modes.CBC(mode5_iv(METER, 7))).decryptor()
    plain = op.update(frame[15:]) + op.finalize()
    assert plain == b"\x2f\x2f" + RECORDS + b"\x2f" * 2


def test_mode5_encode_decode_gives_records() -> None:
    """Encrypt then decode: the records come back and the telegram says it decrypted."""
    built = new_telegram(address=METER, records=RECORDS, access_number=7, security_mode=5)
    telegram = decode_telegram(encode_telegram(built, key=KEY), key=KEY)
    assert telegram.security.decrypted
    assert telegram.records is not None
    assert [r.value for r in telegram.records.records] == [100000, pytest.approx(1.0)]


def test_mode5_long_header_uses_tpl_address_for_iv() -> None:
    """With CI 0x72 the IV comes from the TPL address, even if the link address differs."""
    built = new_telegram(
        address=METER, records=RECORDS, access_number=9, security_mode=5, long_header=True
    )
    frame = encode_telegram(built, key=KEY, crcs=False)
    relayed = frame[:4] + bytes(4) + frame[8:]  # a repeater's link ID, meter ID in the TPL
    telegram = decode_telegram(relayed, key=KEY, crcs=False)
    assert telegram.address == METER
    assert telegram.application_data is not None
    assert telegram.application_data[2:14] == RECORDS


def _mode7_frame(counter: int = 0x10) -> bytes:
    built = new_telegram(
        address=METER, records=RECORDS, access_number=3, security_mode=7, counter=counter
    )
    return encode_telegram(built, key=KEY, crcs=False)


def test_mode7_layout_and_mac_follow_oms_profile_b() -> None:
    """Mode 7: AFL 90 0F 00 2C 25 MCR MAC, Kenc/IV 0 ciphertext, MAC over MCL MCR TPL..."""
    frame = _mode7_frame()
    afl, pos = decode_afl(frame, 10)
    assert frame[10:15].hex() == "900f002c25"
    assert afl.counter == 0x10
    kenc = _reference_kdf(KEY, 0x00, 0x10, METER.ident)
    kmac = _reference_kdf(KEY, 0x01, 0x10, METER.ident)
    op = Cipher(algorithms.AES(kenc), modes.CBC(bytes(16))).decryptor()
    tpl_end = pos + 6  # 7A ACC STS CFG(2) CFG-ext
    plain = op.update(frame[tpl_end:]) + op.finalize()
    assert plain[:14] == b"\x2f\x2f" + RECORDS
    mac = CMAC(algorithms.AES(kmac))
    mac.update(bytes([0x25]) + (0x10).to_bytes(4, "little") + frame[pos:])
    assert afl.mac == mac.finalize()[:8]


def test_mode7_decode_verifies_mac_and_decrypts() -> None:
    """Decoding a mode-7 frame with the master key verifies the MAC and yields the records."""
    telegram = decode_telegram(_mode7_frame(), key=KEY, crcs=False)
    assert telegram.security.mac_verified
    assert telegram.application_data is not None
    assert telegram.application_data[2:14] == RECORDS


def test_mode7_altered_byte_is_bad_mac() -> None:
    """One changed ciphertext byte makes the MAC check fail with reason bad_mac."""
    frame = bytearray(_mode7_frame())
    frame[-1] ^= 0x01
    with pytest.raises(BadMacError) as info:
        decode_telegram(bytes(frame), key=KEY, crcs=False)
    assert info.value.reason == "bad_mac"


def test_mode7_wrong_key_is_bad_mac() -> None:
    """Another master key derives another Kmac, so the MAC fails."""
    with pytest.raises(BadMacError):
        decode_telegram(_mode7_frame(), key=bytes(16), crcs=False)


def test_mode7_authentic_plaintext_without_2f2f_is_no_2f2f() -> None:
    """A correctly MACed telegram whose plaintext lacks 2F 2F raises no_2f2f."""
    built = new_telegram(address=METER, records=RECORDS, access_number=3, security_mode=7)
    odd = seal_telegram(replace(built, application_data=RECORDS), KEY)
    frame = encode_telegram(odd, crcs=False)
    with pytest.raises(No2F2FError) as info:
        decode_telegram(frame, key=KEY, crcs=False)
    assert info.value.reason == "no_2f2f"


def test_short_key_is_wrong_key() -> None:
    """A key that is not 16 bytes raises WrongKeyError, not ValueError."""
    frame = encode_telegram(
        new_telegram(address=METER, records=RECORDS, access_number=1, security_mode=5), key=KEY
    )
    with pytest.raises(WrongKeyError):
        decode_telegram(frame, key=b"short")


def test_ell_aes_ctr_round_trip_and_wrong_key() -> None:
    """An ELL 0x8D with AES-CTR encrypts on encode, decrypts with the key, fails without."""
    ell = Ell(ci=CI_ELL_SESSION, cc=0x20, access_number=5, session_number=0x20000001)
    built = new_telegram(address=METER, records=RECORDS, access_number=5, ell=ell)
    frame = encode_telegram(built, key=KEY)
    telegram = decode_telegram(frame, key=KEY)
    assert telegram.security.decrypted
    assert telegram.records is not None
    assert len(telegram.records.records) == 2
    closed = decode_telegram(frame)
    assert closed.tpl is None
    assert encode_telegram(closed) == frame
    with pytest.raises(WrongKeyError):
        decode_telegram(frame, key=bytes(16))


def test_afl_fields_and_length_check() -> None:
    """AFL fields decode per FCL/MCL bits; an AFLL that leaves bytes unused is refused."""
    afl = Afl(fcl=0x3C00, mcl=0x65, counter=7, mac=bytes(range(8)), message_length=20)
    data = afl.to_bytes()
    assert decode_afl(data, 0) == (afl, len(data))
    bad = bytearray(data)
    bad[1] += 1
    with pytest.raises(ProtocolError) as info:
        decode_afl(bytes(bad) + b"\x00", 0)
    assert info.value.reason == "bad_afl_length"


def test_key_derivations_under_one_master_key_do_not_share_state() -> None:
    """Derivations reusing a master key's cached CMAC each equal a fresh CMAC of their block."""
    master = bytes(range(16, 32))
    for counter in (0, 1, 0xFFFFFFFF, 1, 0):
        block = bytes((0x00,)) + counter.to_bytes(4, "little") + (0x12345678).to_bytes(4, "little")
        fresh = CMAC(algorithms.AES(master))
        fresh.update(block + b"\x07" * 7)
        got = derive_key(master, constant=0x00, counter=counter, ident=0x12345678)
        assert got == fresh.finalize()
