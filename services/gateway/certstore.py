"""The gateway's own certificates and their rotation through the CA, driven by the GWA.

Two certificates can be rotated (``which``): ``tls`` (profile ``smgw-tls``: the
WAN endpoint, wake-up calls, EMT delivery and time sync connections) and
``sig`` (``smgw-sig``: signs EMT deliveries). The GWA asks over its WAN session:

1. ``cert_request {which}``: the gateway makes a new key pair on the curve of
   the current certificate's key, keeps it as a pending key
   (``<data_dir>/<instance>/certs/pending-<which>.key``, mode 0600) and answers
   a PKCS#10 CSR (PEM) with the current certificate's subject;
2. the GWA has the CA issue it (``POST /issue``, authorised as the CA requires);
3. ``cert_install {which, certificate, chain}``: the gateway checks the
   certificate and, only if every check passes, installs it.

Checks, the first failure refusing with its reason and changing nothing:
``malformed`` (not PEM certificates), ``no_request`` (no pending key),
``wrong_key`` (not the pending key's certificate), ``wrong_subject`` (subject
other than the current certificate's), ``wrong_usage`` (``tls``: key usage
digitalSignature, EKU serverAuth and clientAuth, the CN as dNSName; ``sig``:
digitalSignature alone, no EKU), then the path to ``wan_trust`` through the
given chain and ``wan_chain`` with every CA's CRL (the WAN CRL files and
fetched ones) at wall time: ``untrusted``, ``revoked``, ``expired``,
``not_yet_valid``, ``no_revocation_info``.

Installing writes ``certs/<which>-<serial>/`` (``cert.pem``, ``chain.pem``,
``key.pem``) under a temporary name, renames the folder, then swaps the symbolic
link ``certs/<which>`` to it with one ``rename`` (a reader sees the old or the new
pair, never a mix); ``certs/<which>.previous`` points to the folder it replaced,
which is kept (the configured files are never touched). While a link exists it,
not ``wan_cert``/``sig_cert``, is the gateway's identity, across restarts too.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from OpenSSL import crypto
from smtestbed.services._runtime import pki
from smtestbed.services._runtime.errors import ConfigError, RequestError, TestbedError
from smtestbed.services.gateway.config import GatewayConfig

__all__ = [
    "PROFILES",
    "REASONS",
    "CertRefusedError",
    "CertStore",
    "Checked",
    "Identity",
    "Trust",
    "check_path",
    "usage_fault",
]

PROFILES = {"tls": "smgw-tls", "sig": "smgw-sig"}
"""``which`` -> the CA profile its certificate is issued under."""
REASONS = (
    "malformed",
    "no_request",
    "wrong_key",
    "wrong_subject",
    "wrong_usage",
    "untrusted",
    "revoked",
    "expired",
    "not_yet_valid",
    "no_revocation_info",
)
_VERIFY_CODES = {
    3: "no_revocation_info",  # unable to get certificate CRL
    9: "not_yet_valid",
    10: "expired",
    11: "no_revocation_info",  # CRL not yet valid
    12: "no_revocation_info",  # CRL has expired
    23: "revoked",
}


class CertRefusedError(TestbedError):
    """A certificate to install failed a check (``reason`` one of :data:`REASONS`)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """One certificate of the gateway: its file, its key's file, CA certificates to send."""

    cert: Path
    key: Path
    chain: tuple[Path, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Trust:
    """What a new certificate is checked against."""

    roots: tuple[Path, ...]
    intermediates: tuple[Path, ...]
    crls: tuple[Path, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Checked:
    """A certificate that passed every check, ready to install."""

    which: str
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    previous: x509.Certificate


def _which(value: object) -> str:
    if value not in PROFILES:
        raise RequestError(f"must be one of {', '.join(PROFILES)}, got {value!r}", field="which")
    return str(value)


class CertStore:
    """The installed certificates of one instance (``folder`` = its ``certs/``)."""

    def __init__(self, folder: Path, configured: dict[str, Identity | None]) -> None:
        self.folder = folder
        self.configured = configured

    @classmethod
    def of(cls, cfg: GatewayConfig, instance: str) -> CertStore:
        """Return the store of ``instance`` with the configured identities as fallback."""

        def ident(cert: str, key: str, chain: Sequence[str]) -> Identity | None:
            if not cert or not key:
                return None
            return Identity(cert=Path(cert), key=Path(key), chain=tuple(Path(p) for p in chain))

        configured = {
            "tls": ident(cfg.wan_cert, cfg.wan_key, cfg.wan_chain),
            "sig": ident(cfg.sig_cert, cfg.sig_key, cfg.sig_chain),
        }
        return cls(Path(cfg.data_dir) / instance / "certs", configured)

    def installed(self, which: str) -> bool:
        """Tell whether a rotated ``which`` certificate is installed (it overrides the settings)."""
        return (self.folder / which).is_dir()

    def current(self, which: str) -> Identity | None:
        """Return the identity in use: the installed one, else the configured one."""
        link = self.folder / which
        if link.is_dir():
            target = link.resolve()
            return Identity(
                cert=target / "cert.pem", key=target / "key.pem", chain=(target / "chain.pem",)
            )
        return self.configured[which]

    def _current_certificate(self, which: str) -> x509.Certificate:
        ident = self.current(which)
        if ident is None:
            raise RequestError(f"the gateway has no {which} certificate configured", field="which")
        return pki.read_certificates(ident.cert)[0]

    # -- step 1: key pair and CSR ---------------------------------------------------

    def request(self, which: object) -> dict[str, str]:
        """Make a new pending key for ``which``; return its CSR and the profile to ask for."""
        which = _which(which)
        current = self._current_certificate(which)
        public = current.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise RequestError("current certificate has no EC key", field="which")
        key = ec.generate_private_key(public.curve)
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(current.subject)
            .sign(key, _hash(key))
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        _write_private(self.folder / f"pending-{which}.key", _key_pem(key))
        return {
            "which": which,
            "profile": PROFILES[which],
            "subject": pki.common_name(current),
            "csr": csr.public_bytes(serialization.Encoding.PEM).decode(),
        }

    # -- step 3: check and install ---------------------------------------------------

    def check(self, which: object, certificate: object, chain: object, trust: Trust) -> Checked:
        """Run every check of the module docstring; raise CertRefusedError at the first fault."""
        which = _which(which)
        cert, cas = _parse(certificate, chain)
        pending = self.folder / f"pending-{which}.key"
        if not pending.exists():
            raise CertRefusedError("no_request", f"no pending {which} key: ask cert_request first")
        key = pki.read_private_key(pending)
        if cert.public_key() != key.public_key():
            raise CertRefusedError("wrong_key", "certificate is not for the pending key")
        current = self._current_certificate(which)
        if cert.subject != current.subject:
            detail = f"subject {cert.subject.rfc4514_string()} is not ours"
            raise CertRefusedError("wrong_subject", detail)
        fault = usage_fault(which, cert)
        if fault:
            raise CertRefusedError("wrong_usage", fault)
        check_path(cert, cas, trust)
        return Checked(which=which, cert=cert, chain=tuple(cas), previous=current)

    def install(
        self, checked: Checked, *, probe: Callable[[Identity], None] | None = None
    ) -> Identity:
        """Write the checked certificate with its pending key and make it the current one.

        ``probe`` gets the written identity before it becomes current; if it raises
        ConfigError the files are removed and nothing changes.
        """
        which, serial = checked.which, f"{checked.cert.serial_number:x}"
        pending = self.folder / f"pending-{which}.key"
        final = self.folder / f"{which}-{serial}"
        if final.exists():
            raise CertRefusedError("malformed", f"certificate {serial} is installed already")
        staging = Path(tempfile.mkdtemp(prefix=f".{which}-", dir=self.folder))
        try:
            pem = serialization.Encoding.PEM
            (staging / "cert.pem").write_bytes(checked.cert.public_bytes(pem))
            (staging / "chain.pem").write_bytes(
                b"".join(c.public_bytes(pem) for c in checked.chain)
            )
            _write_private(staging / "key.pem", pending.read_bytes())
            if probe is not None:
                probe(
                    Identity(
                        cert=staging / "cert.pem",
                        key=staging / "key.pem",
                        chain=(staging / "chain.pem",),
                    )
                )
            staging.rename(final)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise ConfigError(f"cannot write {final}: {exc}") from exc
        except ConfigError:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        old = (self.folder / which).resolve() if (self.folder / which).is_dir() else None
        _swap_link(self.folder / which, final.name)
        if old is not None:
            _swap_link(self.folder / f"{which}.previous", old.name)
        pending.unlink()
        current = self.current(which)
        assert current is not None
        return current


def _hash(key: ec.EllipticCurvePrivateKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512:
    size = key.curve.key_size
    return hashes.SHA256() if size <= 256 else hashes.SHA384() if size <= 384 else hashes.SHA512()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)


def _swap_link(link: Path, target: str) -> None:
    tmp = link.with_name(f".{link.name}.new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    tmp.replace(link)  # rename(2): atomic, replaces the old link


def _parse(certificate: object, chain: object) -> tuple[x509.Certificate, list[x509.Certificate]]:
    if not isinstance(certificate, str):
        raise CertRefusedError("malformed", "certificate must be a PEM text")
    if not isinstance(chain, list) or not all(isinstance(c, str) for c in chain):
        raise CertRefusedError("malformed", "chain must be a list of PEM texts")
    try:
        cert = x509.load_pem_x509_certificate(certificate.encode())
        cas = [x509.load_pem_x509_certificate(c.encode()) for c in chain]
    except ValueError as exc:
        raise CertRefusedError("malformed", f"not a PEM certificate: {exc}") from exc
    return cert, cas


def usage_fault(which: str, cert: x509.Certificate) -> str:
    """Return "" if ``cert`` has the usages of a ``which`` certificate, else what is wrong."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return "no key usage"
    if not usage.digital_signature or usage.key_agreement or usage.key_cert_sign:
        return "key usage is not digitalSignature alone"
    try:
        eku: list[x509.ObjectIdentifier] = list(
            cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        )
    except x509.ExtensionNotFound:
        eku = []
    if which == "sig":
        return "has an extended key usage (a TLS certificate)" if eku else ""
    wanted = {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    if not wanted <= set(eku):
        return "extended key usage lacks serverAuth or clientAuth (not a TLS certificate)"
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "no subjectAltName"
    if pki.common_name(cert) not in names.get_values_for_type(x509.DNSName):
        return "the CN is not a dNSName of the certificate"
    return ""


def check_path(cert: x509.Certificate, chain: Sequence[x509.Certificate], trust: Trust) -> None:
    """Validate ``cert`` to the trust roots with every CA's CRL (OpenSSL's store, wall time).

    Raises:
        CertRefusedError: ``untrusted``, ``revoked``, ``expired``, ``not_yet_valid`` or
            ``no_revocation_info``.
    """
    store = crypto.X509Store()
    try:
        for path in trust.roots:
            for root in pki.read_certificates(path):
                store.add_cert(crypto.X509.from_cryptography(root))
        for path in trust.crls:
            for crl in pki.read_crls(path):
                store.add_crl(crl)
        extra = [c for p in trust.intermediates for c in pki.read_certificates(p)]
    except ConfigError as exc:
        raise CertRefusedError("no_revocation_info", str(exc)) from exc
    store.set_flags(
        crypto.X509StoreFlags.CRL_CHECK
        | crypto.X509StoreFlags.CRL_CHECK_ALL
        | crypto.X509StoreFlags.X509_STRICT
    )
    untrusted = [crypto.X509.from_cryptography(c) for c in (*chain, *extra)]
    context = crypto.X509StoreContext(store, crypto.X509.from_cryptography(cert), untrusted)
    try:
        context.verify_certificate()
    except crypto.X509StoreContextError as exc:
        code = exc.errors[0] if exc.errors else 0
        raise CertRefusedError(_VERIFY_CODES.get(code, "untrusted"), str(exc)) from exc
