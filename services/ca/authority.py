"""The certificate authority: issue from CSRs, revoke, publish CRLs, hand out tokens.

:class:`Authority` works on one CA directory (see :mod:`.state`). It is used
the same way by the command line (admin, local) and by the CA service (HTTP
requests, with the identity the HTTP layer authenticated). Each outcome is
reported to an event sink as ``ca.cert_issued``, ``ca.cert_revoked``,
``ca.crl_published`` or ``ca.request_refused``; the service publishes them on
the bus, the command line passes none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from smtestbed.proto import topics
from smtestbed.services._runtime.errors import RequestError
from smtestbed.services.ca.access import PURPOSES, Requester, authorise, new_token
from smtestbed.services.ca.builder import Issuer, Subject, build_certificate
from smtestbed.services.ca.crl import build_crl, parse_reason
from smtestbed.services.ca.csr import CheckedRequest, check_request, load_csr, lookup_profile
from smtestbed.services.ca.errors import InvalidRequestError, NotFoundError
from smtestbed.services.ca.hierarchy import CA_NAMES, create_hierarchy, load_issuers
from smtestbed.services.ca.profiles import end_entity_subject, is_dns_name
from smtestbed.services.ca.state import CaStore, CertRecord, CrlRecord

__all__ = ["Authority", "EventSink", "Issued", "Policy", "format_serial", "parse_serial"]

EventSink = Callable[[str, dict[str, Any]], object]
Clock = Callable[[], datetime]


def _wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """Operating settings of an authority (not stored in the directory)."""

    crl_validity: timedelta = timedelta(days=1)
    token_ttl: timedelta = timedelta(days=7)


@dataclass(frozen=True, slots=True, kw_only=True)
class Issued:
    """A newly issued certificate and the CA chain above it (issuing CA first)."""

    certificate: x509.Certificate
    profile: str
    issuer: str
    subject: str
    chain: tuple[x509.Certificate, ...]

    @property
    def serial(self) -> int:
        """The certificate's serial number."""
        return self.certificate.serial_number


def format_serial(serial: int) -> str:
    """Return a serial as the CA shows it: lower-case hex, no prefix."""
    return f"{serial:x}"


def parse_serial(text: str) -> int:
    """Parse a hex serial (``5f3a...``, ``0x5F3A...`` or ``5F:3A:...``)."""
    cleaned = text.strip().lower().removeprefix("0x").replace(":", "")
    try:
        serial = int(cleaned, 16)
    except ValueError:
        raise InvalidRequestError(f"{text!r} is not a hex serial number", field="serial") from None
    if serial <= 0:
        raise InvalidRequestError("serial numbers are positive", field="serial")
    return serial


