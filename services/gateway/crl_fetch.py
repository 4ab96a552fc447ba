"""CRLs fetched from the CA over HTTP, for the gateway's WAN and HAN endpoints.

Each endpoint that names CRL URLs (``wan_crl_urls``, ``han_crl_urls``: the
CA's ``GET /crl/<name>.crl``) owns one :class:`CrlFetcher`: it downloads every
URL at start and then every ``every_s`` of simulated time, stores each CRL as
PEM in its own folder (``<data_dir>/<instance>/<wan|han>-crl/<name>.crl.pem``,
replaced atomically) and tells its endpoint, which builds a new TLS context
for the next handshakes. A failed fetch is logged and keeps the CRLs of the
last good one (their nextUpdate decides how long they serve).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from smtestbed.services._runtime import tls
from smtestbed.services._runtime.clock import SimClock
from smtestbed.services._runtime.errors import ConfigError, TestbedError

if TYPE_CHECKING:
    import aiohttp

__all__ = ["CrlFetcher", "Publisher"]


class Publisher(Protocol):
    """Where events go (the service's bus client)."""

    def publish(self, kind: str, body: Any) -> Any:
        """Publish one event."""


class CrlFetcher:
    """Keep one endpoint's CRL files fresh from the CA.

    Args:
        urls: the CA URLs of the CRLs (empty: nothing to fetch).
        folder: where the PEM files go.
        key: the setting named in errors (``gateway.wan_crl_urls``).
        every_s: simulated time between fetches, s.
        topic: the event published after each complete fetch.
        gateway: the instance named in the event.
    """

    def __init__(
        self,
        urls: Sequence[str],
        folder: Path,
        *,
        key: str,
        every_s: float,
        topic: str,
        gateway: str,
        clock: SimClock,
        bus: Publisher,
        log: Any,
    ) -> None:
        if urls and not every_s > 0:
            raise ConfigError(f"must be > 0, got {every_s}", key=key.replace("_urls", "_every_s"))
        self.urls = tuple(urls)
        self.folder = folder
        self.key = key
        self.every_s = every_s
        self.topic = topic
        self.gateway = gateway
        self.clock = clock
        self.bus = bus
        self.log = log
        self.updates = 0
        self.failures = 0

    def files(self) -> list[Path]:
        """Return the fetched CRL files (none when no URLs are set)."""
        return sorted(self.folder.glob("*.crl.pem")) if self.urls else []

    async def fetch(self) -> None:
        """Download each URL and store it as PEM; raise ConfigError on the first failure."""
        import aiohttp  # loaded on the first fetch: it is a quarter second of every start

        self.folder.mkdir(parents=True, exist_ok=True)
        timeout = aiohttp.ClientTimeout(total=10.0)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for url in self.urls:
                der = await self._get(session, url)
                name = url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".crl")
                path = self.folder / f"{name}.crl.pem"
                path.with_suffix(".tmp").write_bytes(tls.crl_pem(der))
                path.with_suffix(".tmp").replace(path)
        self.updates += 1
        body = {"gateway": self.gateway, "urls": list(self.urls)}
        self.bus.publish(self.topic, {**body, "t_sim": self.clock.now()})

    async def run_forever(self, updated: Callable[[], None]) -> None:
        """Fetch every ``every_s`` simulated seconds; call ``updated`` after each good fetch."""
        if not self.urls:
            return
        while True:
            await self.clock.sleep(self.every_s)
            try:
                await self.fetch()
                updated()
            except TestbedError as exc:  # the old CRLs stay
                self.failures += 1
                self.log.warning("crl_fetch_failed", setting=self.key, error=str(exc))

    async def _get(self, session: aiohttp.ClientSession, url: str) -> bytes:
        import aiohttp

        try:
            async with session.get(url) as response:
                if response.status != 200:
                    raise ConfigError(f"{url}: HTTP {response.status}", key=self.key)
                return await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ConfigError(f"{url}: {exc}", key=self.key) from exc
