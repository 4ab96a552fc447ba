"""Observer partition: integrity of the other partitions against a signed manifest.

A manifest is a JSON document::

    {
      "format": "smtb-manifest/1",
      "version": "1.4.0",
      "partitions": {"processing": [{"path": "gateway/processing.py", "sha256": "<64 hex>"}]},
      "configs": [{"path": "deploy/gateway.toml", "sha256": "<64 hex>"}],
      "signature": {"algorithm": "ecdsa-with-SHA256", "curve": "brainpoolP256r1",
                    "key_id": "<64 hex>", "value": "<base64 of the DER ECDSA signature>"}
    }

File lists are sorted by path. Paths use ``/`` and are relative to the ``base``
folder given to :func:`build_manifest` (as given when there is none).

The signature covers the *canonical form* of the document without its
``signature`` member: JSON with object keys sorted by code point, no
whitespace (``","`` and ``":"`` separators), every non-ASCII character
escaped as ``\\uXXXX`` (so the bytes are ASCII), strings, integers, booleans,
null, arrays and objects only (no floats). The hash follows the key's curve
(SHA-256 up to 256-bit curves, SHA-384 up to 384, SHA-512 above), so
``openssl dgst -sha256 -verify key.pem -signature sig.der canonical.json``
verifies a brainpoolP256r1 signature. ``key_id`` is the SHA-256 of the
signer's DER SubjectPublicKeyInfo.

The observer's reports (:func:`report`) are signed the same way.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from smtestbed.services._runtime.errors import ConfigError, ProtocolError

MANIFEST_FORMAT = "smtb-manifest/1"
REPORT_FORMAT = "smtb-observer-report/1"
SIGNATURE_FIELD = "signature"
SKIPPED_DIRS = frozenset({"__pycache__"})
"""Folders left out when a partition tree is hashed (written at run time by Python)."""
SKIPPED_SUFFIXES = (".pyc",)

PrivateKey = ec.EllipticCurvePrivateKey
PublicKey = ec.EllipticCurvePublicKey


class IntegrityError(ProtocolError):
    """A signed document is malformed or its signature does not verify.

    ``reason`` is ``bad_signature`` or ``malformed``.
    """


# --- keys and signatures -------------------------------------------------------------


def load_private_key(source: Path | bytes, password: bytes | None = None) -> PrivateKey:
    """Load an ECDSA private key from a PEM file path or PEM bytes."""
    pem = _read_pem(source, "private key")
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"not a usable PEM private key: {exc}", key="key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError("the private key is not an elliptic-curve key", key="key")
    return key


def load_public_key(source: Path | bytes) -> PublicKey:
    """Load an ECDSA public key from a PEM public key or PEM certificate (path or bytes)."""
    pem = _read_pem(source, "public key")
    try:
        key: object = (
            x509.load_pem_x509_certificate(pem).public_key()
            if b"-----BEGIN CERTIFICATE-----" in pem
            else serialization.load_pem_public_key(pem)
        )
    except ValueError as exc:
        raise ConfigError(f"not a usable PEM public key: {exc}", key="key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError("the public key is not an elliptic-curve key", key="key")
    return key


def _read_pem(source: Path | bytes, what: str) -> bytes:
    if isinstance(source, bytes):
        return source
    try:
        return source.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {source}: {exc.strerror}", key="key") from exc


def key_id(public_key: PublicKey) -> str:
    """Return the SHA-256 (hex) of the key's DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def _hash_for(curve: ec.EllipticCurve) -> hashes.HashAlgorithm:
    if curve.key_size <= 256:
        return hashes.SHA256()
    if curve.key_size <= 384:
        return hashes.SHA384()
    return hashes.SHA512()


def signature_algorithm(public_key: PublicKey) -> str:
    """Name the signature algorithm used with this key (``ecdsa-with-SHA256`` ...)."""
    return f"ecdsa-with-{_hash_for(public_key.curve).name.upper()}"


def sign_bytes(data: bytes, private_key: PrivateKey) -> bytes:
    """Sign ``data``; return the DER ECDSA signature (hash chosen by the curve)."""
    return private_key.sign(data, ec.ECDSA(_hash_for(private_key.curve)))


