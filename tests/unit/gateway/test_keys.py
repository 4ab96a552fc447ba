"""The gateway instance's signing key: creation, file modes, curves, signatures."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from smtestbed.services.gateway.keys import (
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    KeyFileError,
    fingerprint,
    load_or_create_key,
    load_public_key,
    verify_digest,
)

DIGEST = hashlib.sha256(b"entry").digest()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_start_writes_private_key_with_mode_0600(tmp_path: Path) -> None:
    """A new key lands in the instance folder as PEM readable by the owner only."""
    key = load_or_create_key(tmp_path / "gw-1")
    assert key.path == tmp_path / "gw-1" / PRIVATE_KEY_FILE
    assert _mode(key.path) == 0o600
    assert key.path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert [p.name for p in key.path.parent.iterdir() if p.name.startswith(".")] == []


def test_public_key_is_exported_next_to_the_private_key(tmp_path: Path) -> None:
    """signing-key.pub.pem holds the same public key, readable by all."""
    key = load_or_create_key(tmp_path)
    assert key.public_path == tmp_path / PUBLIC_KEY_FILE
    assert _mode(key.public_path) == 0o644
    exported = load_public_key(key.public_path)
    assert fingerprint(exported) == key.fingerprint


def test_default_curve_is_brainpool_p256r1(tmp_path: Path) -> None:
    """Without a curve option the key is on brainpoolP256r1 (TR-03109)."""
    assert load_or_create_key(tmp_path).curve == "brainpoolP256r1"


def test_nist_p256_is_selectable_by_either_name(tmp_path: Path) -> None:
    """``P-256`` and ``secp256r1`` both give a NIST P-256 key."""
    assert load_or_create_key(tmp_path / "a", curve="P-256").curve == "secp256r1"
    assert load_or_create_key(tmp_path / "b", curve="secp256r1").curve == "secp256r1"


def test_second_start_loads_the_same_key(tmp_path: Path) -> None:
    """A restart keeps the key: same fingerprint, file unchanged."""
    first = load_or_create_key(tmp_path)
    pem = first.path.read_bytes()
    second = load_or_create_key(tmp_path)
    assert second.fingerprint == first.fingerprint
    assert second.path.read_bytes() == pem


def test_key_file_readable_by_group_is_refused(tmp_path: Path) -> None:
    """A private key file with mode 0640 is not loaded."""
    key = load_or_create_key(tmp_path)
    key.path.chmod(0o640)
    with pytest.raises(KeyFileError, match="mode 0640, must be 0600"):
        load_or_create_key(tmp_path)


def test_stored_key_on_another_curve_is_refused(tmp_path: Path) -> None:
    """A brainpool key is not silently used when P-256 is configured."""
    load_or_create_key(tmp_path)
    with pytest.raises(KeyFileError, match="key is on brainpoolP256r1, configured P-256"):
        load_or_create_key(tmp_path, curve="P-256")


def test_unknown_curve_name_is_refused(tmp_path: Path) -> None:
    """A curve outside the two 256-bit curves is a KeyFileError naming the known ones."""
    with pytest.raises(KeyFileError, match="unsupported curve 'secp384r1'"):
        load_or_create_key(tmp_path, curve="secp384r1")
    assert not (tmp_path / PRIVATE_KEY_FILE).exists()


@pytest.mark.parametrize("curve", ["brainpoolP256r1", "P-256"])
def test_signature_verifies_under_the_exported_public_key(tmp_path: Path, curve: str) -> None:
    """sign() output verifies for the signed digest and fails for another one."""
    key = load_or_create_key(tmp_path, curve=curve)
    public = load_public_key(key.public_path)
    signature = key.sign(DIGEST)
    assert verify_digest(public, DIGEST, signature) is True
    assert verify_digest(public, hashlib.sha256(b"other").digest(), signature) is False


def test_sign_refuses_a_digest_that_is_not_32_bytes(tmp_path: Path) -> None:
    """Only a SHA-256 digest is signed, never raw data."""
    key = load_or_create_key(tmp_path)
    with pytest.raises(ValueError, match="32-byte"):
        key.sign(b"entry")


def test_public_key_that_is_not_pem_is_refused(tmp_path: Path) -> None:
    """A file of garbage is a KeyFileError, not a traceback."""
    path = tmp_path / "x.pem"
    path.write_text("not a key\n")
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        load_public_key(path)


def test_rsa_public_key_is_refused(tmp_path: Path) -> None:
    """Log signatures are ECDSA; an RSA public key is refused."""
    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    path = tmp_path / "rsa.pem"
    path.write_bytes(pem)
    with pytest.raises(KeyFileError, match="not an EC public key"):
        load_public_key(path)


def test_public_key_on_unsupported_curve_is_refused(tmp_path: Path) -> None:
    """A P-384 public key is refused by name."""
    pem = (
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    path = tmp_path / "p384.pem"
    path.write_bytes(pem)
    with pytest.raises(KeyFileError, match="unsupported curve 'secp384r1'"):
        load_public_key(path)


def test_missing_public_key_file_is_one_clear_error(tmp_path: Path) -> None:
    """A path that does not exist names the file."""
    with pytest.raises(KeyFileError, match="cannot read public key"):
        load_public_key(tmp_path / "absent.pem")
