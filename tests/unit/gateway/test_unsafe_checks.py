"""The gateway's test-only switches (``unsafe_skip_checks``): each check fires normally and
not when switched off, and the suppressed firing is counted."""

from __future__ import annotations

import dataclasses
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from smtestbed.proto.wmbus import decode_telegram, encode_telegram
from smtestbed.proto.wmbus.link import add_crcs_a
from smtestbed.services._runtime import tls
from smtestbed.services._runtime.config import load_config
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.gateway.config import GatewayConfig
from smtestbed.services.gateway.instance import GatewayInstance
from smtestbed.services.gateway.processing import Pipeline, Plausibility
from smtestbed.services.gateway.schema import MeterEntry, MeterState, Reading, Reason, Rejection
from smtestbed.services.gateway.service import Gateway
from smtestbed.services.gateway.unsafe import (
    CHECKS,
    SkippedChecks,
    count_revoked,
    parse,
    tls_context,
)

from tests.unit.gateway.test_processing import (
    KEY,
    METER,
    OTHER_KEY,
    entry,
    frame,
    records,
    state,
    telegram,
)


def run(
    data: bytes,
    *,
    skip: tuple[str, ...] = (),
    registered: MeterEntry | None = None,
    before: MeterState | None = None,
    unregistered: bool = False,
) -> tuple[Reading | Rejection, SkippedChecks]:
    """Process one frame through a Pipeline with ``skip`` switched off."""
    known = registered or entry()
    skipped = parse(skip)
    pipeline = Pipeline(
        lambda meter: None if unregistered or meter != METER else known,
        lambda meter: before,
        Plausibility(),
        skipped,
    )
    outcome = pipeline.process([(data, 60.0)])
    results: list[Reading | Rejection] = [*outcome.accepted, *outcome.rejected]
    assert len(results) == 1
    return results[0], skipped


def reason(result: Reading | Rejection) -> Reason | None:
    """Return the rejection reason, None for an accepted reading."""
    return result.reason if isinstance(result, Rejection) else None


def energy(result: Reading | Rejection) -> float:
    """Return the energy total of an accepted reading."""
    assert isinstance(result, Reading), result
    return next(v.value for v in result.values if v.quantity == "energy")


def without_2f2f(mode: int) -> bytes:
    """Return a frame sealed with the right key whose plaintext lacks the 2F 2F check bytes."""
    built = dataclasses.replace(telegram(mode), application_data=records())
    return encode_telegram(built, key=KEY)


def forged_mac() -> bytes:
    """Return a mode-7 frame whose ciphertext is intact but whose AFL MAC is altered."""
    plain = bytearray(encode_telegram(telegram(7), key=KEY, crcs=False))
    mac = decode_telegram(bytes(plain), crcs=False, records=False).afl.mac  # type: ignore[union-attr]
    assert mac is not None
    at = bytes(plain).index(mac)
    plain[at] ^= 0x01
    return add_crcs_a(bytes(plain))


@pytest.mark.parametrize("mode", [5, 7])
def test_mac_off_processes_a_frame_without_2f2f_as_verified(mode: int) -> None:
    """Without 2F 2F the frame is wrong_key; with ``mac`` off it is accepted, counted once."""
    data = without_2f2f(mode)
    refused, skipped = run(data, registered=entry(mode))
    assert reason(refused) is Reason.WRONG_KEY
    assert skipped.total == 0
    accepted, skipped = run(data, skip=("mac",), registered=entry(mode))
    assert energy(accepted) == 123_456
    assert skipped.counts == {"mac": 1}


def test_mac_off_accepts_a_forged_mode7_mac() -> None:
    """A wrong AFL MAC is bad_mac; with ``mac`` off the intact payload is accepted."""
    refused, _ = run(forged_mac(), registered=entry(7))
    assert reason(refused) is Reason.BAD_MAC
    accepted, skipped = run(forged_mac(), skip=("mac",), registered=entry(7))
    assert energy(accepted) == 123_456
    assert skipped.total == 1


