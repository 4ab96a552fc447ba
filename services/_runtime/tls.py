"""TLS contexts for the SM-PKI profile (TR-03116-3) on Python's ``ssl``.

What every WAN and HAN connection of the testbed uses:

- TLS 1.2 only (OpenSSL 3.0 has no TLS 1.3 brainpool signature schemes);
- cipher suites ECDHE-ECDSA with AES-GCM (128 and 256);
- ECDHE groups brainpoolP256r1/P384r1/P512r1 by default, NIST P-256/P-384
  when configured. ``SSLContext.set_ecdh_curve`` sets exactly one group, and
  OpenSSL also checks the peer's certificate curve against that list, so
  several groups are set with ``SSL_CTX_set1_groups_list`` on the context's
  own ``SSL_CTX`` (see :func:`set_groups`);
- mutual authentication (``CERT_REQUIRED`` on both sides);
- CRLs of every CA in the chain checked on each handshake
  (``VERIFY_CRL_CHECK_CHAIN``). Contexts are immutable once built: for
  fresher CRLs build a new one (:func:`reload_crls`) and use it for the next
  handshakes; connections already open keep theirs.

:func:`refusal_reason` maps an error raised during a handshake to a short
reason (``no_certificate``, ``revoked``, ``unknown_ca``, ...) for events and
logs; :func:`peer_of` reads the authenticated peer's role and name.
"""

from __future__ import annotations

import _ssl
import base64
import ctypes
import os
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from smtestbed.services._runtime.errors import ConfigError

__all__ = [
    "BRAINPOOL_GROUPS",
    "CIPHERS",
    "GROUP_NAMES",
    "REASONS",
    "Peer",
    "TlsFiles",
    "client_context",
    "crl_pem",
    "peer_of",
    "refusal_reason",
    "reload_crls",
    "server_context",
    "set_groups",
]

CIPHERS = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384"
BRAINPOOL_GROUPS = ("brainpoolP256r1", "brainpoolP384r1", "brainpoolP512r1")
GROUP_NAMES = {
    "brainpoolP256r1": "brainpoolP256r1",
    "brainpoolP384r1": "brainpoolP384r1",
    "brainpoolP512r1": "brainpoolP512r1",
    "P-256": "P-256",
    "secp256r1": "P-256",
    "P-384": "P-384",
    "secp384r1": "P-384",
}
"""Accepted group names -> the name OpenSSL's groups list takes."""

REASONS = (
    "no_certificate",
    "revoked",
    "unknown_ca",
    "expired",
    "not_yet_valid",
    "crl_unavailable",
    "crl_expired",
    "bad_certificate",
    "no_shared_cipher",
    "protocol",
    "aborted",
    "timeout",
)
"""Every reason :func:`refusal_reason` returns."""

_SSL_CTRL_SET_GROUPS_LIST = 92  # SSL_CTX_set1_groups_list() is this SSL_CTX_ctrl() call


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsFiles:
    """The PEM files one TLS endpoint needs.

    Attributes:
        cert: own certificate (may be followed by its CA chain in the same file).
        key: own private key (unencrypted PEM).
        chain: CA certificates sent after ``cert`` (issuing CA first), if not in ``cert``.
        trust_roots: trust anchors (the SM-PKI root certificate).
        crls: PEM CRLs of every CA whose certificates peers present (sub-CAs and root).
        groups: ECDHE groups offered and accepted (see :func:`set_groups`).
    """

    cert: Path
    key: Path
    chain: tuple[Path, ...] = ()
    trust_roots: tuple[Path, ...] = ()
    crls: tuple[Path, ...] = ()
    groups: tuple[str, ...] = field(default=BRAINPOOL_GROUPS)


@dataclass(frozen=True, slots=True, kw_only=True)
class Peer:
    """The authenticated other side of a TLS connection.

    Attributes:
        role: organisational unit of its subject (``GWA``, ``EMT``, ``SMGW``), "" if none.
        common_name: its subject CN (``gwa1.emt.test.example``).
        serial: certificate serial number, lower-case hex.
        issuer: the issuing CA's CN.
    """

    role: str
    common_name: str
    serial: str
    issuer: str


