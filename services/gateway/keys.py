"""The gateway instance's signing key (ECDSA) for its logs.

A real SMGW keeps this key in its security module (TR-03109-2); the testbed
keeps it as a PEM file in the instance folder:

- ``signing-key.pem``: PKCS#8 private key, unencrypted, file mode 0600.
  A key file that group or others may read is refused when loaded.
- ``signing-key.pub.pem``: SubjectPublicKeyInfo public key, mode 0644,
  the file a verifier (``smtb gateway verify-log --public-key``) needs.

Curves: brainpoolP256r1 (the TR-03109 default) or NIST P-256 (``secp256r1``,
also accepted as ``P-256``). Signatures are ECDSA over a SHA-256 digest the
caller has already computed (``Prehashed``), DER-encoded.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from smtestbed.services._runtime.errors import TestbedError
from smtestbed.services._runtime.pki import load_owner_key

__all__ = [
    "CURVES",
    "DEFAULT_CURVE",
    "PRIVATE_KEY_FILE",
    "PUBLIC_KEY_FILE",
    "KeyFileError",
    "SigningKey",
    "fingerprint",
    "load_or_create_key",
    "load_public_key",
    "verify_digest",
]

PRIVATE_KEY_FILE = "signing-key.pem"
PUBLIC_KEY_FILE = "signing-key.pub.pem"
DEFAULT_CURVE = "brainpoolP256r1"
CURVES: dict[str, type[ec.EllipticCurve]] = {
    "brainpoolP256r1": ec.BrainpoolP256R1,
    "secp256r1": ec.SECP256R1,
    "P-256": ec.SECP256R1,
}
_ECDSA_PREHASHED = ec.ECDSA(utils.Prehashed(hashes.SHA256()))
_DIGEST_SIZE = 32


class KeyFileError(TestbedError):
    """A key file is missing, unreadable, too open, or holds the wrong kind of key."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SigningKey:
    """A gateway instance's ECDSA key pair and where it is stored.

    Attributes:
        private_key: the key that signs log entries.
        path: the private key file (mode 0600).
        public_path: the exported public key file.
    """

    private_key: ec.EllipticCurvePrivateKey
    path: Path
    public_path: Path

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The public half, for verifying."""
        return self.private_key.public_key()

    @property
    def curve(self) -> str:
        """The curve name as OpenSSL spells it (``brainpoolP256r1``, ``secp256r1``)."""
        return self.private_key.curve.name

    @property
    def fingerprint(self) -> str:
        """Hex SHA-256 of the public key's DER SubjectPublicKeyInfo."""
        return fingerprint(self.public_key)

    def sign(self, digest: bytes) -> bytes:
        """Sign a 32-byte SHA-256 digest; return the DER-encoded ECDSA signature."""
        if len(digest) != _DIGEST_SIZE:
            raise ValueError(f"expected a 32-byte SHA-256 digest, got {len(digest)} bytes")
        return self.private_key.sign(digest, _ECDSA_PREHASHED)


def fingerprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """Return the hex SHA-256 of a public key's DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def verify_digest(public_key: ec.EllipticCurvePublicKey, digest: bytes, signature: bytes) -> bool:
    """Tell whether ``signature`` (DER) is a valid ECDSA signature of a SHA-256 digest."""
    if len(digest) != _DIGEST_SIZE:
        return False
    try:
        public_key.verify(signature, digest, _ECDSA_PREHASHED)
    except InvalidSignature:
        return False
    return True


def load_or_create_key(folder: Path, *, curve: str = DEFAULT_CURVE) -> SigningKey:
    """Load the instance's signing key from ``folder``, generating it on first start.

    A new key is written with mode 0600 (never wider, not even for a moment)
    and its public key is exported next to it. When two processes start at
    once, exactly one key wins and both load it.

    Raises:
        KeyFileError: unknown curve, an unreadable or too open key file, or a
            stored key on another curve than ``curve``.
    """
    curve_cls = _curve(curve)
    path = folder / PRIVATE_KEY_FILE
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        _create(path, ec.generate_private_key(curve_cls()))
    private_key = _load_private(path)
    if private_key.curve.name != curve_cls().name:
        raise KeyFileError(f"{path}: key is on {private_key.curve.name}, configured {curve}")
    public_path = folder / PUBLIC_KEY_FILE
    _export_public(public_path, private_key.public_key())
    return SigningKey(private_key=private_key, path=path, public_path=public_path)


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """Read a PEM public key on one of :data:`CURVES`.

    Raises:
        KeyFileError: missing or unreadable file, not PEM, not an EC key, or an
            unsupported curve.
    """
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read public key: {exc.strerror}") from exc
    except ValueError as exc:
        raise KeyFileError(f"{path}: not a PEM public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise KeyFileError(f"{path}: not an EC public key")
    _curve(key.curve.name)
    return key


def _curve(name: str) -> type[ec.EllipticCurve]:
    try:
        return CURVES[name]
    except KeyError:
        known = ", ".join(CURVES)
        raise KeyFileError(f"unsupported curve {name!r} (known: {known})") from None


def _create(path: Path, private_key: ec.EllipticCurvePrivateKey) -> None:
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # link() fails if another process won the race; its key is then loaded.
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def _load_private(path: Path) -> ec.EllipticCurvePrivateKey:
    key = load_owner_key(
        path,
        password=None,
        what="signing key",
        undecodable="not an unencrypted PEM private key",
        error=KeyFileError,
    )
    _curve(key.curve.name)
    return key


def _export_public(path: Path, public_key: ec.EllipticCurvePublicKey) -> None:
    pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if path.exists() and path.read_bytes() == pem:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(pem)
    tmp.chmod(0o644)
    tmp.replace(path)
