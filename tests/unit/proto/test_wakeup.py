"""The wake-up packet layout (proto/wakeup.py): round trip, signature, malformed datagrams."""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from smtestbed.proto import wakeup
from smtestbed.services._runtime.errors import ProtocolError

NONCE = bytes(range(16))


def _certificate(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gwa1.emt.test.example")])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def signed() -> bytes:
    """Return a packet signed with a brainpoolP256r1 key."""
    key = ec.generate_private_key(ec.BrainpoolP256R1())
    return wakeup.sign(
        gateway="gw0.smgw.test.example",
        gwa="gwa1.emt.test.example",
        issued=1_700_000_000.123,
        nonce=NONCE,
        key=key,
        certificate=_certificate(key),
    )


def test_packet_round_trips_and_its_signature_verifies(signed: bytes) -> None:
    """decode() returns every field sign() wrote; the signature covers the bytes before it."""
    packet = wakeup.decode(signed)
    assert signed[:4] == b"SMWU"
    assert signed[4] == 1
    assert (packet.gateway, packet.gwa) == ("gw0.smgw.test.example", "gwa1.emt.test.example")
    assert packet.issued == pytest.approx(1_700_000_000.123, abs=1e-6)
    assert packet.nonce == NONCE
    assert packet.certificate.serial_number == 7
    assert signed == packet.signed + bytes([len(packet.signature)]) + packet.signature
    assert wakeup.signature_valid(packet)


def test_changed_byte_breaks_the_signature(signed: bytes) -> None:
    """Flipping a bit of the issue time keeps the layout but fails the signature."""
    data = bytearray(signed)
    data[13] ^= 0x01
    assert not wakeup.signature_valid(wakeup.decode(bytes(data)))


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda d: b"XXXX" + d[4:], "magic"),
        (lambda d: d[:4] + b"\x02" + d[5:], "version"),
        (lambda d: d[:10], "header"),
        (lambda d: d + b"\x00", "after the signature"),
        (lambda d: d[:-3], "signature"),
        (lambda d: d[:30] + b"\x00" + d[31:], "gateway id length 0"),
        (lambda d: b"", "header"),
        (lambda d: d[:60], "ends inside GWA id"),
    ],
)
def test_malformed_datagram_is_a_protocol_error_naming_the_field(
    signed: bytes, mutate: Callable[[bytes], bytes], words: str
) -> None:
    """Each broken layout raises ProtocolError(reason=malformed) saying where."""
    with pytest.raises(ProtocolError, match=words) as caught:
        wakeup.decode(mutate(signed))
    assert caught.value.reason == "malformed"


def test_certificate_that_does_not_parse_is_malformed(signed: bytes) -> None:
    """A certificate field of the right length but no DER certificate is refused."""
    packet = wakeup.decode(signed)
    start = 31 + len(packet.gateway) + 1 + len(packet.gwa)
    (length,) = struct.unpack(">H", signed[start : start + 2])
    broken = signed[: start + 2] + b"\x00" * length + signed[start + 2 + length :]
    with pytest.raises(ProtocolError, match="certificate"):
        wakeup.decode(broken)
