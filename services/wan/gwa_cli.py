"""``smtb gwa``: administer a gateway over its WAN endpoint as the GWA.

Connection options (or ``SMTB_GWA_<OPTION>`` environment variables, e.g.
``SMTB_GWA_GATEWAY=127.0.0.1:8443``) name the gateway and the GWA's TLS
files; each subcommand sends one request and prints its result as JSON.
Errors are one line and exit code 1.

``wakeup`` reaches a gateway that listens for no administration at all: it
sends the GWA-signed wake-up packet to the gateway's UDP port, waits on
``--listen`` (the address the gateway has configured for this GWA) for the
gateway's mutual-TLS call and runs one request on it. ``rotate-certs`` renews
the gateway's TLS or signature certificate through the CA's HTTP API.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click
from smtestbed.services._runtime import pki, tls, tls_options
from smtestbed.services._runtime.commands import TestbedCommand, TestbedGroup
from smtestbed.services._runtime.config import parse_host_port
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.wan.gwa import GwaClient, rotate_certificate
from smtestbed.services.wan.gwa_wakeup import CallListener, send_wakeup

_FILE = tls_options.FILE


@click.group(cls=TestbedGroup, context_settings={"auto_envvar_prefix": "SMTB_GWA"})
@click.option("--gateway", default="", help="the gateway's WAN endpoint HOST:PORT")
@tls_options.client_options("GWA TLS certificate (PEM)")
@click.option("--timeout", default=30.0, show_default=True, help="seconds per request")
@click.pass_context
def group(ctx: click.Context, /, **options: Any) -> None:
    """Administer a gateway over mutual TLS as the gateway administrator."""
    ctx.obj = options


def _run(ctx: click.Context, op: str, params: dict[str, Any]) -> None:
    result = asyncio.run(_session(ctx, lambda gwa: gwa.call(op, params)))
    click.echo(json.dumps(result, indent=2, sort_keys=True))


async def _session(ctx: click.Context, work: Callable[[GwaClient], Awaitable[Any]]) -> Any:
    opts: dict[str, Any] = ctx.obj
    if not opts["gateway"]:
        raise ConfigError("needs the gateway's WAN endpoint HOST:PORT", key="--gateway")
    host, port = parse_host_port(str(opts["gateway"]), "--gateway")
    context = tls_options.client_context(opts)
    name = opts["name"] or None
    async with GwaClient.connect(host, port, context, name, timeout=opts["timeout"]) as gwa:
        return await work(gwa)


def _target(gateway: str | None) -> dict[str, Any]:
    return {"gateway": gateway} if gateway else {}


_INSTANCE = click.option("--instance", "gateway", default=None, help="gateway instance name")


@group.command("status", cls=TestbedCommand)
@_INSTANCE
@click.pass_context
def status(ctx: click.Context, gateway: str | None) -> None:
    """Show the gateway's counters, meters and store."""
    _run(ctx, "status", _target(gateway))


@group.command("add-meter", cls=TestbedCommand)
@click.argument("meter")
@click.option("--key", "key_hex", required=True, help="AES-128 key, 32 hex digits")
@click.option("--manufacturer", default="EMH", show_default=True)
@click.option("--security", default=5, show_default=True, help="security mode 0, 5 or 7")
@click.option("--taf", "tafs", multiple=True, help="TAF to assign (repeat)")
@click.option("--emt", default="", help="EMT receiving the meter's TAF data")
@click.option("--consumer", default="", help="consumer the meter belongs to")
@click.option("--replace", is_flag=True, help="replace an existing entry")
@_INSTANCE
@click.pass_context
def add_meter(ctx: click.Context, /, meter: str, key_hex: str, **opts: Any) -> None:
    """Register a meter with its key."""
    gateway, tafs = opts.pop("gateway"), list(opts.pop("tafs"))
    _run(
        ctx, "add_meter", {"meter": meter, "key": key_hex, "tafs": tafs, **opts, **_target(gateway)}
    )


@group.command("remove-meter", cls=TestbedCommand)
@click.argument("meter")
@_INSTANCE
@click.pass_context
def remove_meter(ctx: click.Context, meter: str, gateway: str | None) -> None:
    """Remove a meter from the registry."""
    _run(ctx, "remove_meter", {"meter": meter, **_target(gateway)})


@group.command("assign-taf", cls=TestbedCommand)
@click.argument("meter")
@click.argument("tafs", nargs=-1, required=True)
@_INSTANCE
@click.pass_context
def assign_taf(ctx: click.Context, meter: str, tafs: tuple[str, ...], gateway: str | None) -> None:
    """Assign TAFs (TAF1 TAF2 ...) to a meter, replacing its list."""
    _run(ctx, "assign_taf", {"meter": meter, "tafs": list(tafs), **_target(gateway)})