def server_context(
    cert: Path,
    key: Path,
    chain: Sequence[Path],
    trust_roots: Sequence[Path],
    crls: Sequence[Path],
    *,
    groups: Sequence[str] = BRAINPOOL_GROUPS,
) -> ssl.SSLContext:
    """Return a TLS 1.2 server context that requires and checks a client certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _configure(ctx, cert, key, chain, trust_roots, crls, groups)
    return ctx


def client_context(
    cert: Path,
    key: Path,
    chain: Sequence[Path],
    trust_roots: Sequence[Path],
    crls: Sequence[Path],
    *,
    groups: Sequence[str] = BRAINPOOL_GROUPS,
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """Return a TLS 1.2 client context that presents ``cert`` and checks the server's.

    With ``check_hostname`` the caller passes the server's certificate name
    (a dNSName such as ``gw0.smgw.test.example``) as ``server_hostname``.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = check_hostname
    _configure(ctx, cert, key, chain, trust_roots, crls, groups)
    return ctx


def reload_crls(files: TlsFiles, *, server: bool, check_hostname: bool = True) -> ssl.SSLContext:
    """Return a new context from ``files`` (read again, so with their current CRLs)."""
    if server:
        return server_context(
            files.cert, files.key, files.chain, files.trust_roots, files.crls, groups=files.groups
        )
    return client_context(
        files.cert,
        files.key,
        files.chain,
        files.trust_roots,
        files.crls,
        groups=files.groups,
        check_hostname=check_hostname,
    )


def _configure(
    ctx: ssl.SSLContext,
    cert: Path,
    key: Path,
    chain: Sequence[Path],
    trust_roots: Sequence[Path],
    crls: Sequence[Path],
    groups: Sequence[str],
) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CIPHERS)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    if not trust_roots:
        raise ConfigError("needs at least one trust root", key="trust_roots")
    if not crls:
        raise ConfigError("needs the CRLs of the peers' CAs and the root", key="crls")
    set_groups(ctx, groups)
    _load_identity(ctx, Path(cert), Path(key), [Path(p) for p in chain])
    for path in (*trust_roots, *crls):
        _load_verify(ctx, Path(path))
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_CHAIN | ssl.VERIFY_X509_STRICT


def _load_identity(ctx: ssl.SSLContext, cert: Path, key: Path, chain: list[Path]) -> None:
    try:
        if not chain:
            ctx.load_cert_chain(cert, key)
            return
        # load_cert_chain reads the chain from the certificate file only.
        pem = b"".join(p.read_bytes().rstrip(b"\n") + b"\n" for p in (cert, *chain))
        fd, name = tempfile.mkstemp(suffix=".pem")
        try:
            os.write(fd, pem)
            os.close(fd)
            ctx.load_cert_chain(name, key)
        finally:
            os.unlink(name)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load certificate {cert} with key {key}: {exc}") from exc


def _load_verify(ctx: ssl.SSLContext, path: Path) -> None:
    try:
        ctx.load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load trust root or CRL {path}: {exc}") from exc


def set_groups(ctx: ssl.SSLContext, groups: Sequence[str]) -> None:
    """Set the ECDHE groups (which also bound the curves of peer certificates).

    One group goes through ``set_ecdh_curve``. Several need
    ``SSL_CTX_set1_groups_list``, which Python 3.11 does not wrap: it is called
    through ctypes on the context's ``SSL_CTX`` (the first field after the
    object header), after checking the pointer by reading the options back.
    """
    names = [_group_name(g) for g in groups]
    if not names:
        raise ConfigError("needs at least one ECDHE group", key="groups")
    if len(names) == 1:
        ctx.set_ecdh_curve(names[0].replace("P-256", "prime256v1").replace("P-384", "secp384r1"))
        return
    handle = _ssl_ctx_pointer(ctx)
    if not _LIBSSL.SSL_CTX_ctrl(handle, _SSL_CTRL_SET_GROUPS_LIST, 0, ":".join(names).encode()):
        raise ConfigError(f"OpenSSL refused the groups {':'.join(names)}", key="groups")


