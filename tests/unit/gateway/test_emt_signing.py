"""Signed TAF deliveries: the gateway's signature and what the EMT checks before it accepts.

Certificates come from a real test SM-PKI made in-process with :class:`Authority`
(brainpool root and sub-CAs, CRLs on disk); the EMT side validates with CRLs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from smtestbed.proto.delivery import (
    MAX_FRAME,
    Ack,
    BatchContent,
    BatchRefused,
    DeliveredRecord,
    Refusal,
    SignedBatch,
    canonical,
    decode_reply,
    encode_frame,
    read_message,
    sign_batch,
)
from smtestbed.services._runtime.errors import ConfigError, ProtocolError
from smtestbed.services._runtime.pki import TrustFiles
from smtestbed.services.ca.access import Requester
from smtestbed.services.ca.authority import Authority
from smtestbed.services.gateway.emt_delivery import EmtEndpoint, load_signer, parse_endpoints
from smtestbed.services.wan.emt_store import EmtStore
from smtestbed.services.wan.emt_verify import (
    DeliveryRefusedError,
    VerifiedBatch,
    verify_delivery,
)

from tests.unit.ca.ca_helpers import issue_with_token, make_key, new_authority

GATEWAY = "gw0.smgw.test.example"
EMT = "emt-1"


@dataclass(frozen=True, slots=True)
class Signer:
    """A signing key and the chain that goes with it (its certificate first)."""

    key: ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...]


def signer(authority: Authority, profile: str = "smgw-sig", name: str = GATEWAY) -> Signer:
    """Issue a certificate of ``profile`` for ``name`` and return its key and chain."""
    key = make_key()
    issued = issue_with_token(authority, profile, name, key)
    return Signer(key, (issued.certificate, *issued.chain[:-1]))


def trust(folder: Path) -> TrustFiles:
    """Return the EMT's trust material: root, sub-CA certificates and every CRL of the CA."""
    return TrustFiles(
        trust_roots=[folder / "certs/root.pem"],
        intermediates=[folder / "certs/smgw.pem"],
        crls=sorted((folder / "crl").glob("*.crl.pem")),
    )


def content(gateway: str = "gw0", emt: str = EMT) -> BatchContent:
    """Return a batch of two records, one TAF7 profile with floats and one TAF1 value."""
    profile = {"taf": "taf7", "unit": "Wh", "values": [{"start": 0.0, "delta": 0.1 + 0.2}]}
    records = (
        DeliveredRecord(id=7, taf="taf7", meter="12345678", payload=profile, created=1.5),
        DeliveredRecord(id=9, taf="taf1", meter="87654321", payload={"value": 42}, created=2.0),
    )
    return BatchContent(gateway=gateway, emt=emt, sent=1_700_000_000.25, records=records)


def verify(message: dict[str, Any], folder: Path, *, peer: str | None = GATEWAY) -> VerifiedBatch:
    """Run the EMT's checks on ``message`` now."""
    return asyncio.run(
        verify_delivery(message, trust=trust(folder), emt=EMT, peer=peer, at=datetime.now(UTC))
    )


def refusal(message: dict[str, Any], folder: Path, *, peer: str | None = GATEWAY) -> Refusal:
    """Return the reason the EMT refuses ``message`` (fails the test if it accepts)."""
    with pytest.raises(DeliveryRefusedError) as caught:
        verify(message, folder, peer=peer)
    return caught.value.reason


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    """A brainpool test SM-PKI on disk."""
    return new_authority(tmp_path_factory.mktemp("pki") / "ca")


@pytest.fixture(scope="module")
def gateway(pki: Authority) -> Signer:
    """The gateway's signature key and certificate chain (profile smgw-sig)."""
    return signer(pki)


def test_a_signed_batch_verifies_and_yields_its_records(pki: Authority, gateway: Signer) -> None:
    """The EMT accepts a batch signed by a gateway signature certificate of the SM-PKI."""
    message = sign_batch(content(), gateway.key, gateway.chain).to_map()
    verified = verify(message, pki.store.folder)
    assert verified.gateway == GATEWAY
    assert verified.signer_serial == f"{gateway.chain[0].serial_number:x}"
    assert verified.content == content()
    assert verified.content.records[0].payload["values"][0]["delta"] == 0.1 + 0.2


def test_content_is_canonical_json_and_the_signature_covers_exactly_it(gateway: Signer) -> None:
    """Content bytes are sorted, space-free JSON; the message carries them in base64."""
    batch = sign_batch(content(), gateway.key, gateway.chain)
    assert batch.content.startswith(b'{"emt":"emt-1","gateway":"gw0","records":[{"created":1.5,')
    assert batch.content == canonical(json.loads(batch.content))
    message = batch.to_map()
    assert base64.b64decode(message["content"]) == batch.content
    assert message["hash"] == "sha256"
    assert SignedBatch.from_map(message) == batch


