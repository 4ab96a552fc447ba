"""Downloader partition: signed, newer firmware bundles, atomic switch, rollback.

A bundle is a POSIX tar (optionally gzip-compressed) holding exactly:

- ``bundle.json``: the manifest, canonical JSON (see :mod:`.observer`)::

      {"format": "smtb-bundle/1", "name": "smgw", "version": "1.4.0",
       "files": [{"path": "bin/app.py", "sha256": "<64 hex>", "size": 1234}, ...]}

  ``version`` is a Semantic Versioning 2.0.0 string; paths are relative,
  ``/``-separated, sorted, unique.
- ``bundle.sig``: the manufacturer's detached DER ECDSA signature over the
  bytes of ``bundle.json`` (``openssl dgst -sha256 -verify maker.pem
  -signature bundle.sig bundle.json`` checks it for a 256-bit curve).
- ``files/<path>``: one regular file per manifest entry.

Installed layout under the downloader's root::

    root/versions/<version>/...   the files of each kept version
    root/current  -> versions/<version>    (relative symlink)
    root/previous -> versions/<version>    (the version before, for rollback)

Every check runs in memory before anything is written, so a refused bundle
changes nothing on disk. Files are written with mode 0644.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

from smtestbed.services._runtime.errors import ConfigError, TestbedError
from smtestbed.services.gateway.observer import (
    PrivateKey,
    PublicKey,
    canonical_json,
    sign_bytes,
    verify_bytes,
)
from smtestbed.services.gateway.unsafe import SkippedChecks

BUNDLE_FORMAT = "smtb-bundle/1"
MANIFEST_NAME = "bundle.json"
SIGNATURE_NAME = "bundle.sig"
PAYLOAD_PREFIX = "files/"
CURRENT = "current"
PREVIOUS = "previous"
VERSIONS = "versions"
MAX_BUNDLE_BYTES = 256 << 20
"""Largest total of member sizes accepted (after decompression), bytes."""
MAX_MEMBERS = 100_000

_SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?",
    re.ASCII,
)
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class Refusal(StrEnum):
    """Why a bundle was refused."""

    BAD_SIGNATURE = "bad_signature"
    BAD_HASH = "bad_hash"
    UNSAFE_PATH = "unsafe_path"
    NOT_NEWER = "not_newer"
    WRONG_NAME = "wrong_name"
    MALFORMED = "malformed"


_MALFORMED = Refusal.MALFORMED


class BundleError(TestbedError):
    """An update bundle failed a check; nothing was written.

    Attributes:
        reason: which check failed.
        detail: the message without the reason.
        version: the bundle's version, "" when the check came before it was known.
    """

    def __init__(self, message: str, *, reason: Refusal, version: str = "") -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.detail = message
        self.version = version


class DownloaderError(TestbedError):
    """The installed versions are not in a state the downloader can work with."""


# --- versions ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Version:
    """A Semantic Versioning 2.0.0 version.

    Attributes:
        text: the version as written (the folder name under ``versions/``).
        precedence: sort key following SemVer §11 (build metadata ignored).
    """

    text: str
    precedence: tuple[Any, ...]

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse ``MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]``.

        Raises:
            BundleError: reason ``malformed`` when it is not a SemVer string.
        """
        match = _SEMVER.fullmatch(text)
        if match is None:
            raise BundleError(f"version {text!r} is not a semantic version", reason=_MALFORMED)
        major, minor, patch, pre, _ = match.groups()
        # A release sorts after its pre-releases; numeric identifiers sort before
        # alphanumeric ones and compare as numbers.
        ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in (pre or "").split("."))
        rank = (1, ()) if pre is None else (0, ids)
        return cls(text=text, precedence=(int(major), int(minor), int(patch), *rank))

    def newer_than(self, other: Version) -> bool:
        """Tell whether this version has higher precedence than ``other``."""
        return bool(self.precedence > other.precedence)


# --- building and reading bundles ----------------------------------------------------


def _source_files(source: Path) -> Iterator[tuple[str, Path]]:
    for folder, dirs, files in os.walk(source):
        dirs.sort()
        for name in [*dirs, *files]:
            if (Path(folder) / name).is_symlink():
                raise ConfigError(f"{Path(folder) / name} is a symlink", key="source")
        for name in sorted(files):
            path = Path(folder) / name
            yield path.relative_to(source).as_posix(), path