def verify_bytes(data: bytes, signature: bytes, public_key: PublicKey) -> bool:
    """Tell whether ``signature`` (DER ECDSA) over ``data`` verifies with the key."""
    try:
        public_key.verify(signature, data, ec.ECDSA(_hash_for(public_key.curve)))
    except InvalidSignature:
        return False
    return True


# --- canonical JSON and signed documents ---------------------------------------------


def canonical_json(doc: Mapping[str, Any]) -> bytes:
    """Encode ``doc`` in the canonical form (see the module docstring)."""
    _reject_floats(doc)
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text.encode("ascii")


def _reject_floats(value: Any) -> None:
    if isinstance(value, float):
        raise ValueError("canonical JSON has no floats")
    if isinstance(value, Mapping):
        for item in value.values():
            _reject_floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _reject_floats(item)


def sign_document(doc: Mapping[str, Any], private_key: PrivateKey) -> dict[str, Any]:
    """Return a copy of ``doc`` with a ``signature`` member over its canonical form."""
    body = {k: v for k, v in doc.items() if k != SIGNATURE_FIELD}
    public_key = private_key.public_key()
    body[SIGNATURE_FIELD] = {
        "algorithm": signature_algorithm(public_key),
        "curve": public_key.curve.name,
        "key_id": key_id(public_key),
        "value": base64.b64encode(sign_bytes(canonical_json(body), private_key)).decode(),
    }
    return body


def verify_document(doc: Any, public_key: PublicKey) -> None:
    """Check the ``signature`` member of ``doc`` against the key.

    Raises:
        IntegrityError: reason ``malformed`` (no usable signature member) or
            ``bad_signature`` (another key, another algorithm, or a changed document).
    """
    block = doc.get(SIGNATURE_FIELD) if isinstance(doc, dict) else None
    if not isinstance(block, dict) or not isinstance(block.get("value"), str):
        raise IntegrityError("document has no signature member", reason="malformed")
    expected_id = key_id(public_key)
    if block.get("key_id") != expected_id:
        signer = str(block.get("key_id"))[:16]
        raise IntegrityError(
            f"signed by key {signer}..., not by {expected_id[:16]}...", reason="bad_signature"
        )
    if block.get("algorithm") != signature_algorithm(public_key):
        raise IntegrityError(
            f"unexpected algorithm {block.get('algorithm')}", reason="bad_signature"
        )
    try:
        signature = base64.b64decode(block["value"], validate=True)
        body = canonical_json({k: v for k, v in doc.items() if k != SIGNATURE_FIELD})
    except (binascii.Error, ValueError) as exc:
        raise IntegrityError(f"unreadable signed document: {exc}", reason="malformed") from exc
    if not verify_bytes(body, signature, public_key):
        raise IntegrityError("signature does not match the document", reason="bad_signature")


# --- manifests -----------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    """Return the SHA-256 (hex) of a file's content, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _files_under(entry: Path) -> Iterator[Path]:
    if not entry.is_dir():
        if entry.exists() or entry.is_symlink():
            yield entry
        return
    for folder, dirs, files in os.walk(entry):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in sorted(files):
            if not name.endswith(SKIPPED_SUFFIXES):
                yield Path(folder) / name


def _recorded(path: Path, base: Path | None) -> str:
    if base is None:
        return path.as_posix()
    try:
        return path.relative_to(base).as_posix()
    except ValueError as exc:
        raise ConfigError(f"{path} is not inside the base folder {base}", key="base") from exc


def scan(paths: Sequence[Path], *, base: Path | None = None) -> dict[str, str | None]:
    """Hash the files named by ``paths`` (folders walked recursively).

    Returns:
        recorded path -> SHA-256 hex, or None for a file that cannot be read.
        A path that does not exist contributes nothing.
    """
    out: dict[str, str | None] = {}
    for entry in paths:
        for path in _files_under(entry):
            try:
                out[_recorded(path, base)] = sha256_file(path)
            except OSError:
                out[_recorded(path, base)] = None
    return out


def _strict_listing(paths: Sequence[Path], base: Path | None, what: str) -> list[dict[str, str]]:
    for entry in paths:
        if not entry.exists():
            raise ConfigError(f"{entry} does not exist", key=what)
    listing = []
    for path, digest in sorted(scan(paths, base=base).items()):
        if digest is None:
            raise ConfigError(f"cannot read {path}", key=what)
        listing.append({"path": path, "sha256": digest})
    return listing


