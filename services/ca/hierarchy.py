"""Create a CA hierarchy: the root, the sub-CAs, their keys and certificates on disk."""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from smtestbed.services.ca.builder import Issuer, Subject, build_certificate
from smtestbed.services.ca.errors import CaError
from smtestbed.services.ca.profiles import (
    CA_CURVES,
    CURVES,
    PROFILES,
    ROOT,
    SUB_CAS,
    ca_subject,
)
from smtestbed.services.ca.state import CaStore, CertRecord

__all__ = ["CA_NAMES", "create_hierarchy", "load_issuers"]

CA_NAMES = (ROOT, *SUB_CAS)
"""Every CA of a directory, the root first."""


def create_hierarchy(
    store: CaStore, passphrase: bytes, *, family: str, base_url: str, now: datetime
) -> dict[str, Issuer]:
    """Generate root and sub-CA keys and certificates and store them in ``store``.

    Args:
        family: ``brainpool`` (root brainpoolP384r1, sub-CAs brainpoolP256r1)
            or ``nist`` (P-384, P-256).
        base_url: HTTP base of the CA service, written into CRL distribution points.
    """
    if family not in CA_CURVES:
        raise CaError(f"unknown curve family {family!r} (known: {', '.join(CA_CURVES)})")
    root_curve, sub_curve = CA_CURVES[family]
    root = _make_ca(ROOT, root_curve, None, base_url, now)
    issuers = {ROOT: root}
    for name in SUB_CAS:
        issuers[name] = _make_ca(name, sub_curve, root, base_url, now)
    with store.transaction():
        for key, value in (("family", family), ("base_url", base_url)):
            store.set_meta(key, value)
        for issuer in issuers.values():
            _store_ca(store, issuer, passphrase)
        store.add_certificates(_record(issuers[n]) for n in SUB_CAS)
    chain = b"".join(_pem(issuers[n].certificate) for n in reversed(CA_NAMES))
    store.write_pem("certs/chain.pem", chain)
    return issuers


def load_issuers(store: CaStore, passphrase: bytes) -> dict[str, Issuer]:
    """Load every CA's certificate and decrypted key from ``store``."""
    issuers = {}
    for name in CA_NAMES:
        pem = store.meta(f"cert.{name}").encode()
        issuers[name] = Issuer(
            name=name,
            certificate=x509.load_pem_x509_certificate(pem),
            key=store.load_key(name, passphrase),
        )
    return issuers


def _make_ca(name: str, curve: str, parent: Issuer | None, base_url: str, now: datetime) -> Issuer:
    key = ec.generate_private_key(CURVES[curve]())
    profile = PROFILES["root-ca" if parent is None else "sub-ca"]
    cert = build_certificate(
        profile,
        Subject(name=ca_subject(name), public_key=key.public_key()),
        issuer=parent,
        signing_key=key if parent is None else parent.key,
        serial=x509.random_serial_number(),
        now=now,
        base_url=base_url,
    )
    return Issuer(name=name, certificate=cert, key=key)


def _store_ca(store: CaStore, issuer: Issuer, passphrase: bytes) -> None:
    store.write_key(issuer.name, issuer.key, passphrase)
    pem = _pem(issuer.certificate)
    store.set_meta(f"cert.{issuer.name}", pem.decode())
    store.write_pem(f"certs/{issuer.name}.pem", pem)


def _record(issuer: Issuer) -> CertRecord:
    cert = issuer.certificate
    return CertRecord(
        serial=cert.serial_number,
        issuer=ROOT,
        subject=issuer.name,
        profile="sub-ca",
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        status="valid",
        revoked_at=None,
        reason=None,
        der=cert.public_bytes(serialization.Encoding.DER),
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)
