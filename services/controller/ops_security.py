"""Operations of the security scenarios: firmware bundles and the gateway's own disk.

``push_firmware`` builds a bundle the way its maker does (``smtb gateway
make-bundle``), signed by the manufacturer's key or by a foreign one from the run
folder (:mod:`.credentials`), and pushes it over the bus (``gateway.push_update``).
``installed_firmware`` looks at what is installed on the gateway's disk, so a
scenario compares the files with what it built instead of trusting the gateway's
answer. ``tamper_log`` is an attacker with write access to the gateway's disk: it
edits one entry of a log file in place and says exactly what it did.
``wan_request`` is a WAN party (the GWA) with its certificate from the run folder's
PKI sending one request over mutual TLS (:mod:`.wan_session`).
Importing this module registers them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography import x509
from smtestbed.proto import topics
from smtestbed.services._runtime.config import parse_host_port, read_toml
from smtestbed.services._runtime.errors import PeerError, RequestError
from smtestbed.services.controller import tampering, wan_session
from smtestbed.services.controller.credentials import (
    ROLES,
    SIGNERS,
    Identity,
    client_context,
    signing_key,
)
from smtestbed.services.controller.layout import SMTB
from smtestbed.services.controller.operations import OpContext, Param, operation
from smtestbed.services.controller.ops import GATEWAY, SERVICE, _gw, _gw_params

PRODUCT = "smtb-gateway"  # the gateway's default product_name
BUILD_TIMEOUT_S = 60.0
HOWS = ("change", "delete", "swap")
INSTANCE = Param(
    name="gateway", type="string", description="gateway instance (default: the only one)"
)


def run_dir(ctx: OpContext) -> Path:
    """Return the testbed's run folder; RequestError when the controller does not know it."""
    if not ctx.topology.run_dir:
        raise RequestError("the controller knows no run folder (run_dir)", field="operation")
    return Path(ctx.topology.run_dir)


def instance_folder(ctx: OpContext, gateway: str | None) -> Path:
    """Return a gateway instance's folder on disk (the only one when ``gateway`` is None)."""
    root = run_dir(ctx) / "gateway"
    names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if gateway is None:
        if len(names) != 1:
            raise RequestError(f"name one of the instances {names}", field="gateway")
        gateway = names[0]
    if gateway not in names:
        raise RequestError(f"no gateway instance {gateway!r} on disk ({names})", field="gateway")
    return root / gateway


# -- firmware ----------------------------------------------------------------------------


def firmware_files(version: str, signer: str) -> dict[str, bytes]:
    """Return the payload of a test firmware: its version and signer written in the files."""
    return {
        "bin/firmware.txt": f"{PRODUCT} firmware {version}\n".encode(),
        "etc/build.json": json.dumps({"version": version, "signed_by": signer}).encode(),
    }


def digests(files: dict[str, bytes]) -> dict[str, str]:
    """Return each file's SHA-256 (hex) by path."""
    return {path: hashlib.sha256(data).hexdigest() for path, data in sorted(files.items())}


async def build_bundle(
    folder: Path, key: Path, p: dict[str, Any], files: dict[str, bytes]
) -> bytes:
    """Write ``files`` under ``folder/src``; pack them with ``smtb gateway make-bundle``."""
    source, out = folder / "src", folder / "bundle.tar"
    for rel, data in files.items():
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / rel).write_bytes(data)
    argv = [SMTB, "gateway", "make-bundle", str(source), "--name", p["name"]]
    argv += ["--version", p["version"], "--key", str(key), "--out", str(out)]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), BUILD_TIMEOUT_S)
    except TimeoutError as exc:
        proc.kill()
        await proc.wait()
        raise PeerError(f"smtb gateway make-bundle took over {BUILD_TIMEOUT_S:g} s") from exc
    if proc.returncode != 0:
        raise RequestError(f"make-bundle: {err.decode().strip()}", field="version")
    return out.read_bytes()