def build_manifest(
    partitions: Mapping[str, Sequence[Path]],
    configs: Sequence[Path],
    version: str,
    *,
    base: Path | None = None,
) -> dict[str, Any]:
    """Hash each partition's files and the configuration files into an unsigned manifest.

    Args:
        partitions: partition name -> files and folders (folders walked recursively,
            ``__pycache__`` and ``*.pyc`` left out).
        configs: configuration files (or folders).
        version: the firmware version the manifest describes.
        base: record paths relative to this folder.

    Raises:
        ConfigError: a named path does not exist, cannot be read, or lies outside ``base``.
    """
    return {
        "format": MANIFEST_FORMAT,
        "version": version,
        "partitions": {
            name: _strict_listing(paths, base, f"partitions.{name}")
            for name, paths in sorted(partitions.items())
        },
        "configs": _strict_listing(configs, base, "configs"),
    }


def sign_manifest(manifest: Mapping[str, Any], private_key: PrivateKey) -> dict[str, Any]:
    """Return the manifest with its signature (see the module docstring)."""
    return sign_document(manifest, private_key)


def verify_manifest(doc: Any, public_key: PublicKey) -> None:
    """Check a manifest's shape and signature.

    Raises:
        IntegrityError: reason ``malformed`` or ``bad_signature``.
    """
    verify_document(doc, public_key)
    if doc.get("format") != MANIFEST_FORMAT or not isinstance(doc.get("version"), str):
        raise IntegrityError(f"not a {MANIFEST_FORMAT} document", reason="malformed")
    partitions = doc.get("partitions")
    if not isinstance(partitions, dict):
        raise IntegrityError("manifest has no partitions object", reason="malformed")
    for listing in [*partitions.values(), doc.get("configs")]:
        _listing_hashes(listing)


def _listing_hashes(listing: Any) -> dict[str, str]:
    ok = isinstance(listing, list) and all(
        isinstance(e, dict) and isinstance(e.get("path"), str) and isinstance(e.get("sha256"), str)
        for e in listing
    )
    if not ok:
        raise IntegrityError("a file list is not [{path, sha256}, ...]", reason="malformed")
    return {e["path"]: e["sha256"] for e in listing}


# --- violations and the observer -----------------------------------------------------


class ViolationKind(StrEnum):
    """What the observer found (``gateway.integrity_violation`` events)."""

    CHANGED = "changed"
    APPEARED = "appeared"
    VANISHED = "vanished"
    UNREADABLE = "unreadable"
    BAD_SIGNATURE = "bad_signature"
    MALFORMED_MANIFEST = "malformed_manifest"
    MISSING_MANIFEST = "missing_manifest"


@dataclass(frozen=True, slots=True, kw_only=True)
class Violation:
    """One integrity violation.

    Attributes:
        kind: what happened.
        partition: the partition of the file; None for configuration files and
            for violations of the manifest itself.
        path: the file as recorded in the manifest (the manifest file for
            manifest violations).
        expected: SHA-256 hex in the manifest ("" when the file is not listed).
        actual: SHA-256 hex now ("" when the file is gone or unreadable).
        detail: a human-readable cause, for manifest violations.
    """

    kind: ViolationKind
    partition: str | None = None
    path: str = ""
    expected: str = ""
    actual: str = ""
    detail: str = ""

    def describe(self) -> str:
        """Return one line for the system log."""
        where = f"partition {self.partition}" if self.partition else "configuration"
        if self.kind in _MANIFEST_KINDS:
            return f"manifest {self.path}: {self.kind.value} ({self.detail})"
        return f"{where}: {self.path} {self.kind.value}"

    def to_dict(self) -> dict[str, Any]:
        """Return the violation as a JSON/msgpack-ready mapping."""
        return {
            "kind": self.kind.value,
            "partition": self.partition,
            "path": self.path,
            "expected": self.expected,
            "actual": self.actual,
            "detail": self.detail,
        }


_MANIFEST_KINDS = frozenset(
    {
        ViolationKind.BAD_SIGNATURE,
        ViolationKind.MALFORMED_MANIFEST,
        ViolationKind.MISSING_MANIFEST,
    }
)