def test_a_tampered_payload_is_refused_as_bad_signature(pki: Authority, gateway: Signer) -> None:
    """One changed digit in a payload breaks the signature."""
    batch = sign_batch(content(), gateway.key, gateway.chain)
    forged = batch.content.replace(b'"value":42', b'"value":43')
    assert forged != batch.content
    message = {**batch.to_map(), "content": base64.b64encode(forged).decode()}
    assert refusal(message, pki.store.folder) is Refusal.BAD_SIGNATURE


def test_a_signer_of_a_foreign_pki_is_refused_as_untrusted(pki: Authority, tmp_path: Path) -> None:
    """A valid signature by a certificate of another CA with the same names is not trusted."""
    foreign = signer(new_authority(tmp_path / "foreign"))
    message = sign_batch(content(), foreign.key, foreign.chain).to_map()
    assert refusal(message, pki.store.folder) is Refusal.UNTRUSTED


def test_a_revoked_signer_certificate_is_refused(pki: Authority) -> None:
    """After revocation and the new CRL the same kind of batch is refused as revoked."""
    doomed = signer(pki)
    message = sign_batch(content(), doomed.key, doomed.chain).to_map()
    assert verify(message, pki.store.folder).gateway == GATEWAY
    pki.revoke(doomed.chain[0].serial_number, "keyCompromise", Requester(admin=True))
    assert refusal(message, pki.store.folder) is Refusal.REVOKED


@pytest.mark.parametrize("profile", ["smgw-tls", "smgw-enc", "emt-sig", "gwa-sig"])
def test_a_signer_certificate_of_another_role_is_refused(pki: Authority, profile: str) -> None:
    """Only the gateway's signature certificate may sign: not its TLS or ENC one, no EMT's."""
    other = signer(pki, profile)
    message = sign_batch(content(), other.key, other.chain).to_map()
    assert refusal(message, pki.store.folder) is Refusal.WRONG_ROLE


def test_a_batch_for_another_emt_is_refused(pki: Authority, gateway: Signer) -> None:
    """The content names the EMT it is for; another EMT refuses it."""
    message = sign_batch(content(emt="emt-2"), gateway.key, gateway.chain).to_map()
    assert refusal(message, pki.store.folder) is Refusal.WRONG_EMT


def test_a_batch_naming_another_gateway_or_from_another_tls_peer_is_refused(
    pki: Authority, gateway: Signer
) -> None:
    """The content's gateway must be the signer (CN or first label), and so the TLS peer."""
    wrong_name = sign_batch(content(gateway="gw1"), gateway.key, gateway.chain).to_map()
    assert refusal(wrong_name, pki.store.folder) is Refusal.WRONG_GATEWAY
    good = sign_batch(content(gateway=GATEWAY), gateway.key, gateway.chain).to_map()
    assert verify(good, pki.store.folder, peer=None).gateway == GATEWAY
    assert refusal(good, pki.store.folder, peer="gw1.smgw.test.example") is Refusal.WRONG_GATEWAY


def test_a_stale_crl_refuses_every_batch(tmp_path: Path) -> None:
    """Certificate status must be known: past the CRLs' nextUpdate nothing is accepted."""
    authority = new_authority(tmp_path / "ca")
    gw = signer(authority)
    message = sign_batch(content(), gw.key, gw.chain).to_map()
    later = datetime.fromtimestamp(datetime.now(UTC).timestamp() + 2 * 86_400, UTC)
    with pytest.raises(DeliveryRefusedError) as caught:
        asyncio.run(
            verify_delivery(
                message, trust=trust(authority.store.folder), emt=EMT, peer=None, at=later
            )
        )
    assert caught.value.reason is Refusal.NO_REVOCATION_INFO


@pytest.mark.parametrize(
    "change",
    [
        {"type": "taf.ack"},
        {"version": 2},
        {"content": "not base64!"},
        {"chain": []},
        {"chain": ["-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"]},
    ],
)
def test_malformed_deliveries_are_refused_as_malformed(
    pki: Authority, gateway: Signer, change: dict[str, Any]
) -> None:
    """A message that is no well-formed delivery is refused before any crypto."""
    message = {**sign_batch(content(), gateway.key, gateway.chain).to_map(), **change}
    assert refusal(message, pki.store.folder) is Refusal.MALFORMED


def test_replies_round_trip_and_bad_ones_raise() -> None:
    """Acks and refusals decode to what was encoded; an ack without ids is a ProtocolError."""
    ack = Ack(accepted=(1, 2), refused=((3, "meter_not_of_gateway"),))
    assert decode_reply(ack.to_map()) == ack
    refused = BatchRefused(reason="revoked", detail="certificate revoked")
    assert decode_reply(refused.to_map()) == refused
    with pytest.raises(ProtocolError):
        decode_reply({"type": "taf.ack", "version": 1, "accepted": [True]})


