"""The WAN operations that rotate the gateway's certificates (store and checks: :mod:`.certstore`).

``cert_request {which}`` answers a CSR for a new key pair; ``cert_install
{which, certificate, chain}`` checks the certificate the CA issued for it and
installs it. Only the GWA reaches these (the WAN endpoint's role check runs
first). An installed certificate is loaded (``probe``) before it becomes current
and is then used (``apply``) for the next handshakes or signatures: a
``gateway.cert_rotated`` event and a ``cert_rotated`` system-log entry. A refused
one is a ``gateway.cert_refused`` event with the reason, a ``cert_refused``
entry, and an error reply naming the field; the current certificate stays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from smtestbed.proto import topics
from smtestbed.services._runtime import pki
from smtestbed.services._runtime.errors import ConfigError, RequestError
from smtestbed.services.gateway.certstore import CertRefusedError, CertStore, Identity, Trust

__all__ = ["OPS", "CertRotation"]

OPS = ("cert_request", "cert_install")
_FIELDS = {"no_request": "which", "malformed": "certificate"}


class Publisher(Protocol):
    """Where events go (the service's bus client)."""

    def publish(self, kind: str, body: Any) -> Any:
        """Publish one event."""


class CertRotation:
    """Answer the rotation operations of one gateway instance.

    Args:
        store: the instance's certificates.
        gateway: the instance's name (in events).
        trust: returns what new certificates are checked against (current CRL files).
        probe: loads an identity as it would be used; raises ConfigError if it cannot.
        apply: makes an installed identity the one in use.
        system_log: appends an entry to the instance's system log.
    """

    def __init__(
        self,
        store: CertStore,
        *,
        gateway: str,
        trust: Callable[[], Trust],
        probe: Callable[[str, Identity], None],
        apply: Callable[[str, Identity], None],
        bus: Publisher,
        log: Any,
        system_log: Callable[[str, dict[str, Any]], None],
    ) -> None:
        self.store = store
        self.gateway = gateway
        self.trust = trust
        self.probe = probe
        self.apply = apply
        self.bus = bus
        self.log = log
        self.system_log = system_log
        self.rotated = 0
        self.refused = 0

    def handle(self, op: str, params: dict[str, Any], by: str) -> Any:
        """Run ``op`` (one of :data:`OPS`) for the GWA ``by``."""
        if op == "cert_request":
            result = self.store.request(params.get("which"))
            self.system_log("cert_requested", {"which": result["which"], "by": by})
            return result
        return self._install(params, by)

    def _install(self, params: dict[str, Any], by: str) -> dict[str, Any]:
        which = params.get("which")
        try:
            checked = self.store.check(
                which, params.get("certificate"), params.get("chain", []), self.trust()
            )
            identity = self.store.install(checked, probe=lambda i: self.probe(checked.which, i))
        except CertRefusedError as exc:
            self._refused(str(which), exc.reason, exc.detail, by)
            field = _FIELDS.get(exc.reason, "certificate")
            raise RequestError(f"refused ({exc.reason}): {exc.detail}", field=field) from exc
        except ConfigError as exc:
            self._refused(str(which), "install_failed", str(exc), by)
            raise RequestError(f"refused (install_failed): {exc}", field="certificate") from exc
        self.apply(checked.which, identity)
        self.rotated += 1
        body = {
            "gateway": self.gateway,
            "which": checked.which,
            "serial": f"{checked.cert.serial_number:x}",
            "previous_serial": f"{checked.previous.serial_number:x}",
            "subject": pki.common_name(checked.cert),
            "not_after": checked.cert.not_valid_after_utc.isoformat(),
            "by": by,
        }
        self.log.info("cert_rotated", **body)
        self.bus.publish(topics.GATEWAY_CERT_ROTATED, body)
        self.system_log("cert_rotated", body)
        return body

    def _refused(self, which: str, reason: str, detail: str, by: str) -> None:
        self.refused += 1
        body = {
            "gateway": self.gateway,
            "which": which,
            "reason": reason,
            "message": detail[:300],
            "by": by,
        }
        self.log.warning("cert_refused", **body)
        self.bus.publish(topics.GATEWAY_CERT_REFUSED, body)
        self.system_log("cert_refused", body)
