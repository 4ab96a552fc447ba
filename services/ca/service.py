"""The CA service: the HTTP API on a CA directory, events on the bus, CRLs kept fresh.

On start it opens (or, with ``create``, first creates) the CA directory,
serves :mod:`.http` on ``host:port`` and declares itself ready. A timer
then checks every ``crl_check_s`` of simulated time and publishes a new CRL
for each CA whose current one expires within ``crl_renew_before_s``. The
authority reports ``ca.cert_issued``, ``ca.cert_revoked``,
``ca.crl_published`` and ``ca.request_refused``; the service publishes them.

Signing happens in the event loop (a certificate takes about a millisecond);
a CRL with 10^5 entries blocks it for about 1.6 s (see ``benchmarks/pki.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from aiohttp import web
from smtestbed.proto import topics
from smtestbed.services._runtime.config import ServiceConfig
from smtestbed.services._runtime.lifecycle import Ready, Service
from smtestbed.services.ca.authority import Authority
from smtestbed.services.ca.config import CaConfig
from smtestbed.services.ca.http import make_app
from smtestbed.services.ca.ldap import LdapPublisher
from smtestbed.services.ca.publishing import LdapMirror
from smtestbed.services.ca.state import DB_FILE

__all__ = ["CaService"]

_COUNTED = {
    topics.CA_CERT_ISSUED: "certs_issued",
    topics.CA_CERT_REVOKED: "certs_revoked",
    topics.CA_CRL_PUBLISHED: "crls_published",
    topics.CA_REQUEST_REFUSED: "requests_refused",
}


class CaService(Service):
    """Serve one CA directory over HTTP."""

    service: ClassVar[str] = "ca"
    config_class: ClassVar[type[ServiceConfig]] = CaConfig

    def __init__(self, config: CaConfig) -> None:
        super().__init__(config)
        self.cfg = config
        self.port = config.port
        self._counts = dict.fromkeys(_COUNTED.values(), 0)
        self._mirror: LdapMirror | None = None

    def now(self) -> datetime:
        """Return the simulation clock as an aware UTC datetime."""
        return datetime.fromtimestamp(self.clock.now(), UTC)

    async def run(self, ready: Ready) -> None:
        """Open the CA, serve HTTP, then keep the CRLs fresh until cancelled."""
        authority = self._open()
        if self.cfg.ldap_url:
            publisher = LdapPublisher(
                self.cfg.ldap_url,
                self.cfg.ldap_base_dn,
                self.cfg.ldap_bind_dn,
                self.cfg.ldap_password,
            )
            self._mirror = LdapMirror(publisher, authority)
            self._mirror.publish_all()
        runner = web.AppRunner(make_app(authority, admin_secret=self.cfg.admin_secret))
        try:
            await runner.setup()
            site = web.TCPSite(runner, self.cfg.host, self.cfg.port)
            await site.start()
            self.port = _bound_port(runner, self.cfg.port)
            self.log.info("ca_listening", url=f"http://{self.cfg.host}:{self.port}")
            await self.bus.publisher.wait_connected(2.0)
            ready.set()
            await self._keep_crls_fresh(authority)
        finally:
            await runner.cleanup()
            authority.close()

    def _open(self) -> Authority:
        folder = Path(self.cfg.data_dir)
        passphrase = self.cfg.passphrase.encode()
        if self.cfg.create and not (folder / DB_FILE).exists():
            self.log.info("ca_created", dir=str(folder), family=self.cfg.family)
            Authority.create(
                folder,
                passphrase,
                family=self.cfg.family,
                base_url=self.cfg.base_url,
                now=self.now,
            ).close()
        return Authority.open(
            folder, passphrase, policy=self.cfg.policy(), now=self.now, events=self._publish
        )

    async def _keep_crls_fresh(self, authority: Authority) -> None:
        margin = timedelta(seconds=self.cfg.crl_renew_before_s)
        while True:
            authority.refresh_crls(margin)
            await self.clock.sleep(self.cfg.crl_check_s)

    def _publish(self, kind: str, body: dict[str, Any]) -> None:
        self._counts[_COUNTED[kind]] += 1
        self.bus.publish(kind, body)
        if self._mirror is not None:
            self._mirror.on_event(kind, body)

    def counters(self) -> dict[str, int]:
        """Return certificates issued and revoked, CRLs published, requests refused."""
        out = dict(self._counts)
        if self._mirror is not None:
            out["ldap_published"] = self._mirror.published
            out["ldap_failed"] = self._mirror.failed
        return out


def _bound_port(runner: web.AppRunner, configured: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return configured
