"""The CA directory: SQLite state, encrypted private keys, PEM copies.

Layout of a CA directory::

    DIR/
      ca.sqlite3            certificates, CRL numbers, enrolment tokens (0600)
      private/              (0700)
        <ca>.key.pem        PKCS#8, encrypted with the CA passphrase (0600)
      certs/<ca>.pem        CA certificates, PEM (0644)
      certs/chain.pem       every CA certificate, root last (0644)
      crl/<ca>.crl.pem      the current CRL of each CA, PEM (0644)

``<ca>`` is ``root``, ``smgw`` or ``emt``. Serial numbers are stored as
lower-case hex without prefix; times as integer Unix seconds (UTC).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from smtestbed.services._runtime.pki import load_owner_key
from smtestbed.services.ca.errors import CaError

__all__ = [
    "DB_FILE",
    "CaStore",
    "CertRecord",
    "CrlRecord",
    "TokenRecord",
    "from_ts",
    "to_ts",
    "write_file",
]

DB_FILE = "ca.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS certs (
    serial TEXT PRIMARY KEY, issuer TEXT NOT NULL, subject TEXT NOT NULL,
    profile TEXT NOT NULL, not_before INTEGER NOT NULL, not_after INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('valid', 'revoked')),
    revoked_at INTEGER, reason TEXT, der BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS certs_revoked ON certs (issuer, status);
CREATE TABLE IF NOT EXISTS crls (
    issuer TEXT NOT NULL, number INTEGER NOT NULL, this_update INTEGER NOT NULL,
    next_update INTEGER NOT NULL, entries INTEGER NOT NULL, der BLOB NOT NULL,
    PRIMARY KEY (issuer, number));
CREATE TABLE IF NOT EXISTS tokens (
    digest TEXT PRIMARY KEY, purpose TEXT NOT NULL, profile TEXT NOT NULL,
    subject TEXT NOT NULL, created INTEGER NOT NULL, expires INTEGER NOT NULL,
    used_at INTEGER);
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class CertRecord:
    """One issued certificate as the CA remembers it."""

    serial: int
    issuer: str
    subject: str
    profile: str
    not_before: datetime
    not_after: datetime
    status: str
    revoked_at: datetime | None
    reason: str | None
    der: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class CrlRecord:
    """One published CRL."""

    issuer: str
    number: int
    this_update: datetime
    next_update: datetime
    entries: int
    der: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenRecord:
    """An enrolment (or revocation) token, stored as its SHA-256 digest."""

    purpose: str
    profile: str
    subject: str
    expires: datetime
    used_at: datetime | None


def to_ts(when: datetime) -> int:
    """Return ``when`` as integer Unix seconds."""
    return int(when.timestamp())


def from_ts(seconds: int) -> datetime:
    """Return Unix seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, UTC)


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` atomically with file mode ``mode`` (never wider, not even briefly)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)  # the umask may have narrowed it
    tmp.replace(path)


class CaStore:
    """SQLite state and key files of one CA directory."""

    def __init__(self, folder: Path, db: sqlite3.Connection) -> None:
        self.folder = folder
        self.db = db

    @classmethod
    def create(cls, folder: Path) -> CaStore:
        """Create a new CA directory (refused if one exists there)."""
        if (folder / DB_FILE).exists():
            raise CaError(f"{folder}: already a CA directory")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "private").mkdir(mode=0o700, exist_ok=True)
        os.chmod(folder / "private", 0o700)
        for sub in ("certs", "crl"):
            (folder / sub).mkdir(exist_ok=True)
        os.close(os.open(folder / DB_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return cls._connect(folder)

    @classmethod
    def open(cls, folder: Path) -> CaStore:
        """Open an existing CA directory."""
        if not (folder / DB_FILE).is_file():
            raise CaError(f"{folder}: not a CA directory (run `smtb ca init --dir {folder}`)")
        return cls._connect(folder)

    @classmethod
    def _connect(cls, folder: Path) -> CaStore:
        try:
            db = sqlite3.connect(folder / DB_FILE, isolation_level=None, timeout=10.0)
            # WAL: one fsync per commit instead of several; readers (the service
            # answering GET /crl) never wait for the CLI writing, nor vice versa.
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise CaError(f"{folder / DB_FILE}: {exc}") from exc
        return cls(folder, db)

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run a block as one write transaction (rolled back if it raises)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- meta ---------------------------------------------------------------

    def set_meta(self, key: str, value: str) -> None:
        """Store one setting of the CA (curve family, base URL, ...)."""
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def meta(self, key: str) -> str:
        """Return one setting of the CA."""
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise CaError(f"{self.folder}: CA directory has no {key!r} (incomplete init?)")
        return str(row[0])

    # -- keys and PEM copies ------------------------------------------------

    def key_path(self, name: str) -> Path:
        """Return the private key file of CA ``name``."""
        return self.folder / "private" / f"{name}.key.pem"

    def write_key(self, name: str, key: ec.EllipticCurvePrivateKey, passphrase: bytes) -> None:
        """Store a CA key as encrypted PKCS#8, mode 0600."""
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase),
        )
        write_file(self.key_path(name), pem, 0o600)

    def load_key(self, name: str, passphrase: bytes) -> ec.EllipticCurvePrivateKey:
        """Load and decrypt CA key ``name``; a too open file or a wrong passphrase is refused."""
        return load_owner_key(
            self.key_path(name),
            password=passphrase,
            what="CA key",
            undecodable="cannot decrypt CA key (wrong SMTB_CA_PASSPHRASE?)",
            error=CaError,
        )

    def write_pem(self, relative: str, pem: bytes) -> Path:
        """Write a public PEM file (certificate, CRL) under the directory, mode 0644."""
        path = self.folder / relative
        write_file(path, pem, 0o644)
        return path

    # -- certificates -------------------------------------------------------

    def add_certificates(self, records: Iterable[CertRecord]) -> None:
        """Insert issued certificates (in the caller's transaction, if any)."""
        self.db.executemany(
            "INSERT INTO certs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    f"{r.serial:x}",
                    r.issuer,
                    r.subject,
                    r.profile,
                    to_ts(r.not_before),
                    to_ts(r.not_after),
                    r.status,
                    None if r.revoked_at is None else to_ts(r.revoked_at),
                    r.reason,
                    r.der,
                )
                for r in records
            ),
        )

    def certificate(self, serial: int) -> CertRecord | None:
        """Return the record of ``serial``, or None."""
        row = self.db.execute("SELECT * FROM certs WHERE serial = ?", (f"{serial:x}",)).fetchone()
        return None if row is None else _cert_record(row)

    def certificates(self, *, limit: int = 1000) -> list[CertRecord]:
        """Return the most recently issued certificates, newest first."""
        rows = self.db.execute(
            "SELECT * FROM certs ORDER BY not_before DESC, rowid DESC LIMIT ?", (limit,)
        )
        return [_cert_record(row) for row in rows]

    def mark_revoked(self, serial: int, when: datetime, reason: str) -> bool:
        """Mark ``serial`` revoked; return False when it was not valid."""
        cur = self.db.execute(
            "UPDATE certs SET status = 'revoked', revoked_at = ?, reason = ? "
            "WHERE serial = ? AND status = 'valid'",
            (to_ts(when), reason, f"{serial:x}"),
        )
        return cur.rowcount == 1

    def revoked(self, issuer: str) -> list[tuple[int, datetime, str]]:
        """Return (serial, revocation time, reason) of every revoked certificate of ``issuer``."""
        rows = self.db.execute(
            "SELECT serial, revoked_at, reason FROM certs WHERE issuer = ? AND status = 'revoked'",
            (issuer,),
        )
        return [(int(s, 16), from_ts(t), r) for s, t, r in rows]

    def counts(self) -> dict[str, int]:
        """Return the number of certificates per status."""
        rows = self.db.execute("SELECT status, count(*) FROM certs GROUP BY status")
        return {"valid": 0, "revoked": 0, **{s: int(n) for s, n in rows}}

    # -- CRLs ---------------------------------------------------------------

    def last_crl_number(self, issuer: str) -> int:
        """Return the highest CRL number of ``issuer`` (0 before the first CRL)."""
        row = self.db.execute("SELECT max(number) FROM crls WHERE issuer = ?", (issuer,)).fetchone()
        return int(row[0] or 0)

    def add_crl(self, record: CrlRecord) -> None:
        """Store a published CRL."""
        self.db.execute(
            "INSERT INTO crls VALUES (?, ?, ?, ?, ?, ?)",
            (
                record.issuer,
                record.number,
                to_ts(record.this_update),
                to_ts(record.next_update),
                record.entries,
                record.der,
            ),
        )

    def latest_crl(self, issuer: str) -> CrlRecord | None:
        """Return the newest CRL of ``issuer``, or None."""
        row = self.db.execute(
            "SELECT * FROM crls WHERE issuer = ? ORDER BY number DESC LIMIT 1", (issuer,)
        ).fetchone()
        if row is None:
            return None
        issuer_, number, this_update, next_update, entries, der = row
        return CrlRecord(
            issuer=issuer_,
            number=number,
            this_update=from_ts(this_update),
            next_update=from_ts(next_update),
            entries=entries,
            der=bytes(der),
        )

    # -- tokens -------------------------------------------------------------

    def add_token(self, digest: str, record: TokenRecord, created: datetime) -> None:
        """Store a token by its digest."""
        self.db.execute(
            "INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?, NULL)",
            (
                digest,
                record.purpose,
                record.profile,
                record.subject,
                to_ts(created),
                to_ts(record.expires),
            ),
        )

    def token(self, digest: str) -> TokenRecord | None:
        """Return the token with ``digest``, or None."""
        row = self.db.execute(
            "SELECT purpose, profile, subject, expires, used_at FROM tokens WHERE digest = ?",
            (digest,),
        ).fetchone()
        if row is None:
            return None
        purpose, profile, subject, expires, used_at = row
        return TokenRecord(
            purpose=purpose,
            profile=profile,
            subject=subject,
            expires=from_ts(expires),
            used_at=None if used_at is None else from_ts(used_at),
        )

    def use_token(self, digest: str, when: datetime) -> bool:
        """Mark a token used; return False if it was used already (one-time tokens)."""
        cur = self.db.execute(
            "UPDATE tokens SET used_at = ? WHERE digest = ? AND used_at IS NULL",
            (to_ts(when), digest),
        )
        return cur.rowcount == 1


def _cert_record(row: Any) -> CertRecord:
    serial, issuer, subject, profile, nb, na, status, rev_at, reason, der = row
    return CertRecord(
        serial=int(serial, 16),
        issuer=issuer,
        subject=subject,
        profile=profile,
        not_before=from_ts(nb),
        not_after=from_ts(na),
        status=status,
        revoked_at=None if rev_at is None else from_ts(rev_at),
        reason=reason,
        der=bytes(der),
    )