@operation(
    "push_firmware",
    "act",
    "Build a firmware bundle with smtb gateway make-bundle, signed by the manufacturer's "
    "key or a foreign one, and push it to a gateway instance (gateway.push_update)",
    Param(name="version", type="string", required=True, description="semantic version"),
    Param(
        name="signer",
        type="string",
        default="manufacturer",
        choices=SIGNERS,
        description="whose key signs the manifest",
    ),
    Param(name="name", type="string", default=PRODUCT, description="product name in it"),
    GATEWAY,
    SERVICE,
)
async def push_firmware(ctx: OpContext, p: dict[str, Any]) -> Any:
    root = run_dir(ctx)
    key = signing_key(root, p["signer"])
    if not key.is_file():  # e.g. smtb up on a deploy file: the run folder holds no keys
        raise RequestError(f"the run folder has no {p['signer']} key ({key})", field="signer")
    bundles = root / "bundles"
    bundles.mkdir(exist_ok=True)
    folder = bundles / f"{len(list(bundles.iterdir())):03d}-{p['version']}-{p['signer']}"
    folder.mkdir()
    files = firmware_files(p["version"], p["signer"])
    bundle = await build_bundle(folder, key, p, files)
    params = {**_gw_params(p), "bundle": bundle}
    answer = await ctx.request(_gw(ctx, p), topics.GATEWAY_PUSH_UPDATE, params)
    return {
        "version": p["version"],
        "signer": p["signer"],
        "bundle_sha256": hashlib.sha256(bundle).hexdigest(),
        "files": digests(files),
        "answer": answer,
    }


@operation(
    "installed_firmware",
    "observe",
    "The firmware installed on a gateway instance's disk: the version 'current' points "
    "to and each file's SHA-256 (read from the disk, not asked of the gateway)",
    INSTANCE,
)
async def installed_firmware(ctx: OpContext, p: dict[str, Any]) -> Any:
    current = instance_folder(ctx, p["gateway"]) / "firmware" / "current"
    if not current.is_dir():
        return {"version": None, "files": {}}
    files = {
        f.relative_to(current).as_posix(): f.read_bytes()
        for f in sorted(current.rglob("*"))
        if f.is_file()
    }
    return {"version": current.resolve().name, "files": digests(files)}


# -- log tampering -----------------------------------------------------------------------


@operation(
    "tamper_log",
    "act",
    "As an attacker on the gateway's disk, edit one entry of a log file in place: "
    "change its fields (hash recomputed, signature kept), delete it, or swap it with "
    "the next entry; answers what was done",
    Param(name="log", type="string", required=True, description="system, calibration, ..."),
    Param(name="entry", type="integer", required=True, minimum=0, description="entry seq"),
    Param(name="how", type="string", required=True, choices=HOWS, description="what to do"),
    Param(name="fields", type="object", default={}, description="change: fields to set"),
    INSTANCE,
)
async def tamper_log(ctx: OpContext, p: dict[str, Any]) -> Any:
    path = tampering.log_path(instance_folder(ctx, p["gateway"]), p["log"])
    return tampering.tamper(path, p["entry"], p["how"], p["fields"]).to_map()


# -- WAN parties -------------------------------------------------------------------------


def wan_endpoint(root: Path) -> tuple[str, int]:
    """Return the gateway's WAN endpoint from the run folder's configuration."""
    config = root / "testbed.toml"
    if not config.is_file():
        raise RequestError(f"no testbed file {config}: no WAN endpoint known", field="operation")
    gateway = read_toml(config).get("gateway", {})
    listen = gateway.get("wan_listen", "") if isinstance(gateway, dict) else ""
    if not listen:
        raise RequestError("the gateway has no WAN endpoint (state.pki)", field="operation")
    return parse_host_port(str(listen), "gateway.wan_listen")


@operation(
    "wan_request",
    "act",
    "As a WAN party (its certificate from the run folder's PKI) open mutual TLS to the "
    "gateway's WAN endpoint and send one request; answers whether the session held "
    "(else the refusal reason) and the gateway's reply",
    Param(name="op", type="string", required=True, description="read_log, status, add_meter, ..."),
    Param(name="params", type="object", default={}, description="the request's parameters"),
    Param(
        name="party",
        type="string",
        default="gwa",
        choices=("gwa", "emt"),
        description="whose certificate",
    ),
)
async def wan_request(ctx: OpContext, p: dict[str, Any]) -> Any:
    root = run_dir(ctx)
    host, port = wan_endpoint(root)
    context = client_context(root, p["party"], field="party")
    message = {"op": p["op"], "params": p["params"]}
    outcome = await wan_session.request(host, port, context, message, timeout_s=ctx.timeout_s)
    return outcome.to_map()


@operation(
    "pki_identity",
    "observe",
    "A party's certificate made by the testbed (run folder's pki/): serial (hex, as the "
    "CA shows it), subject, issuer, validity",
    Param(
        name="party",
        type="string",
        required=True,
        choices=tuple(ROLES),
        description="gateway, gwa, emt, timeservice",
    ),
)
async def pki_identity(ctx: OpContext, p: dict[str, Any]) -> Any:
    path = Identity.of(run_dir(ctx), p["party"]).cert
    if not path.is_file():
        raise RequestError(f"no {p['party']} certificate (state.pki.certificates)", field="party")
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return {
        "serial": f"{cert.serial_number:x}",
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "not_after": cert.not_valid_after_utc.isoformat(),
    }
