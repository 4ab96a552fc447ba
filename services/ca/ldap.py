"""Publish CA certificates, end-entity certificates and CRLs to an LDAP directory.

Directory layout (DIT) under the configured base DN; ``<CN>`` is the subject's
(or, for a CRL, the issuer's) common name, escaped as an RDN value::

    <base>                                   domain / organizationalUnit / organization
      ou=cas,<base>                          organizationalUnit
        cn=<CA CN>,ou=cas,<base>             cRLDistributionPoint + pkiCA
            cACertificate;binary             the CA's certificate (DER)
            certificateRevocationList;binary the CA's current CRL (DER)
      ou=certificates,<base>                 organizationalUnit
        cn=<subject CN>,ou=certificates,<base>   device + pkiUser
            userCertificate;binary           the subject's certificates (DER), one per role

An end entity may hold several certificates at once (a gateway has TLS,
signature and encryption certificates). Publishing a certificate replaces the
stored one of the same role (same issuer, key usage and extended key usage) and
keeps the others. Publishing a CA certificate or a CRL replaces the previous
value. Missing parent entries are created; the base DN must lie within a naming
context of the server.

Binary attributes are always written and read with the ``;binary`` option
(RFC 4522). Each call opens its own connection, binds, and unbinds at the end.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import ldap3
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from ldap3.core.exceptions import LDAPException
from ldap3.utils.dn import escape_rdn, parse_dn
from smtestbed.services._runtime.errors import PeerError, RequestError

CA_CERTIFICATE = "cACertificate;binary"
USER_CERTIFICATE = "userCertificate;binary"
CRL = "certificateRevocationList;binary"

_CA_CLASSES = ["top", "cRLDistributionPoint", "pkiCA"]
_USER_CLASSES = ["top", "device", "pkiUser"]
_CONTAINER_CLASSES = {
    "dc": ["top", "domain"],
    "ou": ["top", "organizationalUnit"],
    "o": ["top", "organization"],
}
_SUCCESS, _NO_SUCH_OBJECT, _ALREADY_EXISTS = 0, 32, 68


class LdapError(PeerError):
    """The LDAP server could not be reached, refused the bind or refused a change."""


def common_name(name: x509.Name, *, field: str) -> str:
    """Return the first common name in ``name``.

    Raises:
        RequestError: ``name`` has no common name (``field`` says whose name).
    """
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not values:
        raise RequestError("has no common name (CN), cannot name its LDAP entry", field=field)
    value = values[0].value
    return value if isinstance(value, str) else value.decode()


def _role(cert: x509.Certificate) -> tuple[str, str, str]:
    """Return what makes two certificates of one subject the same role."""

    def extension(kind: type[x509.ExtensionType]) -> str:
        try:
            return repr(cert.extensions.get_extension_for_class(kind).value)
        except x509.ExtensionNotFound:
            return ""

    return (
        cert.issuer.rfc4514_string(),
        extension(x509.KeyUsage),
        extension(x509.ExtendedKeyUsage),
    )


def _der(item: x509.Certificate | x509.CertificateRevocationList) -> bytes:
    return item.public_bytes(Encoding.DER)


class LdapPublisher:
    """Writes certificates and CRLs under ``base_dn`` of an LDAP server (see module doc).

    Args:
        url: ``ldap://host:port``.
        base_dn: where the ``ou=cas`` and ``ou=certificates`` subtrees live.
        bind_dn: the DN to bind as; it must be allowed to write below ``base_dn``.
        password: the bind password.
        timeout: connect and receive timeout in s.
    """

    def __init__(
        self, url: str, base_dn: str, bind_dn: str, password: str, *, timeout: float = 5.0
    ) -> None:
        self.url = url
        self.base_dn = base_dn
        self._bind_dn = bind_dn
        self._password = password
        self._timeout = timeout

    def ca_dn(self, ca_name: str) -> str:
        """Return the DN of the entry of the CA with common name ``ca_name``."""
        return f"cn={escape_rdn(ca_name)},ou=cas,{self.base_dn}"

    def certificate_dn(self, subject_name: str) -> str:
        """Return the DN of the entry of the end entity with common name ``subject_name``."""
        return f"cn={escape_rdn(subject_name)},ou=certificates,{self.base_dn}"

    def publish_ca_certificate(self, cert: x509.Certificate) -> str:
        """Publish a CA certificate (replacing the CA's previous one); return the entry's DN."""
        name = common_name(cert.subject, field="subject")
        with self._session() as conn:
            self._ensure_container(conn, f"ou=cas,{self.base_dn}")
            return self._put(
                conn, self.ca_dn(name), _CA_CLASSES, name, CA_CERTIFICATE, [_der(cert)]
            )

    def publish_crl(self, crl: x509.CertificateRevocationList) -> str:
        """Publish a CRL at its issuer's CA entry (replacing the previous CRL); return the DN."""
        name = common_name(crl.issuer, field="issuer")
        with self._session() as conn:
            self._ensure_container(conn, f"ou=cas,{self.base_dn}")
            return self._put(conn, self.ca_dn(name), _CA_CLASSES, name, CRL, [_der(crl)])

    def publish_certificate(self, cert: x509.Certificate) -> str:
        """Publish an end-entity certificate, replacing the subject's one of the same role.

        Returns:
            the DN of the subject's entry.
        """
        name = common_name(cert.subject, field="subject")
        dn = self.certificate_dn(name)
        with self._session() as conn:
            self._ensure_container(conn, f"ou=certificates,{self.base_dn}")
            stored = [
                x509.load_der_x509_certificate(v) for v in self._read(conn, dn, USER_CERTIFICATE)
            ]
            kept = [_der(c) for c in stored if _role(c) != _role(cert)]
            return self._put(conn, dn, _USER_CLASSES, name, USER_CERTIFICATE, [*kept, _der(cert)])

    def ca_certificate(self, ca_name: str) -> x509.Certificate | None:
        """Return the published certificate of CA ``ca_name``, or None."""
        with self._session() as conn:
            values = self._read(conn, self.ca_dn(ca_name), CA_CERTIFICATE)
        return x509.load_der_x509_certificate(values[0]) if values else None

    def crl(self, ca_name: str) -> x509.CertificateRevocationList | None:
        """Return the published CRL of CA ``ca_name``, or None."""
        with self._session() as conn:
            values = self._read(conn, self.ca_dn(ca_name), CRL)
        return x509.load_der_x509_crl(values[0]) if values else None

    def certificates(self, subject_name: str) -> list[x509.Certificate]:
        """Return the published certificates of end entity ``subject_name`` (maybe none)."""
        with self._session() as conn:
            values = self._read(conn, self.certificate_dn(subject_name), USER_CERTIFICATE)
        return [x509.load_der_x509_certificate(v) for v in values]

    @contextlib.contextmanager
    def _session(self) -> Iterator[Any]:
        """Yield a bound ldap3 connection; every LDAP failure becomes an LdapError."""
        server = ldap3.Server(self.url, connect_timeout=self._timeout, get_info=ldap3.NONE)
        conn = ldap3.Connection(
            server,
            user=self._bind_dn,
            password=self._password,
            receive_timeout=max(1, math.ceil(self._timeout)),  # ldap3 packs it as an integer
            raise_exceptions=False,
        )
        try:
            if not conn.bind():
                raise LdapError(
                    f"LDAP server {self.url} refused the bind as {self._bind_dn}: "
                    f"{conn.result.get('description', 'unknown')}"
                )
            yield conn
        except LDAPException as exc:
            raise LdapError(f"LDAP server {self.url} failed: {exc}") from exc
        finally:
            with contextlib.suppress(LDAPException):
                conn.unbind()

    def _ensure_container(self, conn: Any, dn: str) -> None:
        """Create ``base_dn`` and then ``dn`` (a direct child) when they do not exist."""
        for entry in (self.base_dn, dn):
            attribute, value, _ = parse_dn(entry)[0]
            classes = _CONTAINER_CLASSES.get(attribute.lower())
            if classes is None:
                raise RequestError(f"cannot create an entry named by {attribute}=", field="base_dn")
            conn.add(entry, classes, {attribute: value})
            if conn.result["result"] not in (_SUCCESS, _ALREADY_EXISTS):
                raise self._refused(conn, f"create {entry}")

    def _put(
        self, conn: Any, dn: str, classes: list[str], cn: str, attribute: str, values: list[bytes]
    ) -> str:
        """Create entry ``dn`` with ``attribute`` = ``values``, or replace them if it exists."""
        conn.add(dn, classes, {"cn": cn, attribute: values})
        if conn.result["result"] == _ALREADY_EXISTS:
            conn.modify(dn, {attribute: [(ldap3.MODIFY_REPLACE, values)]})
        if conn.result["result"] != _SUCCESS:
            raise self._refused(conn, f"write {attribute} of {dn}")
        return dn

    def _read(self, conn: Any, dn: str, attribute: str) -> list[bytes]:
        """Return the raw values of ``attribute`` of entry ``dn``; [] if there is none."""
        conn.search(dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=[attribute])
        code = conn.result["result"]
        if code == _NO_SUCH_OBJECT:
            return []
        if code != _SUCCESS:
            raise self._refused(conn, f"read {attribute} of {dn}")
        for entry in conn.response or []:
            for key, values in entry.get("raw_attributes", {}).items():
                if key.lower() == attribute.lower():
                    return list(values)
        return []

    def _refused(self, conn: Any, what: str) -> LdapError:
        result = conn.result
        cause = f"{result.get('description', 'error')} ({result.get('result')})"
        message = result.get("message", "")
        return LdapError(f"LDAP server {self.url} refused to {what}: {cause} {message}".rstrip())
