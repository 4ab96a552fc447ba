"""Observer: manifests of real partition trees, ECDSA signatures, violations, signed reports."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from smtestbed.services.gateway.cli_firmware import make_manifest
from smtestbed.services.gateway.observer import (
    SIGNATURE_FIELD,
    IntegrityError,
    Observer,
    Violation,
    ViolationKind,
    build_manifest,
    canonical_json,
    load_private_key,
    load_public_key,
    report,
    sign_manifest,
    verify_manifest,
    verify_report,
)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    """A fresh brainpoolP256r1 signing key."""
    return ec.generate_private_key(ec.BrainpoolP256R1())


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A gateway tree: two partitions (one a folder, one a file) and a configuration file."""
    root = tmp_path / "gw"
    (root / "processing" / "sub").mkdir(parents=True)
    (root / "processing" / "decrypt.py").write_bytes(b"def decrypt(): ...\n")
    (root / "processing" / "sub" / "verify.py").write_bytes(b"def verify(): ...\n")
    (root / "logs.py").write_bytes(b"LOG = 1\n")
    (root / "gateway.toml").write_bytes(b"[gateway]\ninstances = 3\n")
    return root


def _partitions(root: Path) -> dict[str, list[Path]]:
    return {"processing": [root / "processing"], "logs": [root / "logs.py"]}


def _install_manifest(root: Path, key: ec.EllipticCurvePrivateKey) -> Observer:
    manifest = build_manifest(_partitions(root), [root / "gateway.toml"], "1.0.0", base=root)
    path = root.parent / "manifest.json"
    path.write_text(json.dumps(sign_manifest(manifest, key)))
    return Observer(path, key.public_key(), _partitions(root), [root / "gateway.toml"], base=root)


def test_build_manifest_lists_each_partition_file_with_its_sha256(tree: Path) -> None:
    """Each partition lists its files (folders walked) with their SHA-256, sorted by path."""
    manifest = build_manifest(_partitions(tree), [tree / "gateway.toml"], "1.0.0", base=tree)
    assert manifest["version"] == "1.0.0"
    assert manifest["partitions"] == {
        "logs": [{"path": "logs.py", "sha256": _sha(b"LOG = 1\n")}],
        "processing": [
            {"path": "processing/decrypt.py", "sha256": _sha(b"def decrypt(): ...\n")},
            {"path": "processing/sub/verify.py", "sha256": _sha(b"def verify(): ...\n")},
        ],
    }
    assert manifest["configs"] == [
        {"path": "gateway.toml", "sha256": _sha(b"[gateway]\ninstances = 3\n")}
    ]


def test_build_manifest_leaves_out_python_bytecode(tree: Path) -> None:
    """__pycache__ folders and .pyc files, written by Python at run time, are not hashed."""
    (tree / "processing" / "__pycache__").mkdir()
    (tree / "processing" / "__pycache__" / "decrypt.cpython-311.pyc").write_bytes(b"\x00")
    (tree / "processing" / "old.pyc").write_bytes(b"\x00")
    manifest = build_manifest(_partitions(tree), [], "1.0.0", base=tree)
    paths = [e["path"] for e in manifest["partitions"]["processing"]]
    assert paths == ["processing/decrypt.py", "processing/sub/verify.py"]


