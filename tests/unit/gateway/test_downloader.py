"""Downloader: real signed bundles installed into real folders; refusals change nothing."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from smtestbed.services.gateway.cli_firmware import make_bundle
from smtestbed.services.gateway.downloader import (
    BundleError,
    Downloader,
    DownloaderError,
    Refusal,
    Version,
    build_bundle,
    read_bundle,
)
from smtestbed.services.gateway.observer import canonical_json, sign_bytes

Key = ec.EllipticCurvePrivateKey


@pytest.fixture
def maker() -> Key:
    """The manufacturer's brainpoolP256r1 signing key."""
    return ec.generate_private_key(ec.BrainpoolP256R1())


def _source(folder: Path, version: str) -> Path:
    """Write a small firmware tree whose files name the version."""
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "app.py").write_text(f"VERSION = {version!r}\n")
    (folder / "README").write_text("gateway firmware\n")
    return folder


def _bundle(tmp_path: Path, maker: Key, version: str) -> bytes:
    source = _source(tmp_path / f"src-{version}", version)
    return build_bundle(source, name="smgw", version=version, private_key=maker)


def _snapshot(root: Path) -> dict[str, str]:
    """Every entry under root: file content hash, link target, or 'dir'."""
    out: dict[str, str] = {}
    if not root.exists():
        return out
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = "-> " + os.readlink(path)
            elif path.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture
def installed(tmp_path: Path, maker: Key) -> Downloader:
    """A downloader whose root has version 1.0.0 installed."""
    downloader = Downloader(tmp_path / "root", maker.public_key(), name="smgw")
    assert downloader.install(_bundle(tmp_path, maker, "1.0.0")).accepted
    return downloader


def _raw_bundle(maker: Key, files: dict[str, bytes], extra: list[tarfile.TarInfo]) -> bytes:
    """A validly signed bundle listing ``files``, with ``extra`` raw members appended."""
    manifest = canonical_json(
        {
            "format": "smtb-bundle/1",
            "name": "smgw",
            "version": "2.0.0",
            "files": [
                {"path": p, "sha256": hashlib.sha256(d).hexdigest(), "size": len(d)}
                for p, d in sorted(files.items())
            ],
        }
    )
    members = {"bundle.json": manifest, "bundle.sig": sign_bytes(manifest, maker)}
    members.update({"files/" + p: d for p, d in files.items()})
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info, io.BytesIO(b"evil") if info.isreg() else None)
    return out.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    info.size = 4 if kind == tarfile.REGTYPE else 0
    return info


def _retar(bundle: bytes, change: dict[str, bytes]) -> bytes:
    """Rewrite a bundle with some member contents replaced (signature untouched)."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(bundle)) as src,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as dst,
    ):
        for info in src.getmembers():
            handle = src.extractfile(info)
            assert handle is not None
            data = change.get(info.name, handle.read())
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_good_bundle_installs_and_switches_current(tmp_path: Path, maker: Key) -> None:
    """A signed bundle on a fresh root is unpacked into versions/<v> and becomes current."""
    root = tmp_path / "root"
    result = Downloader(root, maker.public_key()).install(_bundle(tmp_path, maker, "1.0.0"))
    assert (result.accepted, result.version, result.previous) == (True, "1.0.0", None)
    assert os.readlink(root / "current") == "versions/1.0.0"
    assert (root / "current" / "bin" / "app.py").read_text() == "VERSION = '1.0.0'\n"
    assert sorted(p.name for p in (root / "versions").iterdir()) == ["1.0.0"]


def test_newer_bundle_keeps_the_old_version_as_previous(
    installed: Downloader, tmp_path: Path, maker: Key
) -> None:
    """Installing 1.1.0 over 1.0.0 makes 1.1.0 current and 1.0.0 previous."""
    result = installed.install(_bundle(tmp_path, maker, "1.1.0"))
    assert (result.accepted, result.previous) == (True, "1.0.0")
    assert installed.current_version() == "1.1.0"
    assert installed.previous_version() == "1.0.0"
    assert (installed.root / "current" / "bin" / "app.py").read_text() == "VERSION = '1.1.0'\n"


def test_only_current_and_previous_versions_are_kept(
    installed: Downloader, tmp_path: Path, maker: Key
) -> None:
    """After a third install the oldest version folder is removed."""
    installed.install(_bundle(tmp_path, maker, "1.1.0"))
    installed.install(_bundle(tmp_path, maker, "1.10.0"))
    assert sorted(p.name for p in (installed.root / "versions").iterdir()) == ["1.1.0", "1.10.0"]


def test_rollback_returns_to_the_previous_version(
    installed: Downloader, tmp_path: Path, maker: Key
) -> None:
    """Rollback points current at the previous version and removes the abandoned one."""
    installed.install(_bundle(tmp_path, maker, "1.1.0"))
    assert installed.rollback() == "1.0.0"
    assert os.readlink(installed.root / "current") == "versions/1.0.0"
    assert (installed.root / "current" / "bin" / "app.py").read_text() == "VERSION = '1.0.0'\n"
    assert installed.previous_version() is None
    assert sorted(p.name for p in (installed.root / "versions").iterdir()) == ["1.0.0"]


def test_rollback_without_previous_version_is_an_error(installed: Downloader) -> None:
    """With only one version installed, rollback raises and changes nothing."""
    before = _snapshot(installed.root)
    with pytest.raises(DownloaderError, match="no previous version"):
        installed.rollback()
    assert _snapshot(installed.root) == before


def _assert_refused(downloader: Downloader, bundle: bytes, reason: Refusal) -> str:
    before = _snapshot(downloader.root)
    result = downloader.install(bundle)
    assert (result.accepted, result.reason) == (False, reason), result.message
    assert _snapshot(downloader.root) == before
    return result.message


def test_bad_signature_is_refused_and_changes_nothing(
    installed: Downloader, tmp_path: Path, maker: Key
) -> None:
    """A bundle whose detached signature has one flipped byte is refused as bad_signature."""
    bundle = _bundle(tmp_path, maker, "2.0.0")
    with tarfile.open(fileobj=io.BytesIO(bundle)) as tar:
        handle = tar.extractfile("bundle.sig")
        assert handle is not None
        signature = bytearray(handle.read())
    signature[-1] ^= 0x01
    _assert_refused(
        installed, _retar(bundle, {"bundle.sig": bytes(signature)}), Refusal.BAD_SIGNATURE
    )


def test_bundle_signed_with_another_key_is_refused(installed: Downloader, tmp_path: Path) -> None:
    """A well-formed bundle signed by a key other than the manufacturer's is refused."""
    other = ec.generate_private_key(ec.BrainpoolP256R1())
    message = _assert_refused(installed, _bundle(tmp_path, other, "2.0.0"), Refusal.BAD_SIGNATURE)
    assert "not signed by the manufacturer key" in message