def test_frames_carry_one_json_object_and_bad_lengths_raise() -> None:
    """A frame is a 4-byte big-endian length and JSON; 0 or too long is a ProtocolError."""

    async def read(data: bytes) -> dict[str, Any]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await read_message(reader)

    frame = encode_frame({"a": [1, 2.5]})
    assert frame[:4] == struct.pack(">I", len(frame) - 4)
    assert asyncio.run(read(frame)) == {"a": [1, 2.5]}
    for bad in (struct.pack(">I", 0), struct.pack(">I", MAX_FRAME + 1), b"\0\0\0\x02[]"):
        with pytest.raises(ProtocolError):
            asyncio.run(read(bad))
    with pytest.raises(asyncio.IncompleteReadError):
        asyncio.run(read(frame[:-1]))


def test_the_emt_store_keeps_a_resent_record_once_and_acknowledges_it_again(
    pki: Authority, gateway: Signer, tmp_path: Path
) -> None:
    """Dedup by (gateway, id): the second delivery stores nothing new, acks both ids again."""
    store = EmtStore(tmp_path / "emt.sqlite")
    verified = verify(sign_batch(content(), gateway.key, gateway.chain).to_map(), pki.store.folder)
    first = store.accept(verified, received=1.0, bindings={})
    second = store.accept(verified, received=2.0, bindings={})
    assert (first.accepted, first.new, first.refused) == ((7, 9), 2, ())
    assert (second.accepted, second.new, second.refused) == ((7, 9), 0, ())
    rows = store.records()
    assert [(r["gateway"], r["id"], r["received"]) for r in rows] == [
        (GATEWAY, 7, 1.0),
        (GATEWAY, 9, 1.0),
    ]
    assert rows[0]["payload"] == content().records[0].payload
    assert store.records(meter="87654321", taf="taf1")[0]["payload"] == {"value": 42}
    store.close()


def test_a_meter_is_accepted_only_from_its_gateway(pki: Authority, tmp_path: Path) -> None:
    """First delivery binds a meter; a configured binding wins; others are refused per record."""
    store = EmtStore(tmp_path / "emt.sqlite")
    gw0, gw1 = signer(pki), signer(pki, name="gw1.smgw.test.example")
    batch0 = verify(sign_batch(content(), gw0.key, gw0.chain).to_map(), pki.store.folder)
    message1 = sign_batch(content(gateway="gw1"), gw1.key, gw1.chain).to_map()
    batch1 = verify(message1, pki.store.folder, peer="gw1.smgw.test.example")
    configured = {"87654321": "gw1.smgw.test.example"}
    assert store.accept(batch0, received=1.0, bindings=configured).refused == (
        (9, "meter_not_of_gateway"),
    )
    outcome = store.accept(batch1, received=2.0, bindings=configured)
    assert outcome.accepted == (9,)
    assert outcome.refused == ((7, "meter_not_of_gateway"),)
    held = [(r["gateway"], r["meter"]) for r in store.records()]
    assert held == [(GATEWAY, "12345678"), ("gw1.smgw.test.example", "87654321")]
    store.close()


def test_emt_endpoints_are_read_from_tables_and_bad_ones_name_their_entry() -> None:
    """``{emt, url = "tls://HOST:PORT", server_name}``; anything else is a ConfigError."""
    tables = [{"emt": EMT, "url": "tls://127.0.0.1:8700", "server_name": "emt1.emt.test.example"}]
    assert parse_endpoints(tables) == (
        EmtEndpoint(emt=EMT, host="127.0.0.1", port=8700, server_name="emt1.emt.test.example"),
    )
    bad: list[list[dict[str, Any]]] = [
        [{"emt": EMT, "url": "tcp://127.0.0.1:8700"}],
        [{"emt": EMT, "url": "tls://127.0.0.1"}],
        [{"url": "tls://127.0.0.1:1"}],
        [{"emt": EMT, "url": "tls://127.0.0.1:1", "port": 2}],
        [{"emt": EMT, "url": "tls://127.0.0.1:1"}, {"emt": EMT, "url": "tls://127.0.0.1:2"}],
    ]
    for entry in bad:
        with pytest.raises(ConfigError, match="emt_endpoints"):
            parse_endpoints(entry)


def test_the_signer_loads_certificate_chain_and_key_and_refuses_a_foreign_key(
    pki: Authority, tmp_path: Path
) -> None:
    """load_signer reads PEM files; a key that is not the certificate's is a ConfigError."""
    own = signer(pki)
    cert, key, sub = tmp_path / "sig.pem", tmp_path / "sig.key", tmp_path / "sub.pem"
    cert.write_bytes(own.chain[0].public_bytes(serialization.Encoding.PEM))
    sub.write_bytes(own.chain[1].public_bytes(serialization.Encoding.PEM))
    key.write_bytes(_pem_key(own.key))
    loaded = load_signer(cert, key, [sub])
    assert loaded.chain == own.chain
    key.write_bytes(_pem_key(make_key()))
    with pytest.raises(ConfigError, match="is not the key of"):
        load_signer(cert, key, [sub])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