def test_mac_off_with_another_key_no_longer_rejects_as_wrong_key() -> None:
    """Under another key the unverified plaintext is garbage: the later record check
    refuses it, not the key check."""
    result, skipped = run(frame(5, key=OTHER_KEY), skip=("mac",))
    assert reason(result) is not Reason.WRONG_KEY
    assert skipped.counts == {"mac": 1}


def test_replay_off_accepts_a_repeated_access_number() -> None:
    """The same access number as the last accepted is a replay; with ``replay`` off it is
    accepted."""
    data = frame(access=7)
    refused, _ = run(data, before=state(access=7, energy=1.0))
    assert reason(refused) is Reason.REPLAY
    accepted, skipped = run(data, skip=("replay",), before=state(access=7, energy=1.0))
    assert energy(accepted) == 123_456
    assert skipped.counts == {"replay": 1}


def test_counter_backwards_off_accepts_a_lower_total() -> None:
    """A total below the last accepted goes backwards; with the check off it is accepted."""
    before = state(access=6, energy=200_000.0)
    refused, _ = run(frame(access=7), before=before)
    assert reason(refused) is Reason.COUNTER_BACKWARDS
    accepted, skipped = run(frame(access=7), skip=("counter_backwards",), before=before)
    assert energy(accepted) == 123_456
    assert skipped.counts == {"counter_backwards": 1}


def flipped_energy_bit(bit: int = 1) -> bytes:
    """Return a mode-0 frame whose energy value (123456 Wh) has one bit flipped on air."""
    data = bytearray(frame(0))
    at = bytes(data).index((123_456).to_bytes(4, "little"))
    data[at] ^= 1 << bit
    return bytes(data)


def test_crc_off_accepts_a_frame_with_a_bit_error_and_stores_the_wrong_value() -> None:
    """A bit error in a data block is bad_crc; with ``crc`` off the frame goes on through
    the other checks and its altered energy is accepted."""
    refused, skipped = run(flipped_energy_bit(), registered=entry(0))
    assert reason(refused) is Reason.BAD_CRC
    assert skipped.total == 0
    accepted, skipped = run(flipped_energy_bit(), skip=("crc",), registered=entry(0))
    assert energy(accepted) == 123_456 ^ 2
    assert skipped.counts == {"crc": 1}


def test_crc_off_still_refuses_a_frame_cut_short() -> None:
    """With ``crc`` off a frame whose size does not fit its L-field keeps its refusal and
    nothing is counted as skipped."""
    cut = flipped_energy_bit()[:-3]
    refused, _ = run(cut, registered=entry(0))
    result, skipped = run(cut, skip=("crc",), registered=entry(0))
    assert isinstance(result, Rejection)
    assert reason(result) is reason(refused) is Reason.BAD_CRC
    assert skipped.total == 0


def test_one_switch_leaves_the_other_checks_on() -> None:
    """With ``counter_backwards`` off a replay is still refused and nothing is counted."""
    result, skipped = run(
        frame(access=7), skip=("counter_backwards",), before=state(access=7, energy=200_000.0)
    )
    assert reason(result) is Reason.REPLAY
    assert skipped.total == 0


def test_unknown_meter_off_stores_an_unregistered_meter_under_its_id(tmp_path: Path) -> None:
    """An unregistered mode-0 meter is unknown_meter; with the check off its reading is
    stored under its ID."""
    normal = GatewayInstance("gw0", tmp_path / "normal", synchronous="NORMAL")
    off = GatewayInstance(
        "gw0", tmp_path / "off", synchronous="NORMAL", skipped=parse(["unknown_meter"])
    )
    try:
        refused = normal.ingest([(frame(0), 60.0)])
        assert [r.reason for r in refused.rejected] == [Reason.UNKNOWN_METER]
        assert normal.store.readings(METER) == []
        stored = off.ingest([(frame(0), 60.0)])
        assert [r.meter for r, _ in stored.accepted] == [METER]
        assert [r.meter for _, r in off.store.readings(METER)] == [METER]
        assert off.skipped.counts == {"unknown_meter": 1}
    finally:
        normal.close()
        off.close()


