"""Test-only switches that turn single checks of the gateway off (``unsafe_skip_checks``).

A scenario proves it detects a fault by also running with the check that catches the
fault switched off: it must then fail. Each name switches off exactly one check, where
that check is made:

- ``crc``: a format A frame whose block CRCs do not match has them removed unchecked
  and goes on through the other checks (a frame whose L-field does not fit its size is
  still refused);
- ``mac``: a mode 5/7 payload whose decryption does not verify (wrong key, AFL MAC
  mismatch, no ``2F 2F``) is opened without verification and processed as if it had
  verified (an ELL-encrypted frame is still refused);
- ``replay``: the access number (modes 0/5) and message counter (mode 7) check;
- ``counter_backwards``: the plausibility check of a counter going backwards;
- ``unknown_meter``: a frame of an unregistered meter is processed as if the meter were
  registered with the security mode the frame uses and no key, and stored under its ID;
- ``meter_missing``: a wired meter that goes silent is not reported;
- ``update_signature``, ``update_version``: the downloader's signature and newer-version
  checks of a firmware bundle;
- ``log_chain``: log verification (``gateway.verify_log``) reports every log as intact;
- ``crl``: the CRL check on the WAN and HAN TLS handshakes (the chain is still checked);
  a peer whose certificate the loaded CRLs list is then served, and counted.

Every time a switched-off check would have fired it is counted (``checks_skipped``).
"""

from __future__ import annotations

import ssl
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography.x509.oid import NameOID
from smtestbed.proto.wmbus import decode_telegram
from smtestbed.proto.wmbus.link import BLOCK_SIZE, HEADER_SIZE, format_a_size
from smtestbed.proto.wmbus.security import (
    BLOCK,
    DC_ENC_FROM_METER,
    ZERO_IV,
    cbc_decrypt,
    derive_key,
    mode5_iv,
)
from smtestbed.services._runtime import pki, tls
from smtestbed.services._runtime.errors import ConfigError, ProtocolError

CHECKS = (
    "crc",
    "mac",
    "replay",
    "counter_backwards",
    "unknown_meter",
    "meter_missing",
    "update_signature",
    "update_version",
    "log_chain",
    "crl",
)
NOT_YET: tuple[str, ...] = ()  # named checks that cannot be switched off (none left)
KEY = "gateway.unsafe_skip_checks"


class SkippedChecks:
    """The checks switched off, and how often each would have fired."""

    __slots__ = ("counts", "names")

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.names = frozenset(names)
        self.counts: Counter[str] = Counter()

    def __bool__(self) -> bool:
        return bool(self.names)

    def skips(self, check: str) -> bool:
        """Return True when ``check`` is off, counting the firing it suppresses."""
        if check not in self.names:
            return False
        self.counts[check] += 1
        return True

    @property
    def total(self) -> int:
        """Return how often a switched-off check would have fired."""
        return sum(self.counts.values())

    def to_map(self) -> dict[str, Any]:
        """Return the switches and their counts for ``gateway.status``."""
        return {
            "unsafe_skip_checks": sorted(self.names),
            "checks_skipped": self.total,
            "checks_skipped_by": dict(self.counts),
        }


def parse(names: Iterable[str]) -> SkippedChecks:
    """Return the switches named in the setting; ConfigError naming it for an unknown one."""
    given = tuple(names)
    pending = sorted(set(given) & set(NOT_YET))
    if pending:
        raise ConfigError(f"check {pending[0]!r} cannot be switched off yet", key=KEY)
    unknown = sorted(set(given) - set(CHECKS))
    if unknown:
        raise ConfigError(f"unknown check {unknown[0]!r} (known: {', '.join(CHECKS)})", key=KEY)
    return SkippedChecks(given)


def tls_context(ctx: ssl.SSLContext, skipped: SkippedChecks) -> ssl.SSLContext:
    """Return ``ctx``; with ``crl`` switched off, its handshakes no longer consult the CRLs."""
    if "crl" in skipped.names:
        ctx.verify_flags &= ~ssl.VERIFY_CRL_CHECK_CHAIN
    return ctx


def count_revoked(skipped: SkippedChecks, peer: tls.Peer, crls: Iterable[Path]) -> None:
    """With ``crl`` off, count a served peer whose certificate one of ``crls`` lists."""
    if "crl" not in skipped.names:
        return
    serial = int(peer.serial, 16)
    for path in crls:
        try:
            listed = pki.read_crls(path)
        except ConfigError:  # a CRL file being replaced: nothing to count from it
            continue
        for crl in listed:
            issuer = crl.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
            named = bool(issuer) and issuer[0].value == peer.issuer
            if named and crl.get_revoked_certificate_by_serial_number(serial) is not None:
                skipped.skips("crl")
                return


def strip_crcs_unchecked(frame: bytes) -> bytes:
    """Remove the block CRCs of a format A frame without checking them.

    Layout: ``L C M(2) A(6)`` + CRC(2), then blocks of 16 data bytes (the last one
    shorter) each followed by its CRC(2).

    Raises:
        ProtocolError: ``bad_length`` when the frame's size does not fit its L-field.
    """
    if not frame or len(frame) != format_a_size(frame[0]) or frame[0] < HEADER_SIZE - 1:
        raise ProtocolError("frame size does not fit its L-field", reason="bad_length")
    parts = [frame[:HEADER_SIZE]]
    pos, left = HEADER_SIZE + 2, frame[0] - (HEADER_SIZE - 1)
    while left > 0:
        take = min(left, BLOCK_SIZE)
        parts.append(frame[pos : pos + take])
        pos, left = pos + take + 2, left - take
    return b"".join(parts)


def open_unverified(plain: bytes, key: bytes) -> tuple[bytes, int, int]:
    """Decrypt a mode 5/7 frame (format A, CRCs stripped) without verifying anything.

    Returns:
        The plaintext APL, the access number and the mode-7 message counter (else 0).

    Raises:
        ProtocolError: the frame is not mode 5/7 with a TPL in clear, or the key is unusable.
    """
    telegram = decode_telegram(plain, crcs=False, records=False)
    tpl = telegram.tpl
    if tpl is None or tpl.config is None or tpl.security_mode not in (5, 7):
        raise ProtocolError("no mode 5/7 payload to open", reason="wrong_key")
    size = tpl.config.encrypted_blocks * BLOCK
    secret, rest = telegram.payload[:size], telegram.payload[size:]
    access = tpl.access_number or 0
    try:
        if tpl.security_mode == 5:
            return cbc_decrypt(key, mode5_iv(telegram.address, access), secret) + rest, access, 0
        counter = telegram.afl.counter if telegram.afl is not None else None
        if counter is None:
            raise ProtocolError("mode 7 needs the AFL message counter", reason="no_counter")
        ident = telegram.address.ident
        kenc = derive_key(key, constant=DC_ENC_FROM_METER, counter=counter, ident=ident)
        return cbc_decrypt(kenc, ZERO_IV, secret) + rest, access, counter
    except ValueError as exc:  # a key that is not 16 bytes, a payload cut inside a block
        raise ProtocolError(f"cannot open the payload: {exc}", reason="wrong_key") from exc
