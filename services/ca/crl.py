"""Certificate revocation lists: reasons, building and signing.

A CRL (RFC 5280 §5) per issuing CA: version 2, signed with the CA key (hash
by key size), thisUpdate/nextUpdate, AKI (the CA's SKI), a CRL number that
grows by one with each CRL of that CA, and per entry the revocation time and
a reason code. The reason ``unspecified`` is written as no reason extension,
as RFC 5280 §5.3.1 asks.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from cryptography import x509
from smtestbed.services.ca.builder import Issuer
from smtestbed.services.ca.errors import InvalidRequestError
from smtestbed.services.ca.profiles import hash_for

__all__ = ["REASONS", "build_crl", "parse_reason"]

REASONS: dict[str, x509.ReasonFlags] = {
    flag.value: flag
    for flag in (
        x509.ReasonFlags.unspecified,
        x509.ReasonFlags.key_compromise,
        x509.ReasonFlags.ca_compromise,
        x509.ReasonFlags.affiliation_changed,
        x509.ReasonFlags.superseded,
        x509.ReasonFlags.cessation_of_operation,
        x509.ReasonFlags.privilege_withdrawn,
    )
}
"""Accepted reasons by their RFC 5280 names (``keyCompromise``, ...). certificateHold is
left out: a CRL here only ever grows, nothing is put on hold and taken back."""


def parse_reason(text: str) -> x509.ReasonFlags:
    """Return the reason named ``text`` (case-insensitive RFC 5280 name)."""
    for name, flag in REASONS.items():
        if name.lower() == text.strip().lower():
            return flag
    raise InvalidRequestError(
        f"unknown reason {text!r} (known: {', '.join(REASONS)})", field="reason"
    )


def build_crl(
    issuer: Issuer,
    revoked: Iterable[tuple[int, datetime, str]],
    *,
    number: int,
    this_update: datetime,
    validity: timedelta,
) -> x509.CertificateRevocationList:
    """Sign the CRL of ``issuer`` listing ``revoked`` (serial, time, reason name).

    Args:
        number: the CRL number, greater than that of the CA's previous CRL.
        this_update: issuing time (UTC); nextUpdate is ``this_update + validity``.
    """
    ski = issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    # The entries go in through the constructor: add_revoked_certificate copies
    # the list on each call, which makes 10^5 entries take minutes instead of seconds.
    builder = (
        x509.CertificateRevocationListBuilder(
            revoked_certificates=[_entry(s, when, REASONS[reason]) for s, when, reason in revoked]
        )
        .issuer_name(issuer.certificate.subject)
        .last_update(this_update)
        .next_update(this_update + validity)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    )
    return builder.sign(issuer.key, hash_for(issuer.key))


def _entry(serial: int, when: datetime, reason: x509.ReasonFlags) -> x509.RevokedCertificate:
    entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
    if reason is not x509.ReasonFlags.unspecified:
        entry = entry.add_extension(x509.CRLReason(reason), critical=False)
    return entry.build()
