"""Security of wireless M-Bus / OMS telegrams: modes 5 and 7, AES-CMAC, the OMS KDF, ELL CTR.

Mode 5 (OMS profile A): AES-128-CBC with the meter key and
``IV = M(2) ID(4) Ver Type ACC x 8`` (link-layer order), over N x 16 bytes after the TPL
header, N from the configuration field.

Mode 7 (OMS profile B): AES-128-CBC with IV = 16 x 0x00 and the message key
``Kenc = CMAC(MK, 0x00 || MCR(4, LE) || ID(4, LE) || 0x07 x 7)``; the AFL MAC is the first
8 bytes of ``CMAC(Kmac, MCL || MCR || [ML] || TPL-CI ... last byte)`` with Kmac from the same
KDF and constant 0x01 (encrypt-then-MAC).

Plaintext of both modes begins with ``2F 2F`` and is padded with ``0x2F`` to a block boundary.
"""

from __future__ import annotations

import hmac
import threading
from functools import lru_cache

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC
from smtestbed.proto.wmbus.errors import BadMacError, No2F2FError, WrongKeyError
from smtestbed.proto.wmbus.fields import MeterAddress
from smtestbed.services._runtime.errors import ProtocolError

BLOCK = 16
MAX_BLOCKS = 15  # the N field of the configuration word has 4 bits
CHECK_BYTES = b"\x2f\x2f"
ZERO_IV = bytes(BLOCK)

DC_ENC_FROM_METER = 0x00
DC_MAC_FROM_METER = 0x01
DC_ENC_TO_METER = 0x10
DC_MAC_TO_METER = 0x11


@lru_cache(maxsize=1024)
def _aes(key: bytes) -> algorithms.AES:
    if len(key) != BLOCK:
        raise WrongKeyError(f"AES-128 key must be 16 bytes, got {len(key)}")
    return algorithms.AES(key)


def aes_cmac(key: bytes, message: bytes) -> bytes:
    """Return the 16-byte AES-CMAC (RFC 4493) of ``message`` under a 16-byte ``key``."""
    mac = CMAC(_aes(bytes(key)))
    mac.update(message)
    return mac.finalize()


@lru_cache(maxsize=1024)
def _master_cmac(master_key: bytes) -> CMAC:
    # A keyed CMAC that is never fed: each derivation under a meter's long-lived master key
    # starts from a copy of it instead of setting up the key again. CMACs under per-telegram
    # keys (Kmac) are not cached: they would only push the master keys out.
    return CMAC(_aes(master_key))


def derive_key(master_key: bytes, *, constant: int, counter: int, ident: int) -> bytes:
    """Derive an OMS mode-7 message key (OMS Vol. 2 KDF, EN 13757-7 KDF-A).

    Args:
        master_key: the meter's individual 16-byte key MK.
        constant: derivation constant DC (0x00 Kenc, 0x01 Kmac meter -> other; 0x10/0x11 back).
        counter: the AFL message counter MCR.
        ident: the meter ID (long TPL header ID if present, else link-layer ID).
    """
    block = (
        bytes((constant,))
        + counter.to_bytes(4, "little")
        + ident.to_bytes(4, "little")
        + b"\x07" * 7
    )
    mac = _master_cmac(bytes(master_key)).copy()
    mac.update(block)
    return mac.finalize()


# The second half of a mode-5 IV for each access number: ACC eight times.
ACC_IV_HALVES = tuple(bytes((acc,)) * 8 for acc in range(256))


def mode5_iv(address: MeterAddress, access_number: int) -> bytes:
    """Return the mode-5 IV: ``M(2) ID(4) Ver Type`` then the access number 8 times."""
    return address.link_order() + ACC_IV_HALVES[access_number & 0xFF]


def cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-128-CBC decrypt whole blocks (no padding removal)."""
    op = Cipher(_aes(key), modes.CBC(iv)).decryptor()
    return op.update(data) + op.finalize()


@lru_cache(maxsize=1024)
def _ecb_decryptor(key: bytes) -> tuple[CipherContext, threading.Lock]:
    # An ECB context keeps no chaining state between whole blocks, so one per static
    # (mode 5) key serves every telegram: no cipher objects built per call. The context is
    # one mutable object, so threads take turns through its lock.
    return Cipher(_aes(key), modes.ECB()).decryptor(), threading.Lock()


def cbc_decrypt_static(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-128-CBC decrypt with a long-lived key: cached AES block decryption + CBC XOR.

    ``P_i = D_K(C_i) xor C_(i-1)`` with ``C_(-1) = IV``; equal to :func:`cbc_decrypt`. The
    cached context per key is shared by all threads under a lock.
    """
    size = len(data)
    if size % BLOCK:
        raise ProtocolError("ciphertext is not a whole number of AES blocks", reason="truncated")
    if not size:
        return b""
    context, lock = _ecb_decryptor(bytes(key))
    with lock:
        blocks = context.update(data)
    chain = int.from_bytes(iv + data[: size - BLOCK], "big")
    return (int.from_bytes(blocks, "big") ^ chain).to_bytes(size, "big")


def cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-128-CBC encrypt whole blocks (the caller pads)."""
    op = Cipher(_aes(key), modes.CBC(iv)).encryptor()
    return op.update(data) + op.finalize()


def pad_2f(plaintext: bytes) -> tuple[bytes, int]:
    """Pad ``plaintext`` with 0x2F to a block boundary, as meters do.

    Returns:
        The bytes to send in plaintext form and N, the number of blocks to encrypt. Beyond
        15 blocks the rest stays unencrypted (and unpadded), as the N field allows no more.
    """
    if len(plaintext) > MAX_BLOCKS * BLOCK:
        return plaintext, MAX_BLOCKS
    blocks = -(-len(plaintext) // BLOCK)
    return plaintext + b"\x2f" * (blocks * BLOCK - len(plaintext)), blocks


def _too_short(payload: bytes, blocks: int) -> ProtocolError:
    return ProtocolError(
        f"configuration says {blocks} encrypted blocks, payload has {len(payload)} bytes",
        reason="truncated",
    )


def _split(payload: bytes, blocks: int) -> tuple[bytes, bytes]:
    size = blocks * BLOCK
    if len(payload) < size:
        raise _too_short(payload, blocks)
    return payload[:size], payload[size:]


def decrypt_mode5(
    key: bytes, address: MeterAddress, access_number: int, payload: bytes, blocks: int
) -> bytes:
    """Decrypt a mode-5 payload (the bytes after the TPL header).

    Returns:
        The decrypted N blocks followed by the unencrypted rest.

    Raises:
        WrongKeyError: the plaintext does not begin with 2F 2F, or the key is not 16 bytes.
        ProtocolError: ``truncated`` when the payload is shorter than N blocks.
    """
    return decrypt_mode5_iv(key, mode5_iv(address, access_number), payload, blocks)


def decrypt_mode5_iv(key: bytes, iv: bytes, payload: bytes, blocks: int) -> bytes:
    """Decrypt a mode-5 payload with its IV already built (see :func:`decrypt_mode5`)."""
    size = blocks * BLOCK
    if len(payload) < size:
        raise _too_short(payload, blocks)
    plain = cbc_decrypt_static(key, iv, payload[:size])
    if plain[:2] != CHECK_BYTES:
        raise WrongKeyError("mode 5 plaintext does not begin with 2F 2F: wrong key")
    return plain + payload[size:] if len(payload) > size else plain


def encrypt_mode5(
    key: bytes, address: MeterAddress, access_number: int, plaintext: bytes
) -> tuple[bytes, int]:
    """Encrypt a mode-5 application payload that begins with 2F 2F.

    Returns:
        The payload as sent (ciphertext, then any unencrypted rest) and N.
    """
    padded, blocks = pad_2f(plaintext)
    size = blocks * BLOCK
    iv = mode5_iv(address, access_number)
    return cbc_encrypt(key, iv, padded[:size]) + padded[size:], blocks


def decrypt_mode7(kenc: bytes, payload: bytes, blocks: int, *, authenticated: bool) -> bytes:
    """Decrypt a mode-7 payload with the derived key ``kenc`` and IV 0.

    Raises:
        No2F2FError: the MAC checked out (``authenticated``) but the plaintext lacks 2F 2F.
        WrongKeyError: no MAC was checked and the plaintext lacks 2F 2F.
    """
    secret, rest = _split(payload, blocks)
    plain = cbc_decrypt(kenc, ZERO_IV, secret)
    if plain[:2] != CHECK_BYTES:
        if authenticated:
            raise No2F2FError("mode 7 plaintext does not begin with 2F 2F although the MAC matched")
        raise WrongKeyError("mode 7 plaintext does not begin with 2F 2F: wrong key")
    return plain + rest


def afl_mac(kmac: bytes, prefix: bytes, message: bytes, size: int = 8) -> bytes:
    """Return the AFL MAC: the first ``size`` bytes of CMAC(Kmac, prefix || message).

    ``prefix`` is ``MCL || MCR || [ML]``; ``message`` runs from the TPL CI to the last byte.
    """
    return aes_cmac(kmac, prefix + message)[:size]


def verify_afl_mac(kmac: bytes, prefix: bytes, message: bytes, mac: bytes) -> None:
    """Raise :class:`BadMacError` unless ``mac`` is the AFL MAC of ``message``."""
    if not hmac.compare_digest(afl_mac(kmac, prefix, message, len(mac)), mac):
        raise BadMacError("AFL MAC does not match: wrong key or altered telegram")


def ell_ctr(key: bytes, address: MeterAddress, cc: int, session_number: int, data: bytes) -> bytes:
    """Apply the ELL AES-128-CTR keystream (encrypts and decrypts alike).

    Counter block: ``M(2) ID(4) Ver Type CC SN(4, LE) FN(2)=0 BC(1)``, BC counting blocks
    from 0 in the last byte, so the usual big-endian increment of the whole block fits.
    """
    iv = address.link_order() + bytes((cc,)) + session_number.to_bytes(4, "little") + bytes(3)
    op = Cipher(_aes(key), modes.CTR(iv)).encryptor()
    return op.update(data) + op.finalize()