def build_bundle(source: Path, *, name: str, version: str, private_key: PrivateKey) -> bytes:
    """Pack the files under ``source`` into a bundle signed with the manufacturer key.

    Raises:
        ConfigError: the source is not a folder, holds a symlink, or the version
            is not a semantic version.
    """
    if not source.is_dir():
        raise ConfigError(f"{source} is not a folder", key="source")
    try:
        Version.parse(version)
    except BundleError as exc:
        raise ConfigError(exc.detail, key="version") from exc
    payload = {rel: path.read_bytes() for rel, path in _source_files(source)}
    manifest = canonical_json(
        {
            "format": BUNDLE_FORMAT,
            "name": name,
            "version": version,
            "files": [
                {"path": p, "sha256": hashlib.sha256(d).hexdigest(), "size": len(d)}
                for p, d in sorted(payload.items())
            ],
        }
    )
    members = {MANIFEST_NAME: manifest, SIGNATURE_NAME: sign_bytes(manifest, private_key)}
    members.update({PAYLOAD_PREFIX + p: d for p, d in sorted(payload.items())})
    return _tar(members)


def _tar(members: Mapping[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member_name, data in members.items():
            info = tarfile.TarInfo(member_name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@dataclass(frozen=True, slots=True, kw_only=True)
class BundleContents:
    """A bundle that passed signature, hash and path checks.

    Attributes:
        name: product name from the manifest.
        version: the bundle's version.
        files: relative path -> content.
    """

    name: str
    version: Version
    files: dict[str, bytes]


def check_path(path: str) -> None:
    """Refuse a member or manifest path that could leave the target folder.

    Raises:
        BundleError: reason ``unsafe_path`` for absolute paths, ``..``, ``.``
            or empty components, backslashes, drive letters and NUL bytes.
    """
    parts = path.split("/")
    bad = (
        not path
        or path.startswith("/")
        or "\\" in path
        or "\x00" in path
        or re.match(r"^[A-Za-z]:", path) is not None
        or any(p in ("", ".", "..") for p in parts)
    )
    if bad:
        raise BundleError(f"path {path!r} is not a plain relative path", reason=Refusal.UNSAFE_PATH)


def _read_members(bundle: bytes, max_bytes: int) -> dict[str, bytes]:
    try:
        with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:*") as tar:
            infos = tar.getmembers()
            _check_members(infos, max_bytes)
            return {i.name: _extract(tar, i) for i in infos if i.isreg()}
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BundleError(f"not a readable tar archive: {exc}", reason=_MALFORMED) from exc


def _extract(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(info)
    if handle is None:  # pragma: no cover - only for non-regular members, filtered above
        raise BundleError(f"member {info.name!r} has no content", reason=_MALFORMED)
    return handle.read()


def _check_members(infos: list[tarfile.TarInfo], max_bytes: int) -> None:
    if len(infos) > MAX_MEMBERS or sum(i.size for i in infos) > max_bytes:
        raise BundleError(
            f"more than {max_bytes} bytes or {MAX_MEMBERS} members", reason=_MALFORMED
        )
    seen: set[str] = set()
    for info in infos:
        check_path(info.name)
        if not (info.isreg() or info.isdir()):
            kind = "link" if info.issym() or info.islnk() else "special file"
            raise BundleError(f"member {info.name!r} is a {kind}", reason=Refusal.UNSAFE_PATH)
        if info.name in seen:
            raise BundleError(f"member {info.name!r} appears twice", reason=_MALFORMED)
        seen.add(info.name)


def read_bundle(
    bundle: bytes,
    public_key: PublicKey,
    *,
    max_bytes: int = MAX_BUNDLE_BYTES,
    skipped: SkippedChecks | None = None,
) -> BundleContents:
    """Check a bundle completely in memory and return its contents.

    Checks, in order: tar structure and member paths (``malformed``,
    ``unsafe_path``), the signature over ``bundle.json`` (``bad_signature``),
    the manifest (``malformed``, ``unsafe_path``), and every file against its
    SHA-256 and size (``bad_hash``).

    Raises:
        BundleError: with the reason of the first failed check.
    """
    members = _read_members(bundle, max_bytes)
    manifest_bytes = members.pop(MANIFEST_NAME, None)
    signature = members.pop(SIGNATURE_NAME, None)
    if manifest_bytes is None or signature is None:
        raise BundleError(f"{MANIFEST_NAME} or {SIGNATURE_NAME} missing", reason=_MALFORMED)
    signed = verify_bytes(manifest_bytes, signature, public_key)
    if not signed and not (skipped is not None and skipped.skips("update_signature")):
        raise BundleError(
            "the manifest is not signed by the manufacturer key", reason=Refusal.BAD_SIGNATURE
        )
    name, version, listed = _parse_manifest(manifest_bytes)
    payload = _payload(members)
    _check_payload(listed, payload, version.text)
    return BundleContents(name=name, version=version, files=payload)


def _payload(members: dict[str, bytes]) -> dict[str, bytes]:
    stray = sorted(m for m in members if not m.startswith(PAYLOAD_PREFIX))
    if stray:
        raise BundleError(f"unexpected member {stray[0]!r}", reason=_MALFORMED)
    return {m.removeprefix(PAYLOAD_PREFIX): data for m, data in members.items()}


def _parse_manifest(raw: bytes) -> tuple[str, Version, dict[str, tuple[str, int]]]:
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise BundleError(f"{MANIFEST_NAME} is not JSON: {exc}", reason=_MALFORMED) from exc
    if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{MANIFEST_NAME} is not a {BUNDLE_FORMAT} manifest", reason=_MALFORMED)
    name, version, files = doc.get("name"), doc.get("version"), doc.get("files")
    if not isinstance(name, str) or not name or not isinstance(version, str):
        raise BundleError("manifest needs a name and a version", reason=_MALFORMED)
    if not isinstance(files, list):
        raise BundleError("manifest 'files' is not a list", reason=_MALFORMED)
    listed = dict(_file_entry(entry) for entry in files)
    if len(listed) != len(files):
        raise BundleError("manifest lists a path twice", reason=_MALFORMED)
    _check_tree(listed)
    return name, Version.parse(version), listed


def _file_entry(entry: Any) -> tuple[str, tuple[str, int]]:
    ok = (
        isinstance(entry, dict)
        and set(entry) == {"path", "sha256", "size"}
        and isinstance(entry["path"], str)
        and isinstance(entry["sha256"], str)
        and _SHA256_HEX.fullmatch(entry["sha256"]) is not None
        and type(entry["size"]) is int
        and entry["size"] >= 0
    )
    if not ok:
        raise BundleError(f"bad manifest file entry {entry!r}", reason=_MALFORMED)
    check_path(entry["path"])
    return entry["path"], (entry["sha256"], entry["size"])


def _check_tree(paths: Mapping[str, object]) -> None:
    folders = {str(p) for path in paths for p in PurePosixPath(path).parents}
    clash = sorted(folders & paths.keys())
    if clash:
        raise BundleError(f"{clash[0]!r} is both a file and a folder", reason=_MALFORMED)


def _check_payload(
    listed: Mapping[str, tuple[str, int]], payload: Mapping[str, bytes], version: str
) -> None:
    for path in sorted(listed.keys() | payload.keys()):
        problem = ""
        if path not in payload:
            problem = "is listed but missing"
        elif path not in listed:
            problem = "is not listed in the manifest"
        elif listed[path] != (hashlib.sha256(payload[path]).hexdigest(), len(payload[path])):
            problem = "does not match its SHA-256 and size"
        if problem:
            raise BundleError(f"{path} {problem}", reason=Refusal.BAD_HASH, version=version)


# --- installing ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallResult:
    """The outcome of one install.

    Attributes:
        accepted: whether the bundle is now the current version.
        version: the bundle's version ("" when it could not be read).
        previous: the version that was current before (None on a fresh root).
        reason: why it was refused (None when accepted).
        message: one line for the event and the system log.
    """

    accepted: bool
    version: str
    previous: str | None
    reason: Refusal | None = None
    message: str = ""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


class Downloader:
    """Installs signed, newer bundles under ``root`` and rolls back (layout: module docstring).

    Args:
        root: the folder holding ``versions/``, ``current`` and ``previous``
            (created by the first accepted install).
        manufacturer_public_key: the key bundles must be signed with.
        name: when given, the product name bundles must carry.
        max_bytes: largest accepted bundle content, bytes.
    """

    def __init__(
        self,
        root: Path,
        manufacturer_public_key: PublicKey,
        *,
        name: str | None = None,
        max_bytes: int = MAX_BUNDLE_BYTES,
        skipped: SkippedChecks | None = None,
    ) -> None:
        self.root = root
        self.public_key = manufacturer_public_key
        self.name = name
        self.max_bytes = max_bytes
        self.skipped = skipped  # test-only switched-off checks (unsafe_skip_checks)

    def current_version(self) -> str | None:
        """Return the version ``current`` points to, or None before the first install."""
        return self._link_target(CURRENT)

    def previous_version(self) -> str | None:
        """Return the version ``rollback`` would return to, or None."""
        return self._link_target(PREVIOUS)

    def install(self, bundle: bytes) -> InstallResult:
        """Check ``bundle`` and, if it passes, make it the current version.

        A refused bundle changes nothing on disk. An accepted one is unpacked
        into ``versions/<v>.tmp``, synced, renamed to ``versions/<v>``, and
        ``current`` is switched with one atomic rename; the old current
        version becomes ``previous``; older versions and leftovers of an
        interrupted install are removed.

        Raises:
            DownloaderError: ``current`` or ``previous`` is not a link into
                ``versions/``, or writing failed (the next install cleans up).
        """
        current = self.current_version()
        try:
            contents = self._accept(bundle, current)
        except BundleError as exc:
            return InstallResult(
                accepted=False,
                version=exc.version,
                previous=current,
                reason=exc.reason,
                message=str(exc),
            )
        new = contents.version.text
        try:
            self._prune(keep={current, self.previous_version()})
            self._unpack(contents)
            if current is not None:
                self._switch(PREVIOUS, current)
            self._switch(CURRENT, new)
            self._prune(keep={new, current})
        except OSError as exc:
            raise DownloaderError(f"{self.root}: installing {new} failed: {exc}") from exc
        return InstallResult(
            accepted=True, version=new, previous=current, message=f"installed {new}"
        )

    def rollback(self) -> str:
        """Make the previous version current again; return it.

        The abandoned version is removed; a second rollback needs another install first.

        Raises:
            DownloaderError: there is no previous version.
        """
        previous = self.previous_version()
        if previous is None:
            raise DownloaderError(f"{self.root}: no previous version to roll back to")
        try:
            self._switch(CURRENT, previous)
            (self.root / PREVIOUS).unlink()
            _fsync_dir(self.root)
            self._prune(keep={previous})
        except OSError as exc:
            raise DownloaderError(f"{self.root}: rollback to {previous} failed: {exc}") from exc
        return previous

    def _accept(self, bundle: bytes, current: str | None) -> BundleContents:
        contents = read_bundle(
            bundle, self.public_key, max_bytes=self.max_bytes, skipped=self.skipped
        )
        new = contents.version
        if self.name is not None and contents.name != self.name:
            message = f"bundle is for {contents.name!r}, not {self.name!r}"
            raise BundleError(message, reason=Refusal.WRONG_NAME, version=new.text)
        if (
            current is not None
            and not new.newer_than(Version.parse(current))
            and not (self.skipped is not None and self.skipped.skips("update_version"))
        ):
            message = f"{new.text} is not newer than the current {current}"
            raise BundleError(message, reason=Refusal.NOT_NEWER, version=new.text)
        return contents

    def _link_target(self, link: str) -> str | None:
        path = self.root / link
        if not path.is_symlink():
            if path.exists():
                raise DownloaderError(f"{path} is not a symlink")
            return None
        target = PurePosixPath(os.readlink(path))
        if target.parent != PurePosixPath(VERSIONS) or not (self.root / target).is_dir():
            raise DownloaderError(f"{path} points to {target}, not to a folder in {VERSIONS}/")
        return target.name

    def _switch(self, link: str, version: str) -> None:
        """Point ``link`` at ``versions/<version>`` atomically (new link, then rename)."""
        temp = self.root / f"{link}.tmp"
        temp.unlink(missing_ok=True)
        os.symlink(f"{VERSIONS}/{version}", temp)
        os.replace(temp, self.root / link)
        _fsync_dir(self.root)

    def _unpack(self, contents: BundleContents) -> None:
        versions = self.root / VERSIONS
        final, temp = versions / contents.version.text, versions / f"{contents.version.text}.tmp"
        temp.mkdir(parents=True)
        folders = {temp}
        for rel, data in sorted(contents.files.items()):
            path = temp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            folders.update(path.parents)
            _write_file(path, data)
        for folder in sorted(f for f in folders if f.is_relative_to(temp)):
            _fsync_dir(folder)
        os.rename(temp, final)
        _fsync_dir(versions)
        _fsync_dir(self.root)

    def _prune(self, keep: set[str | None]) -> None:
        """Remove every version folder not kept, leftovers of interrupted installs included."""
        for link in (CURRENT, PREVIOUS):
            (self.root / f"{link}.tmp").unlink(missing_ok=True)
        versions = self.root / VERSIONS
        if not versions.is_dir():
            return
        for entry in versions.iterdir():
            if entry.name in keep:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        _fsync_dir(versions)