def test_unknown_meter_off_does_not_open_an_encrypted_frame_without_a_key() -> None:
    """An unregistered meter has no key: its mode-5 frame still fails decryption."""
    result, skipped = run(frame(5), skip=("unknown_meter",), unregistered=True)
    assert reason(result) is Reason.WRONG_KEY
    assert skipped.counts == {"unknown_meter": 1}


def test_an_unknown_check_name_is_a_config_error_naming_the_setting(tmp_path: Path) -> None:
    """A name that is no check is refused at start, naming gateway.unsafe_skip_checks."""
    with pytest.raises(ConfigError, match=r"^gateway\.unsafe_skip_checks: unknown check 'macs'"):
        parse(["mac", "macs"])
    config = load_config(
        GatewayConfig,
        "gateway",
        env={"SMTB_GATEWAY_UNSAFE_SKIP_CHECKS": "replay,nope"},
        overrides={"data_dir": str(tmp_path)},
    )
    assert config.unsafe_skip_checks == ("replay", "nope")
    with pytest.raises(ConfigError, match=r"^gateway\.unsafe_skip_checks"):
        Gateway(config)


def test_every_switchable_check_name_is_accepted() -> None:
    """All ten names parse, crl among them; the default switches nothing off."""
    assert parse(CHECKS).names == frozenset(CHECKS)
    assert len(CHECKS) == 10
    assert "crl" in parse(["mac", "crl"]).names
    assert not parse(GatewayConfig().unsafe_skip_checks)


def _crl_listing(folder: Path, issuer: str, serial: int) -> Path:
    """Write a PEM CRL of CA ``issuer`` that lists ``serial``; return its path."""
    key = ec.generate_private_key(ec.BrainpoolP256R1())
    now = datetime.now(UTC)
    revoked = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .last_update(now)
        .next_update(now + timedelta(days=1))
        .add_revoked_certificate(revoked)
        .sign(key, hashes.SHA256())
    )
    path = folder / f"{issuer.replace(' ', '-')}.crl.pem"
    path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return path


def _peer(serial: int, issuer: str) -> tls.Peer:
    return tls.Peer(
        role="GWA", common_name="gwa1.emt.test.example", serial=f"{serial:x}", issuer=issuer
    )


def test_crl_switched_off_counts_only_a_peer_its_issuers_crl_lists(tmp_path: Path) -> None:
    """A served peer is counted when its issuer's CRL lists its serial; not otherwise."""
    crl = _crl_listing(tmp_path, "Test EMT Sub-CA", 0x5F3A)
    other = _crl_listing(tmp_path, "Test SMGW Sub-CA", 0x77)
    skipped = SkippedChecks(["crl"])
    count_revoked(skipped, _peer(0x5F3B, "Test EMT Sub-CA"), [crl, other])  # not listed
    count_revoked(skipped, _peer(0x77, "Test EMT Sub-CA"), [crl, other])  # other CA's serial
    assert skipped.total == 0
    count_revoked(skipped, _peer(0x5F3A, "Test EMT Sub-CA"), [other, crl])
    assert skipped.counts["crl"] == 1
    kept = SkippedChecks(["mac"])
    count_revoked(kept, _peer(0x5F3A, "Test EMT Sub-CA"), [crl])
    assert kept.total == 0


def test_crl_switched_off_takes_the_crl_check_out_of_the_tls_context() -> None:
    """tls_context clears VERIFY_CRL_CHECK_CHAIN only when crl is switched off."""
    for names, checked in ((["crl"], False), (["mac"], True), ([], True)):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_CHAIN | ssl.VERIFY_X509_STRICT
        out = tls_context(ctx, SkippedChecks(names))
        assert out is ctx
        assert bool(ctx.verify_flags & ssl.VERIFY_CRL_CHECK_CHAIN) is checked
        assert ctx.verify_flags & ssl.VERIFY_X509_STRICT