def test_signed_manifest_verifies_with_the_signers_public_key(
    tree: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    """A signed manifest verifies and names brainpoolP256r1 with ECDSA-SHA256."""
    doc = sign_manifest(build_manifest(_partitions(tree), [], "1.0.0", base=tree), key)
    verify_manifest(json.loads(json.dumps(doc)), key.public_key())
    assert doc[SIGNATURE_FIELD]["curve"] == "brainpoolP256r1"
    assert doc[SIGNATURE_FIELD]["algorithm"] == "ecdsa-with-SHA256"


def test_tampered_manifest_fails_verification(tree: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Changing one recorded hash after signing makes verification fail with bad_signature."""
    doc = sign_manifest(build_manifest(_partitions(tree), [], "1.0.0", base=tree), key)
    doc["partitions"]["logs"][0]["sha256"] = _sha(b"evil")
    with pytest.raises(IntegrityError, match="does not match") as info:
        verify_manifest(doc, key.public_key())
    assert info.value.reason == "bad_signature"


def test_manifest_signed_by_another_key_fails_verification(
    tree: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    """A manifest signed by a different key is refused, naming the key mismatch."""
    other = ec.generate_private_key(ec.BrainpoolP256R1())
    doc = sign_manifest(build_manifest(_partitions(tree), [], "1.0.0", base=tree), other)
    with pytest.raises(IntegrityError, match="signed by key") as info:
        verify_manifest(doc, key.public_key())
    assert info.value.reason == "bad_signature"


def test_canonical_form_ignores_key_order_and_rejects_floats() -> None:
    """Canonical JSON: sorted keys, no whitespace, ASCII escapes; a float is refused."""
    assert canonical_json({"b": [1, "ü"], "a": None}) == b'{"a":null,"b":[1,"\\u00fc"]}'
    with pytest.raises(ValueError, match="floats"):
        canonical_json({"a": 1.5})


def test_manifest_signature_verifies_with_openssl(
    tree: Path, key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    """openssl dgst -sha256 -verify accepts the signature over the canonical form."""
    doc = sign_manifest(build_manifest(_partitions(tree), [], "1.0.0", base=tree), key)
    body = {k: v for k, v in doc.items() if k != SIGNATURE_FIELD}
    (tmp_path / "body.json").write_bytes(canonical_json(body))
    (tmp_path / "sig.der").write_bytes(base64.b64decode(doc[SIGNATURE_FIELD]["value"]))
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "pub.pem").write_bytes(pem)
    cmd = ["openssl", "dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig.der"]
    done = subprocess.run(
        [*cmd, "body.json"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.stdout.strip() == "Verified OK"


def test_intact_tree_has_no_violations(tree: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Checking an unchanged tree against its manifest returns no violation."""
    observer = _install_manifest(tree, key)
    assert observer.check() == []
    assert observer.manifest_version == "1.0.0"


def test_changed_partition_file_is_reported_as_changed(
    tree: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    """One changed byte in a partition file gives exactly one 'changed' violation for it."""
    observer = _install_manifest(tree, key)
    (tree / "processing" / "sub" / "verify.py").write_bytes(b"def verify(): return True\n")
    assert observer.check() == [
        Violation(
            kind=ViolationKind.CHANGED,
            partition="processing",
            path="processing/sub/verify.py",
            expected=_sha(b"def verify(): ...\n"),
            actual=_sha(b"def verify(): return True\n"),
        )
    ]


def test_added_partition_file_is_reported_as_appeared(
    tree: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    """A new file in a partition folder gives exactly one 'appeared' violation for it."""
    observer = _install_manifest(tree, key)
    (tree / "processing" / "backdoor.py").write_bytes(b"import os\n")
    assert observer.check() == [
        Violation(
            kind=ViolationKind.APPEARED,
            partition="processing",
            path="processing/backdoor.py",
            actual=_sha(b"import os\n"),
        )
    ]


def test_removed_partition_file_is_reported_as_vanished(
    tree: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    """A deleted partition file gives exactly one 'vanished' violation for it."""
    observer = _install_manifest(tree, key)
    (tree / "logs.py").unlink()
    assert observer.check() == [
        Violation(
            kind=ViolationKind.VANISHED,
            partition="logs",
            path="logs.py",
            expected=_sha(b"LOG = 1\n"),
        )
    ]


def test_changed_configuration_file_is_reported_without_partition(
    tree: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    """A changed configuration file gives one 'changed' violation with partition None."""
    observer = _install_manifest(tree, key)
    (tree / "gateway.toml").write_bytes(b"[gateway]\ninstances = 4\n")
    [violation] = observer.check()
    assert (violation.kind, violation.partition, violation.path) == (
        ViolationKind.CHANGED,
        None,
        "gateway.toml",
    )
    assert violation.describe() == "configuration: gateway.toml changed"


def test_manifest_with_bad_signature_is_itself_a_violation(
    tree: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    """A manifest edited on disk yields one bad_signature violation and no file comparison."""
    observer = _install_manifest(tree, key)
    doc = json.loads(observer.manifest_path.read_text())
    doc["partitions"]["logs"][0]["sha256"] = _sha(b"LOG = 2\n")
    observer.manifest_path.write_text(json.dumps(doc))
    (tree / "logs.py").write_bytes(b"LOG = 2\n")
    [violation] = observer.check()
    assert violation.kind == ViolationKind.BAD_SIGNATURE
    assert violation.path == str(observer.manifest_path)
    assert observer.manifest_version is None


def test_missing_manifest_is_a_violation(tree: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """A deleted manifest yields one missing_manifest violation."""
    observer = _install_manifest(tree, key)
    observer.manifest_path.unlink()
    assert [v.kind for v in observer.check()] == [ViolationKind.MISSING_MANIFEST]


def test_unparsable_manifest_is_a_malformed_manifest_violation(
    tree: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    """A manifest that is not JSON yields one malformed_manifest violation."""
    observer = _install_manifest(tree, key)
    observer.manifest_path.write_bytes(b"{not json")
    assert [v.kind for v in observer.check()] == [ViolationKind.MALFORMED_MANIFEST]


def _violations() -> list[Violation]:
    return [Violation(kind=ViolationKind.VANISHED, partition="logs", path="logs.py", expected="ab")]


def test_signed_report_lists_the_violations_and_verifies(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    """A report carries each violation, the check time in ms and a verifying signature."""
    doc = report(_violations(), key, checked_at=1700000000.25, manifest_version="1.0.0")
    verify_report(json.loads(json.dumps(doc)), key.public_key())
    assert doc["checked_at_ms"] == 1700000000250
    assert doc["intact"] is False
    assert doc["violations"][0]["kind"] == "vanished"
    assert doc["violations"][0]["path"] == "logs.py"


def test_altered_report_fails_verification(key: ec.EllipticCurvePrivateKey) -> None:
    """Removing a violation from a signed report makes verification fail."""
    doc: dict[str, Any] = report(_violations(), key, checked_at=1.0)
    doc["violations"] = []
    with pytest.raises(IntegrityError) as info:
        verify_report(doc, key.public_key())
    assert info.value.reason == "bad_signature"


def _pem_files(key: ec.EllipticCurvePrivateKey, folder: Path) -> tuple[Path, Path]:
    private = folder / "signer.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = folder / "signer.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def test_pem_keys_load_from_path_and_bytes(key: ec.EllipticCurvePrivateKey, tmp_path: Path) -> None:
    """Keys loaded from PEM files and PEM bytes sign and verify as the original."""
    private, public = _pem_files(key, tmp_path)
    loaded = load_private_key(private.read_bytes())
    assert loaded.private_numbers() == key.private_numbers()
    assert load_public_key(public).public_numbers() == key.public_key().public_numbers()


def test_make_manifest_writes_a_signed_manifest_of_the_tree(
    tree: Path, key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    """smtb gateway make-manifest hashes the partitions and signs with the given key."""
    private, public = _pem_files(key, tmp_path)
    out = tmp_path / "manifest.json"
    args = ["--partition", f"processing={tree / 'processing'}", "--partition"]
    args += [f"logs={tree / 'logs.py'}", "--config", str(tree / "gateway.toml")]
    args += ["--version", "2.1.0", "--key", str(private), "--base", str(tree), "--out", str(out)]
    result = CliRunner().invoke(make_manifest, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    verify_manifest(doc, load_public_key(public))
    assert doc["version"] == "2.1.0"
    assert [e["path"] for e in doc["partitions"]["processing"]] == [
        "processing/decrypt.py",
        "processing/sub/verify.py",
    ]


def test_make_manifest_with_missing_partition_path_fails_in_one_line(
    tree: Path, key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    """A partition path that does not exist is one error line and exit code 1."""
    private, _ = _pem_files(key, tmp_path)
    args = ["--partition", f"logs={tree / 'nope.py'}", "--version", "1.0.0"]
    args += ["--key", str(private), "--out", str(tmp_path / "m.json")]
    result = CliRunner().invoke(make_manifest, args)
    assert result.exit_code == 1
    assert "nope.py does not exist" in result.output
    assert not (tmp_path / "m.json").exists()
