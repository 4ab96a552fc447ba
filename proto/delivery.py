"""TAF delivery from a gateway to an EMT: signed batches, replies and their framing on TLS.

Framing (inside a mutually authenticated TLS 1.2 connection the gateway opens):
every message is a 4-byte big-endian unsigned length ``N`` (1 <= N <= :data:`MAX_FRAME`)
followed by ``N`` bytes of a UTF-8 JSON object. The gateway sends a delivery, the EMT
answers it with an acknowledgement or a refusal, then the gateway may send the next one
on the same connection.

Delivery (gateway -> EMT)::

    {"type": "taf.delivery", "version": 1,
     "content": base64(CONTENT), "hash": "sha256",
     "signature": base64(DER ECDSA-Sig-Value over CONTENT),
     "chain": [PEM of the signer certificate, PEM of its sub-CA, ...]}

``CONTENT`` is the canonical JSON (:func:`canonical`: keys sorted, no spaces, UTF-8,
no NaN/Infinity) of ``{"gateway": NAME, "emt": NAME, "sent": s since the epoch,
"records": [{"id", "taf", "meter", "payload", "created"}, ...]}``. The signature is
detached and covers exactly these bytes, so a verifier checks them as received and
never re-serialises; an EMT keeps content, signature and chain as evidence. The hash
follows the signer key's size (<= 256 bits SHA-256, <= 384 SHA-384, else SHA-512),
and ``hash`` must name it.

Replies (EMT -> gateway)::

    {"type": "taf.ack", "version": 1, "accepted": [id, ...],
     "refused": [{"id": id, "reason": REASON}, ...]}
    {"type": "taf.refused", "version": 1, "reason": REASON, "detail": TEXT}

``accepted`` lists every record the EMT now holds, including ones it had before
(a resent record is acknowledged again). ``taf.refused`` refuses the whole batch
(:class:`Refusal` names the reasons).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from smtestbed.services._runtime.errors import ProtocolError

__all__ = [
    "MAX_FRAME",
    "VERSION",
    "Ack",
    "BatchContent",
    "BatchRefused",
    "DeliveredRecord",
    "Refusal",
    "SignedBatch",
    "canonical",
    "decode_reply",
    "encode_frame",
    "hash_name",
    "read_message",
    "sign_batch",
    "signature_valid",
]

VERSION = 1
MAX_FRAME = 16 * 1024 * 1024
DELIVERY, ACK, REFUSED = "taf.delivery", "taf.ack", "taf.refused"
_HEADER = struct.Struct(">I")


class Refusal(StrEnum):
    """Why an EMT refuses a batch (``taf.refused``) or one of its records (in ``taf.ack``)."""

    MALFORMED = "malformed"  # not a delivery, bad base64, bad content
    BAD_SIGNATURE = "bad_signature"  # the signature does not match the content
    UNTRUSTED = "untrusted"  # no path to the SM-PKI root, or a bad chain
    REVOKED = "revoked"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    NO_REVOCATION_INFO = "no_revocation_info"  # a CRL is missing or past nextUpdate
    WRONG_ROLE = "wrong_role"  # the signer is no gateway signature certificate
    WRONG_GATEWAY = "wrong_gateway"  # content or TLS peer name another gateway
    WRONG_EMT = "wrong_emt"  # the batch is for another market participant
    METER_NOT_OF_GATEWAY = "meter_not_of_gateway"  # per record: the meter is another's


class Reader(Protocol):
    """What :func:`read_message` needs of a stream (``asyncio.StreamReader``)."""

    async def readexactly(self, n: int) -> bytes:
        """Return exactly ``n`` bytes; raise ``IncompleteReadError`` at EOF."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveredRecord:
    """One queued TAF record as delivered: queue id, TAF, meter, payload, queue time (s)."""

    id: int
    taf: str
    meter: str
    payload: Any
    created: float

    def to_map(self) -> dict[str, Any]:
        """Return the record as the content lists it."""
        return {
            "id": self.id,
            "taf": self.taf,
            "meter": self.meter,
            "payload": self.payload,
            "created": self.created,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchContent:
    """What a delivery's signature covers."""

    gateway: str
    emt: str
    sent: float
    records: tuple[DeliveredRecord, ...]

    def to_bytes(self) -> bytes:
        """Return the canonical JSON bytes that are signed."""
        records = [r.to_map() for r in self.records]
        body = {"gateway": self.gateway, "emt": self.emt, "sent": self.sent, "records": records}
        return canonical(body)

    @classmethod
    def from_bytes(cls, data: bytes) -> BatchContent:
        """Parse signed content; anything but the documented shape is a ProtocolError."""
        raw = _json_object(data, "content")
        records = raw.get("records")
        if not isinstance(records, list):
            raise ProtocolError("content: records must be a list", reason="malformed")
        return cls(
            gateway=_text(raw, "gateway"),
            emt=_text(raw, "emt"),
            sent=_number(raw, "sent"),
            records=tuple(_record(r) for r in records),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedBatch:
    """A delivery as sent: content bytes, detached signature (DER) and signer chain."""

    content: bytes
    signature: bytes
    chain: tuple[x509.Certificate, ...]
    hash: str

    def to_map(self) -> dict[str, Any]:
        """Return the ``taf.delivery`` message."""
        return {
            "type": DELIVERY,
            "version": VERSION,
            "content": base64.b64encode(self.content).decode(),
            "hash": self.hash,
            "signature": base64.b64encode(self.signature).decode(),
            "chain": [c.public_bytes(Encoding.PEM).decode() for c in self.chain],
        }

    @classmethod
    def from_map(cls, raw: dict[str, Any]) -> SignedBatch:
        """Read a ``taf.delivery`` message; a wrong shape is a ProtocolError."""
        _check_type(raw, DELIVERY)
        chain = raw.get("chain")
        if not isinstance(chain, list) or not chain or not all(isinstance(c, str) for c in chain):
            raise ProtocolError("delivery: chain must be a list of PEM texts", reason="malformed")
        try:
            certs = tuple(x509.load_pem_x509_certificate(c.encode()) for c in chain)
        except ValueError as exc:
            raise ProtocolError(f"delivery: bad certificate: {exc}", reason="malformed") from exc
        return cls(
            content=_b64(raw, "content"),
            signature=_b64(raw, "signature"),
            chain=certs,
            hash=_text(raw, "hash"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    """An EMT's acknowledgement: ids it holds, and ids it refused with the reason."""

    accepted: tuple[int, ...]
    refused: tuple[tuple[int, str], ...] = ()

    def to_map(self) -> dict[str, Any]:
        """Return the ``taf.ack`` message."""
        refused = [{"id": i, "reason": r} for i, r in self.refused]
        return {
            "type": ACK,
            "version": VERSION,
            "accepted": list(self.accepted),
            "refused": refused,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchRefused:
    """An EMT's refusal of a whole batch."""

    reason: str
    detail: str

    def to_map(self) -> dict[str, Any]:
        """Return the ``taf.refused`` message."""
        return {"type": REFUSED, "version": VERSION, "reason": self.reason, "detail": self.detail}


def canonical(value: Any) -> bytes:
    """Return ``value`` as canonical JSON: sorted keys, no spaces, UTF-8, finite numbers only.

    Raises:
        ProtocolError: the value holds NaN, an infinity or something JSON cannot say.
    """
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"not canonical JSON: {exc}", reason="malformed") from exc
    return text.encode()


def hash_name(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> str:
    """Return the hash that goes with the key's size: sha256, sha384 or sha512."""
    size = key.curve.key_size
    return "sha256" if size <= 256 else "sha384" if size <= 384 else "sha512"


_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def sign_batch(
    content: BatchContent, key: ec.EllipticCurvePrivateKey, chain: Sequence[x509.Certificate]
) -> SignedBatch:
    """Sign ``content`` with the gateway's signature key; ``chain`` starts with its certificate."""
    data = content.to_bytes()
    name = hash_name(key)
    signature = key.sign(data, ec.ECDSA(_HASHES[name]()))
    return SignedBatch(content=data, signature=signature, chain=tuple(chain), hash=name)


def signature_valid(batch: SignedBatch) -> bool:
    """Tell whether the signature matches the content under the first certificate's key.

    False also when that key is no EC key or ``hash`` is not the one its size asks for.
    """
    key = batch.chain[0].public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or batch.hash != hash_name(key):
        return False
    try:
        key.verify(batch.signature, batch.content, ec.ECDSA(_HASHES[batch.hash]()))
    except InvalidSignature:
        return False
    return True


def decode_reply(raw: dict[str, Any]) -> Ack | BatchRefused:
    """Read an EMT's reply; a wrong shape is a ProtocolError."""
    kind = raw.get("type")
    if kind == REFUSED:
        _check_type(raw, REFUSED)
        return BatchRefused(reason=_text(raw, "reason"), detail=str(raw.get("detail", "")))
    _check_type(raw, ACK)
    accepted, refused = raw.get("accepted"), raw.get("refused", [])
    if not isinstance(accepted, list) or not all(_is_id(i) for i in accepted):
        raise ProtocolError("ack: accepted must be a list of ids", reason="malformed")
    if not isinstance(refused, list) or not all(_refused_item(r) for r in refused):
        raise ProtocolError("ack: refused must be a list of {id, reason}", reason="malformed")
    return Ack(accepted=tuple(accepted), refused=tuple((r["id"], r["reason"]) for r in refused))


def encode_frame(message: dict[str, Any]) -> bytes:
    """Return ``message`` framed: 4-byte big-endian length, then its JSON."""
    body = json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"message of {len(body)} bytes exceeds {MAX_FRAME}", reason="too_long")
    return _HEADER.pack(len(body)) + body


async def read_message(reader: Reader) -> dict[str, Any]:
    """Read one framed JSON object.

    Raises:
        asyncio.IncompleteReadError: the stream ended (at or inside a frame).
        ProtocolError: a length of 0 or above :data:`MAX_FRAME`, or no JSON object.
    """
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if not 0 < size <= MAX_FRAME:
        raise ProtocolError(f"frame length {size} out of range", reason="bad_length")
    return _json_object(await reader.readexactly(size), "frame")


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        raw = json.loads(data.decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"{what}: not JSON: {exc}", reason="malformed") from exc
    if not isinstance(raw, dict):
        raise ProtocolError(f"{what}: not a JSON object", reason="malformed")
    return raw


def _check_type(raw: dict[str, Any], kind: str) -> None:
    if raw.get("type") != kind or raw.get("version") != VERSION:
        found = (raw.get("type"), raw.get("version"))
        raise ProtocolError(f"expected {kind} version {VERSION}, got {found}", reason="malformed")


def _text(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"{key} must be a non-empty string", reason="malformed")
    return value


def _number(raw: dict[str, Any], key: str) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProtocolError(f"{key} must be a finite number", reason="malformed")
    return float(value)


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


def _refused_item(item: Any) -> bool:
    return isinstance(item, dict) and _is_id(item.get("id")) and isinstance(item.get("reason"), str)


def _b64(raw: dict[str, Any], key: str) -> bytes:
    try:
        return base64.b64decode(_text(raw, key), validate=True)
    except binascii.Error as exc:
        raise ProtocolError(f"{key} is not base64: {exc}", reason="malformed") from exc


def _record(raw: Any) -> DeliveredRecord:
    if not isinstance(raw, dict) or not _is_id(raw.get("id")) or "payload" not in raw:
        raise ProtocolError("content: each record needs an id and a payload", reason="malformed")
    return DeliveredRecord(
        id=raw["id"],
        taf=_text(raw, "taf"),
        meter=_text(raw, "meter"),
        payload=raw["payload"],
        created=_number(raw, "created"),
    )
