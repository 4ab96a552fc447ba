"""The telemetry web server (aiohttp): dashboard, live stream and /metrics.

Routes:
    ``/``                the dashboard page (assets shipped in :mod:`assets`, no CDN)
    ``/static/app.js``   its script; ``/static/app.css`` its style
    ``/api/state``       the current summary as JSON (see :func:`view.summary`)
    ``/events``          the summary as server-sent events, one per publication period
    ``/metrics``         the Prometheus text format
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web
from prometheus_client import CollectorRegistry
from smtestbed.services.telemetry import assets
from smtestbed.services.telemetry.prometheus import CONTENT_TYPE, exposition

KEEPALIVE_S = 15.0

HUB_KEY: web.AppKey[Hub] = web.AppKey("hub")
REGISTRY_KEY: web.AppKey[CollectorRegistry] = web.AppKey("registry")


class Hub:
    """The latest summary (JSON text) and a wake-up for the open event streams."""

    def __init__(self) -> None:
        self.version = 0
        self.payload = "{}"
        self.closed = False
        self.streams = 0
        self._changed = asyncio.Event()

    def push(self, payload: str) -> None:
        """Replace the summary and wake every stream."""
        self.version += 1
        self.payload = payload
        self._wake()

    def close(self) -> None:
        """End every stream (the server is stopping)."""
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_newer(self, version: int, timeout: float) -> bool:
        """Wait up to ``timeout`` s for a summary newer than ``version``."""
        if self.version != version or self.closed:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)
        return self.version != version


async def _index(request: web.Request) -> web.Response:
    return web.Response(text=assets.INDEX_HTML, content_type="text/html")


async def _script(request: web.Request) -> web.Response:
    return web.Response(text=assets.APP_JS, content_type="text/javascript")


async def _style(request: web.Request) -> web.Response:
    return web.Response(text=assets.APP_CSS, content_type="text/css")


async def _state(request: web.Request) -> web.Response:
    return web.Response(text=request.app[HUB_KEY].payload, content_type="application/json")


async def _metrics(request: web.Request) -> web.Response:
    body = exposition(request.app[REGISTRY_KEY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def _events(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB_KEY]
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await resp.prepare(request)
    hub.streams += 1
    version = -1
    try:
        while not hub.closed:
            if hub.version != version:
                version = hub.version
                await resp.write(f"data: {hub.payload}\n\n".encode())
            elif not await hub.wait_newer(version, KEEPALIVE_S):
                await resp.write(b": keepalive\n\n")
    except ConnectionResetError:
        pass  # the browser went away
    finally:
        hub.streams -= 1
    return resp


def make_app(hub: Hub, registry: CollectorRegistry) -> web.Application:
    """Return the application serving the dashboard, the stream and the metrics."""
    app = web.Application()
    app[HUB_KEY] = hub
    app[REGISTRY_KEY] = registry
    app.router.add_get("/", _index)
    app.router.add_get("/static/app.js", _script)
    app.router.add_get("/static/app.css", _style)
    app.router.add_get("/api/state", _state)
    app.router.add_get("/events", _events)
    app.router.add_get("/metrics", _metrics)
    return app


class WebServer:
    """Run :func:`make_app` on ``host:port`` (0: a free port, see :attr:`port`)."""

    def __init__(self, hub: Hub, registry: CollectorRegistry, host: str, port: int) -> None:
        self.hub = hub
        self.host, self.port = host, port
        self._runner = web.AppRunner(make_app(hub, registry), access_log=None)

    async def start(self) -> int:
        """Bind and serve; return the bound port."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, shutdown_timeout=1.0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        """End the streams, then close the listener and every connection."""
        self.hub.close()
        await self._runner.cleanup()