def test_older_version_is_refused_as_not_newer(
    installed: Downloader, tmp_path: Path, maker: Key
) -> None:
    """A correctly signed 0.9.0 bundle over 1.0.0 is refused as not_newer."""
    _assert_refused(installed, _bundle(tmp_path, maker, "0.9.0"), Refusal.NOT_NEWER)


def test_equal_version_is_refused_as_not_newer(
    installed: Downloader, tmp_path: Path, maker: Key
) -> None:
    """Re-installing 1.0.0 (only build metadata differs) is refused as not_newer."""
    result = installed.install(_bundle(tmp_path, maker, "1.0.0+rebuild"))
    assert (result.reason, result.version) == (Refusal.NOT_NEWER, "1.0.0+rebuild")


def test_tampered_file_is_refused_as_bad_hash(
    installed: Downloader, tmp_path: Path, maker: Key
) -> None:
    """Changing one payload file after signing is refused as bad_hash, naming the file."""
    bundle = _retar(_bundle(tmp_path, maker, "2.0.0"), {"files/bin/app.py": b"import evil\n"})
    message = _assert_refused(installed, bundle, Refusal.BAD_HASH)
    assert "bin/app.py" in message


def test_unlisted_extra_file_is_refused_as_bad_hash(installed: Downloader, maker: Key) -> None:
    """A payload file the signed manifest does not list is refused as bad_hash."""
    bundle = _raw_bundle(maker, {"a.py": b"a"}, [_member("files/b.py")])
    _assert_refused(installed, bundle, Refusal.BAD_HASH)


def test_path_traversal_member_is_refused_as_unsafe_path(installed: Downloader, maker: Key) -> None:
    """A member named files/../evil is refused as unsafe_path and nothing is written."""
    bundle = _raw_bundle(maker, {"a.py": b"a"}, [_member("files/../evil")])
    _assert_refused(installed, bundle, Refusal.UNSAFE_PATH)
    assert not (installed.root / "evil").exists()


def test_traversal_in_signed_manifest_is_refused_as_unsafe_path(
    installed: Downloader, maker: Key
) -> None:
    """A manifest entry ../evil, even when signed, is refused as unsafe_path."""
    _assert_refused(installed, _raw_bundle(maker, {"../evil": b"x"}, []), Refusal.UNSAFE_PATH)


def test_absolute_path_member_is_refused_as_unsafe_path(installed: Downloader, maker: Key) -> None:
    """A member with an absolute name is refused as unsafe_path."""
    bundle = _raw_bundle(maker, {"a.py": b"a"}, [_member("/tmp/evil")])
    _assert_refused(installed, bundle, Refusal.UNSAFE_PATH)


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE], ids=["symlink", "hardlink"])
def test_link_member_is_refused_as_unsafe_path(
    installed: Downloader, maker: Key, kind: bytes
) -> None:
    """A symlink or hard link member is refused as unsafe_path."""
    bundle = _raw_bundle(maker, {"a.py": b"a"}, [_member("files/link", kind, "/etc/passwd")])
    message = _assert_refused(installed, bundle, Refusal.UNSAFE_PATH)
    assert "is a link" in message