@group.command("list-meters", cls=TestbedCommand)
@_INSTANCE
@click.pass_context
def list_meters(ctx: click.Context, gateway: str | None) -> None:
    """List the registered meters."""
    _run(ctx, "list_meters", _target(gateway))


@group.command("read-log", cls=TestbedCommand)
@click.option("--log", default="system", show_default=True, help="system or calibration")
@click.option("--limit", default=1000, show_default=True)
@_INSTANCE
@click.pass_context
def read_log(ctx: click.Context, log: str, limit: int, gateway: str | None) -> None:
    """Read entries of the gateway's system (or calibration) log."""
    _run(ctx, "read_log", {"log": log, "limit": limit, **_target(gateway)})


@group.command("taf6", cls=TestbedCommand)
@click.argument("meter")
@_INSTANCE
@click.pass_context
def taf6(ctx: click.Context, meter: str, gateway: str | None) -> None:
    """Trigger a TAF6 readout of a meter."""
    _run(ctx, "taf6_readout", {"meter": meter, **_target(gateway)})


@group.command("push-update", cls=TestbedCommand)
@click.argument("bundle", type=_FILE)
@_INSTANCE
@click.pass_context
def push_update(ctx: click.Context, bundle: Path, gateway: str | None) -> None:
    """Push a signed update bundle to the gateway's downloader."""
    data = base64.b64encode(bundle.read_bytes()).decode()
    _run(ctx, "push_update", {"bundle": data, **_target(gateway)})


@group.command("rotate-certs", cls=TestbedCommand)
@click.argument("which", type=click.Choice(["tls", "sig"]))
@click.option("--ca", "ca_url", required=True, help="the CA's HTTP API, e.g. http://HOST:8480")
@click.option("--token", required=True, help="enrolment token for the profile and gateway name")
@click.pass_context
def rotate_certs(ctx: click.Context, which: str, ca_url: str, token: str) -> None:
    """Renew the gateway's TLS or signature certificate through the CA."""
    timeout = ctx.obj["timeout"]
    result = asyncio.run(
        _session(
            ctx,
            lambda gwa: rotate_certificate(gwa, which, ca_url=ca_url, token=token, timeout=timeout),
        )
    )
    click.echo(json.dumps(result, indent=2, sort_keys=True))


@group.command("wakeup", cls=TestbedCommand)
@click.option("--gateway", "gateway_id", required=True, help="gateway id (its certificate's CN)")
@click.option("--to", "target", required=True, help="the gateway's wake-up UDP HOST:PORT")
@click.option("--listen", required=True, help="HOST:PORT the gateway calls (its gwa_endpoints)")
@click.option("--gwa", default="", help="GWA id (default: the CN of --sig-cert)")
@click.option("--sig-cert", required=True, type=_FILE, help="GWA signature certificate (PEM)")
@click.option("--sig-key", required=True, type=_FILE, help="its private key (PEM)")
@click.option("--issued", type=float, default=None, help="issue time, s since the epoch (now)")
@click.option("--wait", default=15.0, show_default=True, help="seconds to wait for the call")
@click.option("--op", default="read_log", show_default=True, help="request to run on the call")
@click.option("--params", default='{"log": "system", "limit": 100}', show_default=True)
@click.pass_context
def wakeup_gateway(ctx: click.Context, /, **o: Any) -> None:
    """Wake a gateway up, take its call and run one request (default: read its system log)."""
    try:
        params = json.loads(o["params"])
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not JSON: {exc}", key="--params") from exc
    if not isinstance(params, dict):
        raise ConfigError("must be a JSON object", key="--params")
    click.echo(json.dumps(asyncio.run(_wake(ctx.obj, o, params)), indent=2, sort_keys=True))


async def _wake(opts: dict[str, Any], o: dict[str, Any], params: dict[str, Any]) -> Any:
    certificate = pki.read_certificates(o["sig_cert"])[0]
    key = pki.read_private_key(o["sig_key"])
    target = parse_host_port(o["target"], "--to")
    context = tls.server_context(
        opts["cert"], opts["key"], opts["chain"], opts["trust"], opts["crl"]
    )
    listener = CallListener(o["listen"], context, gateway=o["gateway_id"], timeout=opts["timeout"])
    async with listener as calls:
        send_wakeup(
            target,
            gateway=o["gateway_id"],
            gwa=o["gwa"] or pki.common_name(certificate),
            key=key,
            certificate=certificate,
            issued=o["issued"],
        )
        gwa = await calls.next_call(o["wait"])
        return await gwa.call(o["op"], params)
