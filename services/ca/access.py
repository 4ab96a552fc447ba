"""Who may ask the CA for what: enrolment tokens, client certificates, the admin.

- A **token** is one-time, bound to a purpose (``issue`` or ``revoke``), a
  profile and a subject CN, and expires. The CA stores only its SHA-256.
- A **client certificate** (passed by the HTTP layer once TLS authenticated
  it) must be one this CA issued, still valid and not revoked; its profile
  must be in the target profile's ``requested_by``, and a holder of the same
  role may only act on its own subject (renewal, self-revocation).
- The **admin** may issue and revoke anything: the operator at the command
  line, who holds the CA directory anyway, and over HTTP whoever presents the
  admin secret, which the HTTP layer accepts for revocation and for creating
  tokens only (issuing still takes a token or a client certificate).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from smtestbed.services.ca.errors import RefusedError
from smtestbed.services.ca.profiles import PROFILES, Profile
from smtestbed.services.ca.state import CaStore, CertRecord, TokenRecord

__all__ = ["PURPOSES", "Requester", "authorise", "new_token", "token_digest"]

PURPOSES = ("issue", "revoke")


@dataclass(frozen=True, slots=True, kw_only=True)
class Requester:
    """The authenticated identity behind a request."""

    token: str = ""
    client_certificate: x509.Certificate | None = None
    admin: bool = False


def token_digest(token: str) -> str:
    """Return the stored form of a token (hex SHA-256 of its UTF-8 bytes)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(
    store: CaStore, *, purpose: str, profile: str, subject: str, now: datetime, ttl: timedelta
) -> str:
    """Create a one-time token; return it (only its digest is stored)."""
    token = secrets.token_urlsafe(24)
    record = TokenRecord(
        purpose=purpose, profile=profile, subject=subject, expires=now + ttl, used_at=None
    )
    store.add_token(token_digest(token), record, now)
    return token


def authorise(
    store: CaStore,
    requester: Requester,
    *,
    purpose: str,
    profile: Profile,
    subject: str,
    now: datetime,
) -> str:
    """Decide whether ``requester`` may ``purpose`` a ``profile`` certificate for ``subject``.

    A token is used up here, so call this after every other check passed.

    Returns:
        How the requester was authorised (``admin``, ``token``, ``client:<serial hex>``).
    """
    if requester.admin:
        return "admin"
    if requester.client_certificate is not None:
        holder = _holder(store, requester.client_certificate, now)
        _check_holder(holder, profile, subject)
        return f"client:{holder.serial:x}"
    if requester.token:
        _use_token(
            store, requester.token, purpose=purpose, profile=profile.name, subject=subject, now=now
        )
        return "token"
    raise RefusedError("no enrolment token or client certificate", field="token")


def _use_token(
    store: CaStore, token: str, *, purpose: str, profile: str, subject: str, now: datetime
) -> None:
    digest = token_digest(token)
    record = store.token(digest)
    if record is None:
        raise RefusedError("unknown token", field="token")
    if record.purpose != purpose:
        raise RefusedError(f"token is for {record.purpose}, not {purpose}", field="token")
    if record.profile != profile or record.subject != subject:
        raise RefusedError(
            f"token is bound to {record.profile} for {record.subject}", field="token"
        )
    if record.expires <= now:
        raise RefusedError("token expired", field="token")
    if record.used_at is not None or not store.use_token(digest, now):
        raise RefusedError("token already used", field="token")


def _holder(store: CaStore, cert: x509.Certificate, now: datetime) -> CertRecord:
    record = store.certificate(cert.serial_number)
    der = cert.public_bytes(serialization.Encoding.DER)
    if record is None or record.der != der:
        raise RefusedError("client certificate not issued by this CA", field="client_certificate")
    if record.status != "valid":
        raise RefusedError("client certificate is revoked", field="client_certificate")
    if not record.not_before <= now < record.not_after:
        raise RefusedError("client certificate is not valid now", field="client_certificate")
    return record


def _check_holder(holder: CertRecord, profile: Profile, subject: str) -> None:
    if holder.profile not in profile.requested_by:
        raise RefusedError(
            f"holders of {holder.profile} may not ask for {profile.name}",
            field="client_certificate",
        )
    if PROFILES[holder.profile].role == profile.role and holder.subject != subject:
        raise RefusedError(
            f"{holder.subject} may only act on its own subject, not {subject}",
            field="client_certificate",
        )