def compare(
    partition: str | None, expected: Mapping[str, str], actual: Mapping[str, str | None]
) -> list[Violation]:
    """List the differences between recorded and current hashes, sorted by path."""
    out = []
    for path in sorted(expected.keys() | actual.keys()):
        want, have = expected.get(path), actual.get(path, "")
        if want is None:
            kind = ViolationKind.APPEARED
        elif path not in actual:
            kind = ViolationKind.VANISHED
        elif have is None:
            kind = ViolationKind.UNREADABLE
        elif have != want:
            kind = ViolationKind.CHANGED
        else:
            continue
        out.append(
            Violation(
                kind=kind, partition=partition, path=path, expected=want or "", actual=have or ""
            )
        )
    return out


class Observer:
    """Compares the partitions and configuration files with a signed manifest.

    The gateway service calls :meth:`check` at start and periodically and
    raises ``gateway.integrity_violation`` for each violation returned.
    """

    def __init__(
        self,
        manifest_path: Path,
        public_key: PublicKey,
        partitions: Mapping[str, Sequence[Path]],
        configs: Sequence[Path],
        *,
        base: Path | None = None,
    ) -> None:
        self.manifest_path = manifest_path
        self.public_key = public_key
        self.partitions = {name: list(paths) for name, paths in partitions.items()}
        self.configs = list(configs)
        self.base = base
        self.manifest_version: str | None = None

    def check(self) -> list[Violation]:
        """Hash everything now; return the violations (empty when all is intact)."""
        doc = self._load()
        if isinstance(doc, Violation):
            self.manifest_version = None
            return [doc]
        self.manifest_version = doc["version"]
        recorded = doc["partitions"]
        out: list[Violation] = []
        for name in sorted(recorded.keys() | self.partitions.keys()):
            expected = _listing_hashes(recorded.get(name, []))
            out += compare(name, expected, scan(self.partitions.get(name, []), base=self.base))
        out += compare(None, _listing_hashes(doc["configs"]), scan(self.configs, base=self.base))
        return out

    def _load(self) -> dict[str, Any] | Violation:
        """Read and verify the manifest; a problem with it is itself a violation."""
        path = str(self.manifest_path)
        try:
            doc = json.loads(self.manifest_path.read_bytes())
        except FileNotFoundError:
            return Violation(kind=ViolationKind.MISSING_MANIFEST, path=path, detail="no such file")
        except (OSError, ValueError) as exc:
            return Violation(kind=ViolationKind.MALFORMED_MANIFEST, path=path, detail=str(exc))
        try:
            verify_manifest(doc, self.public_key)
        except IntegrityError as exc:
            kind = ViolationKind.MALFORMED_MANIFEST
            if exc.reason == "bad_signature":
                kind = ViolationKind.BAD_SIGNATURE
            return Violation(kind=kind, path=path, detail=str(exc))
        return dict(doc)


# --- signed reports ------------------------------------------------------------------


def report(
    violations: Sequence[Violation],
    private_key: PrivateKey,
    *,
    checked_at: float | None = None,
    manifest_version: str | None = None,
) -> dict[str, Any]:
    """Return the observer's signed report of one check.

    Args:
        violations: what :meth:`Observer.check` returned.
        private_key: the observer's signing key.
        checked_at: time of the check, s since the epoch (default: now);
            stored as integer milliseconds in ``checked_at_ms``.
        manifest_version: the version of the manifest checked against.
    """
    when = time.time() if checked_at is None else checked_at
    body = {
        "format": REPORT_FORMAT,
        "checked_at_ms": round(when * 1000),
        "manifest_version": manifest_version,
        "intact": not violations,
        "violations": [v.to_dict() for v in violations],
    }
    return sign_document(body, private_key)


def verify_report(doc: Any, public_key: PublicKey) -> None:
    """Check a report's shape and signature.

    Raises:
        IntegrityError: reason ``malformed`` or ``bad_signature``.
    """
    verify_document(doc, public_key)
    if doc.get("format") != REPORT_FORMAT or not isinstance(doc.get("violations"), list):
        raise IntegrityError(f"not a {REPORT_FORMAT} document", reason="malformed")