class Authority:
    """The CAs of one directory, their keys unlocked."""

    def __init__(
        self,
        store: CaStore,
        issuers: dict[str, Issuer],
        *,
        policy: Policy | None = None,
        now: Clock = _wall_clock,
        events: EventSink | None = None,
    ) -> None:
        self.store = store
        self.issuers = issuers
        self.policy = policy or Policy()
        self.base_url = store.meta("base_url")
        self.now = now
        self.events = events

    @classmethod
    def create(
        cls,
        folder: Path,
        passphrase: bytes,
        *,
        family: str = "brainpool",
        base_url: str,
        policy: Policy | None = None,
        now: Clock = _wall_clock,
    ) -> Authority:
        """Create a CA directory: root, sub-CAs and the first CRL of each."""
        store = CaStore.create(folder)
        issuers = create_hierarchy(store, passphrase, family=family, base_url=base_url, now=now())
        authority = cls(store, issuers, policy=policy, now=now)
        for name in CA_NAMES:
            authority.publish_crl(name)
        return authority

    @classmethod
    def open(
        cls,
        folder: Path,
        passphrase: bytes,
        *,
        policy: Policy | None = None,
        now: Clock = _wall_clock,
        events: EventSink | None = None,
    ) -> Authority:
        """Open an existing CA directory and decrypt its keys."""
        store = CaStore.open(folder)
        return cls(store, load_issuers(store, passphrase), policy=policy, now=now, events=events)

    def close(self) -> None:
        """Close the state database."""
        self.store.close()

    # -- reading ------------------------------------------------------------

    def issuer(self, name: str) -> Issuer:
        """Return CA ``name``; unknown names are a NotFoundError naming ``name``."""
        try:
            return self.issuers[name]
        except KeyError:
            known = ", ".join(self.issuers)
            raise NotFoundError(f"no CA {name!r} (known: {known})", field="name") from None

    def chain(self, name: str) -> tuple[x509.Certificate, ...]:
        """Return the certificates from CA ``name`` up to the root."""
        if name == "root":
            return (self.issuers["root"].certificate,)
        return (self.issuer(name).certificate, self.issuers["root"].certificate)

    def current_crl(self, name: str) -> CrlRecord:
        """Return the newest CRL of CA ``name``."""
        self.issuer(name)
        record = self.store.latest_crl(name)
        if record is None:
            raise NotFoundError(f"CA {name!r} has published no CRL yet", field="name")
        return record

    def status(self) -> dict[str, Any]:
        """Return a summary: CAs, their current CRLs and certificate counts."""
        cas = []
        for name, issuer in self.issuers.items():
            crl = self.store.latest_crl(name)
            cas.append(
                {
                    "name": name,
                    "subject": issuer.certificate.subject.rfc4514_string(),
                    "curve": issuer.key.curve.name,
                    "not_after": issuer.certificate.not_valid_after_utc.isoformat(),
                    "crl_number": crl.number if crl else None,
                    "crl_next_update": crl.next_update.isoformat() if crl else None,
                }
            )
        return {"base_url": self.base_url, "cas": cas, "certificates": self.store.counts()}

    # -- issuing ------------------------------------------------------------

    def issue(self, csr: bytes, profile: str, requester: Requester) -> Issued:
        """Issue a certificate from a CSR (PEM or DER) under ``profile``.

        Raises:
            InvalidRequestError: bad CSR, unknown profile, key or subject not allowed.
            RefusedError: the requester may not ask for this profile and subject.
        """
        try:
            checked = check_request(load_csr(csr), profile)
            with self.store.transaction():
                authorise(
                    self.store,
                    requester,
                    purpose="issue",
                    profile=checked.profile,
                    subject=checked.common_name,
                    now=self.now(),
                )
                issued = self._sign(checked)
        except RequestError as exc:
            self._refused("issue", exc, profile=profile)
            raise
        self._emit(
            topics.CA_CERT_ISSUED,
            serial=format_serial(issued.serial),
            profile=issued.profile,
            issuer=issued.issuer,
            subject=issued.subject,
            not_after=issued.certificate.not_valid_after_utc.isoformat(),
        )
        return issued

    def _sign(self, checked: CheckedRequest) -> Issued:
        profile, name = checked.profile, checked.common_name
        issuer = self.issuers[profile.issuer]
        subject = Subject(
            name=end_entity_subject(profile, name),
            public_key=checked.public_key,
            dns_name=name if profile.dns_name else "",
        )
        cert = build_certificate(
            profile,
            subject,
            issuer=issuer,
            signing_key=issuer.key,
            serial=x509.random_serial_number(),
            now=self.now(),
            base_url=self.base_url,
        )
        self.store.add_certificates([_record(cert, issuer.name, name, profile.name)])
        return Issued(
            certificate=cert,
            profile=profile.name,
            issuer=issuer.name,
            subject=name,
            chain=self.chain(issuer.name),
        )

    # -- revoking and CRLs --------------------------------------------------

    def revoke(self, serial: int, reason: str, requester: Requester) -> CertRecord:
        """Revoke certificate ``serial`` and publish its issuer's next CRL.

        Raises:
            NotFoundError: no certificate with this serial.
            InvalidRequestError: unknown reason, or already revoked.
            RefusedError: the requester may not revoke it.
        """
        try:
            record = self._revoke(serial, reason, requester)
        except RequestError as exc:
            self._refused("revoke", exc, serial=format_serial(serial))
            raise
        self._emit(
            topics.CA_CERT_REVOKED,
            serial=format_serial(serial),
            issuer=record.issuer,
            subject=record.subject,
            profile=record.profile,
            reason=record.reason,
        )
        self.publish_crl(record.issuer)
        return record

    def _revoke(self, serial: int, reason: str, requester: Requester) -> CertRecord:
        flag = parse_reason(reason)
        with self.store.transaction():
            record = self.store.certificate(serial)
            if record is None:
                raise NotFoundError(f"no certificate {format_serial(serial)}", field="serial")
            if record.status != "valid":
                raise InvalidRequestError("certificate is already revoked", field="serial")
            authorise(
                self.store,
                requester,
                purpose="revoke",
                profile=lookup_profile(record.profile, end_entity=False),
                subject=record.subject,
                now=self.now(),
            )
            self.store.mark_revoked(serial, self.now(), flag.value)
            updated = self.store.certificate(serial)
        assert updated is not None
        return updated

    def publish_crl(self, name: str) -> CrlRecord:
        """Sign and store the next CRL of CA ``name``; write its PEM copy."""
        issuer = self.issuer(name)
        now = self.now().replace(microsecond=0)
        with self.store.transaction():
            number = self.store.last_crl_number(name) + 1
            revoked = self.store.revoked(name)
            crl = build_crl(
                issuer,
                revoked,
                number=number,
                this_update=now,
                validity=self.policy.crl_validity,
            )
            record = CrlRecord(
                issuer=name,
                number=number,
                this_update=now,
                next_update=now + self.policy.crl_validity,
                entries=len(revoked),
                der=crl.public_bytes(serialization.Encoding.DER),
            )
            self.store.add_crl(record)
        self.store.write_pem(f"crl/{name}.crl.pem", crl.public_bytes(serialization.Encoding.PEM))
        self._emit(
            topics.CA_CRL_PUBLISHED,
            ca=name,
            number=number,
            entries=record.entries,
            this_update=now.isoformat(),
            next_update=record.next_update.isoformat(),
        )
        return record

    def refresh_crls(self, margin: timedelta) -> list[CrlRecord]:
        """Publish a new CRL for each CA whose current one expires within ``margin``."""
        now = self.now()
        published = []
        for name in self.issuers:
            current = self.store.latest_crl(name)
            if current is None or current.next_update - margin <= now:
                published.append(self.publish_crl(name))
        return published

    # -- tokens -------------------------------------------------------------

    def create_token(self, *, profile: str, subject: str, purpose: str = "issue") -> str:
        """Create a one-time token for ``purpose`` of a ``profile`` certificate for ``subject``."""
        if purpose not in PURPOSES:
            raise InvalidRequestError(f"purpose must be one of {PURPOSES}", field="purpose")
        lookup_profile(profile, end_entity=purpose == "issue")
        if not is_dns_name(subject) and purpose == "issue":
            raise InvalidRequestError(
                f"{subject!r} is not a dotted lower-case host name", field="subject"
            )
        with self.store.transaction():
            return new_token(
                self.store,
                purpose=purpose,
                profile=profile,
                subject=subject,
                now=self.now(),
                ttl=self.policy.token_ttl,
            )

    # -- events -------------------------------------------------------------

    def _emit(self, kind: str, **body: Any) -> None:
        if self.events is not None:
            self.events(kind, body)

    def report_refused(self, action: str, exc: RequestError, **extra: Any) -> None:
        """Report a request the HTTP layer refused (``ca.request_refused``)."""
        self._refused(action, exc, **extra)

    def _refused(self, action: str, exc: RequestError, **extra: Any) -> None:
        self._emit(
            topics.CA_REQUEST_REFUSED, action=action, field=exc.field, error=str(exc), **extra
        )


def _record(cert: x509.Certificate, issuer: str, subject: str, profile: str) -> CertRecord:
    return CertRecord(
        serial=cert.serial_number,
        issuer=issuer,
        subject=subject,
        profile=profile,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        status="valid",
        revoked_at=None,
        reason=None,
        der=cert.public_bytes(serialization.Encoding.DER),
    )