def _group_name(name: str) -> str:
    try:
        return GROUP_NAMES[name]
    except KeyError:
        known = ", ".join(GROUP_NAMES)
        raise ConfigError(f"unknown ECDHE group {name!r} (known: {known})", key="groups") from None


def _open_libssl() -> ctypes.CDLL:
    lib = ctypes.CDLL(_ssl.__file__)  # resolves through the libssl _ssl is linked with
    lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
    lib.SSL_CTX_ctrl.restype = ctypes.c_long
    lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
    lib.SSL_CTX_get_options.restype = ctypes.c_uint64
    return lib


_LIBSSL = _open_libssl()


def _ssl_ctx_pointer(ctx: ssl.SSLContext) -> int:
    pointer = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not pointer or _LIBSSL.SSL_CTX_get_options(pointer) != int(ctx.options):
        raise ConfigError("cannot reach OpenSSL's SSL_CTX; configure one group only", key="groups")
    return pointer


# -- after the handshake -----------------------------------------------------

_VERIFY_CODES = {
    2: "unknown_ca",  # unable to get issuer certificate
    3: "crl_unavailable",
    9: "not_yet_valid",
    10: "expired",
    11: "crl_unavailable",  # CRL not yet valid
    12: "crl_expired",
    18: "unknown_ca",  # self-signed leaf
    19: "unknown_ca",  # self-signed certificate in chain
    20: "unknown_ca",  # unable to get local issuer certificate
    21: "unknown_ca",
    23: "revoked",
}
_MESSAGES = (
    ("peer did not return a certificate", "no_certificate"),
    ("certificate required", "no_certificate"),
    ("certificate revoked", "revoked"),
    ("unknown ca", "unknown_ca"),
    ("certificate expired", "expired"),
    ("no shared cipher", "no_shared_cipher"),
    ("wrong curve", "no_shared_cipher"),
    ("handshake failure", "no_shared_cipher"),
    ("bad certificate", "bad_certificate"),
    ("unsupported certificate", "bad_certificate"),
    ("certificate unknown", "bad_certificate"),
)


def refusal_reason(exc: BaseException) -> str:
    """Return the short reason (one of :data:`REASONS`) a handshake failed with ``exc``."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _VERIFY_CODES.get(exc.verify_code, "bad_certificate")
    if isinstance(exc, TimeoutError) or "taking longer" in str(exc):
        return "timeout"  # asyncio's ssl_handshake_timeout raises ConnectionAbortedError
    if isinstance(exc, ssl.SSLError):
        text = f"{exc.reason or ''} {exc}".lower().replace("_", " ")
        for needle, reason in _MESSAGES:
            if needle in text:
                return reason
        return "protocol"
    if isinstance(exc, (ConnectionError, EOFError, ssl.SSLEOFError)):
        return "aborted"
    return "protocol"


def peer_of(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> Peer:
    """Return the verified peer of a connection (after a successful handshake)."""
    info = ssl_object.getpeercert()
    if not info:
        return Peer(role="", common_name="", serial="", issuer="")
    subject = _attributes(info.get("subject", ()))
    issuer = _attributes(info.get("issuer", ()))
    return Peer(
        role=subject.get("organizationalUnitName", ""),
        common_name=subject.get("commonName", ""),
        serial=str(info.get("serialNumber", "")).lower().lstrip("0"),
        issuer=issuer.get("commonName", ""),
    )


def _attributes(rdns: object) -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(rdns, tuple):
        for rdn in rdns:
            for name, value in rdn:
                out.setdefault(str(name), str(value))
    return out


def crl_pem(der: bytes) -> bytes:
    """Return a DER CRL as PEM (what ``load_verify_locations`` reads from a file)."""
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN X509 CRL-----\n" + b"\n".join(lines) + b"\n-----END X509 CRL-----\n"
