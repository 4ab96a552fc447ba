"""Publishing the CA's certificates and CRLs to LDAP as they come out.

The service hands every issued certificate and every new CRL to
:class:`LdapMirror`; at start it publishes the CA certificates and current
CRLs. An LDAP server that refuses or is down does not stop the CA: the
failure is logged and counted, and the next publication tries again.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from smtestbed.services._runtime.errors import TestbedError
from smtestbed.services._runtime.logging import get_logger
from smtestbed.services.ca.authority import Authority, parse_serial
from smtestbed.services.ca.hierarchy import CA_NAMES
from smtestbed.services.ca.ldap import LdapPublisher


class LdapMirror:
    """Keep an LDAP directory in step with one CA."""

    def __init__(self, publisher: LdapPublisher, authority: Authority) -> None:
        self.publisher = publisher
        self.authority = authority
        self.published = 0
        self.failed = 0
        self._log = get_logger(component="ldap")

    def publish_all(self) -> None:
        """Publish every CA certificate and each CA's current CRL."""
        for name in CA_NAMES:
            self._try(
                lambda n=name: self.publisher.publish_ca_certificate(self.authority.chain(n)[0])
            )
            self._crl(name)

    def on_event(self, kind: str, body: dict[str, Any]) -> None:
        """Publish what an authority event announces (issued certificate, new CRL)."""
        if kind == "ca.cert_issued":
            record = self.authority.store.certificate(parse_serial(str(body["serial"])))
            if record is not None:
                cert = x509.load_der_x509_certificate(record.der)
                self._try(lambda: self.publisher.publish_certificate(cert))
        elif kind == "ca.crl_published":
            self._crl(str(body["ca"]))

    def _crl(self, name: str) -> None:
        try:
            record = self.authority.current_crl(name)
        except TestbedError:
            return  # no CRL published yet
        crl = x509.load_der_x509_crl(record.der)
        self._try(lambda: self.publisher.publish_crl(crl))

    def _try(self, action: Any) -> None:
        try:
            action()
        except TestbedError as exc:
            self.failed += 1
            self._log.warning("ldap_publish_failed", error=str(exc))
        else:
            self.published += 1