def test_garbage_bytes_are_refused_as_malformed(installed: Downloader) -> None:
    """Bytes that are not a tar archive are refused as malformed."""
    _assert_refused(installed, b"\x00not a tar" * 100, Refusal.MALFORMED)


def test_refusal_on_a_fresh_root_creates_nothing(tmp_path: Path, maker: Key) -> None:
    """A refused bundle on a root that does not exist yet does not create it."""
    other = ec.generate_private_key(ec.BrainpoolP256R1())
    root = tmp_path / "root"
    result = Downloader(root, maker.public_key()).install(_bundle(tmp_path, other, "1.0.0"))
    assert result.reason == Refusal.BAD_SIGNATURE
    assert not root.exists()


def test_wrong_product_name_is_refused(installed: Downloader, tmp_path: Path, maker: Key) -> None:
    """A bundle for another product than the configured one is refused as wrong_name."""
    source = _source(tmp_path / "other", "2.0.0")
    bundle = build_bundle(source, name="display", version="2.0.0", private_key=maker)
    _assert_refused(installed, bundle, Refusal.WRONG_NAME)


def test_interrupted_install_is_cleaned_up_by_the_next_install(
    installed: Downloader, tmp_path: Path, maker: Key
) -> None:
    """Leftovers of a killed install (versions/<v>.tmp, current.tmp) go at the next install."""
    leftover = installed.root / "versions" / "2.0.0.tmp"
    (leftover / "bin").mkdir(parents=True)
    (leftover / "bin" / "app.py").write_text("half written")
    os.symlink("versions/2.0.0.tmp", installed.root / "current.tmp")
    assert installed.install(_bundle(tmp_path, maker, "2.0.0")).accepted
    assert sorted(p.name for p in (installed.root / "versions").iterdir()) == ["1.0.0", "2.0.0"]
    assert not (installed.root / "current.tmp").is_symlink()
    assert (installed.root / "current" / "bin" / "app.py").read_text() == "VERSION = '2.0.0'\n"


def test_semantic_versions_sort_by_precedence() -> None:
    """Versions order as in SemVer 2.0.0 §11, numbers compared as numbers."""
    texts = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2"]
    texts += ["1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.9.0", "1.10.0", "2.0.0"]
    versions = [Version.parse(t) for t in texts]
    assert all(b.newer_than(a) for a, b in itertools.pairwise(versions))
    assert not Version.parse("1.0.0+b").newer_than(Version.parse("1.0.0+a"))


@pytest.mark.parametrize("text", ["1.0", "01.0.0", "1.0.0\n", "../1.0.0", "1.0.0-"])
def test_non_semantic_version_is_malformed(text: str) -> None:
    """Strings that are not SemVer 2.0.0 (as folder names could be unsafe) are refused."""
    with pytest.raises(BundleError) as info:
        Version.parse(text)
    assert info.value.reason == Refusal.MALFORMED


def _pem(key: Key, folder: Path) -> Path:
    path = folder / "maker.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def test_make_bundle_writes_a_bundle_the_downloader_accepts(tmp_path: Path, maker: Key) -> None:
    """smtb gateway make-bundle output reads back with the manufacturer's public key."""
    source = _source(tmp_path / "src", "3.1.0")
    out = tmp_path / "b.tar"
    args = [str(source), "--name", "smgw", "--version", "3.1.0"]
    result = CliRunner().invoke(
        make_bundle, [*args, "--key", str(_pem(maker, tmp_path)), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    contents = read_bundle(out.read_bytes(), maker.public_key())
    assert (contents.name, contents.version.text) == ("smgw", "3.1.0")
    assert contents.files == {"README": b"gateway firmware\n", "bin/app.py": b"VERSION = '3.1.0'\n"}


def test_bundle_signature_verifies_with_openssl(tmp_path: Path, maker: Key) -> None:
    """openssl dgst -sha256 -verify accepts bundle.sig over bundle.json."""
    with tarfile.open(fileobj=io.BytesIO(_bundle(tmp_path, maker, "1.0.0"))) as tar:
        members = [tar.getmember("bundle.json"), tar.getmember("bundle.sig")]
        tar.extractall(tmp_path / "x", members=members, filter="data")
    pub = maker.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "x" / "maker.pub").write_bytes(pub)
    cmd = ["openssl", "dgst", "-sha256", "-verify", "maker.pub", "-signature", "bundle.sig"]
    done = subprocess.run(
        [*cmd, "bundle.json"], cwd=tmp_path / "x", capture_output=True, text=True, check=False
    )
    assert done.stdout.strip() == "Verified OK"
    assert json.loads((tmp_path / "x" / "bundle.json").read_text())["version"] == "1.0.0"
