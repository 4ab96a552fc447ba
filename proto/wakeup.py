"""The GWA's wake-up packet: one UDP datagram, signed by the GWA, asking a gateway to call.

TR-03109-1 lets a gateway accept no administration connection it did not open
itself. To reach it, the gateway administrator (GWA) sends this packet to the
gateway's wake-up port; the gateway checks it and then connects out, with
mutual TLS, to the GWA address it was configured with (never one taken from
the packet).

Byte layout, version 1 (all integers unsigned, big-endian)::

    offset  size  field
    0       4     magic, ASCII "SMWU"
    4       1     version = 1
    5       1     flags = 0 (reserved)
    6       8     issued: ms since the Unix epoch, on the GWA's clock
    14      16    nonce: random, never reused by a GWA
    30      1     G: length of the gateway id, 1..253
    31      G     gateway id: the gateway certificate's CN (ASCII host name)
    31+G    1     A: length of the GWA id, 1..253
    32+G    A     GWA id: the GWA signature certificate's CN (ASCII host name)
    32+G+A  2     C: length of the certificate, 1..2048
    34+G+A  C     the GWA's signature certificate (profile gwa-sig), DER
    ...     1     S: length of the signature, 8..141
    ...     S     DER ECDSA-Sig-Value over every byte before S

The signature's hash follows the signing key's size (<= 256 bits SHA-256,
<= 384 SHA-384, else SHA-512), as for TAF deliveries. The datagram ends with
the signature: trailing bytes, a wrong magic, version or flags, a length out
of range or a certificate that does not parse make it malformed. At most
:data:`MAX_PACKET` bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from smtestbed.services._runtime.errors import ProtocolError

__all__ = [
    "MAGIC",
    "MAX_PACKET",
    "NONCE_BYTES",
    "VERSION",
    "WakeupPacket",
    "decode",
    "sign",
    "signature_valid",
]

MAGIC = b"SMWU"
VERSION = 1
NONCE_BYTES = 16
MAX_PACKET = 4096
MAX_ID = 253
MAX_CERT = 2048
_FIXED = struct.Struct(">4sBBQ16s")


@dataclass(frozen=True, slots=True, kw_only=True)
class WakeupPacket:
    """A decoded wake-up packet.

    Attributes:
        gateway: the gateway id it is addressed to.
        gwa: the GWA id that signed it.
        issued: issue time, s since the Unix epoch (ms resolution).
        nonce: its 16 random bytes.
        certificate: the GWA's signature certificate.
        signature: DER ECDSA signature.
        signed: the bytes the signature covers.
    """

    gateway: str
    gwa: str
    issued: float
    nonce: bytes
    certificate: x509.Certificate
    signature: bytes
    signed: bytes


def _hash(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> hashes.HashAlgorithm:
    size = key.curve.key_size
    return hashes.SHA256() if size <= 256 else hashes.SHA384() if size <= 384 else hashes.SHA512()


def _ident(value: str, what: str) -> bytes:
    data = value.encode("ascii", errors="replace")
    if not 1 <= len(data) <= MAX_ID:
        raise ValueError(f"{what} must be 1..{MAX_ID} ASCII characters")
    return bytes([len(data)]) + data


def sign(
    *,
    gateway: str,
    gwa: str,
    issued: float,
    nonce: bytes,
    key: ec.EllipticCurvePrivateKey,
    certificate: x509.Certificate,
) -> bytes:
    """Return the datagram asking ``gateway`` to call, signed with the GWA's key."""
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"nonce must be {NONCE_BYTES} bytes")
    der = certificate.public_bytes(Encoding.DER)
    if len(der) > MAX_CERT:
        raise ValueError(f"certificate larger than {MAX_CERT} bytes")
    body = _FIXED.pack(MAGIC, VERSION, 0, max(0, round(issued * 1000)), nonce)
    body += _ident(gateway, "gateway id") + _ident(gwa, "GWA id")
    body += struct.pack(">H", len(der)) + der
    signature = key.sign(body, ec.ECDSA(_hash(key)))
    return body + bytes([len(signature)]) + signature


class _Cursor:
    """Reads fields off a datagram; running short is a ProtocolError."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, n: int, what: str) -> bytes:
        if self.at + n > len(self.data):
            raise ProtocolError(f"wake-up packet ends inside {what}", reason="malformed")
        out = self.data[self.at : self.at + n]
        self.at += n
        return out

    def length(self, size: int, low: int, high: int, what: str) -> int:
        value = int.from_bytes(self.take(size, f"{what} length"), "big")
        if not low <= value <= high:
            raise ProtocolError(f"{what} length {value} outside {low}..{high}", reason="malformed")
        return value


def decode(data: bytes) -> WakeupPacket:
    """Parse a datagram (the signature is checked by :func:`signature_valid`).

    Raises:
        ProtocolError: reason ``malformed``, the message naming the field at fault.
    """
    if len(data) > MAX_PACKET:
        raise ProtocolError(f"wake-up packet of {len(data)} bytes", reason="malformed")
    cur = _Cursor(data)
    magic, version, flags, issued_ms, nonce = _FIXED.unpack(cur.take(_FIXED.size, "header"))
    if magic != MAGIC:
        raise ProtocolError(f"magic {magic!r} is not {MAGIC!r}", reason="malformed")
    if version != VERSION or flags != 0:
        raise ProtocolError(f"version {version} flags {flags} (want 1, 0)", reason="malformed")
    gateway = _text(cur.take(cur.length(1, 1, MAX_ID, "gateway id"), "gateway id"), "gateway id")
    gwa = _text(cur.take(cur.length(1, 1, MAX_ID, "GWA id"), "GWA id"), "GWA id")
    der = cur.take(cur.length(2, 1, MAX_CERT, "certificate"), "certificate")
    signed = data[: cur.at]
    signature = cur.take(cur.length(1, 8, 141, "signature"), "signature")
    if cur.at != len(data):
        raise ProtocolError(f"{len(data) - cur.at} bytes after the signature", reason="malformed")
    try:
        certificate = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise ProtocolError(f"certificate: {exc}", reason="malformed") from exc
    return WakeupPacket(
        gateway=gateway,
        gwa=gwa,
        issued=issued_ms / 1000,
        nonce=nonce,
        certificate=certificate,
        signature=signature,
        signed=signed,
    )


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError(f"{what} is not ASCII", reason="malformed") from None


def signature_valid(packet: WakeupPacket) -> bool:
    """Tell whether the packet's signature verifies under its certificate's EC key."""
    try:
        key = packet.certificate.public_key()
    except ValueError:
        return False
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    try:
        key.verify(packet.signature, packet.signed, ec.ECDSA(_hash(key)))
    except InvalidSignature:
        return False
    return True
