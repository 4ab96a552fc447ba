"""``smtb gateway make-manifest`` and ``smtb gateway make-bundle``.

The gateway's command group adds both commands; they sign with a PEM
private key given by path (unencrypted, or encrypted with the passphrase in
the environment variable ``SMTB_GATEWAY_KEY_PASSWORD``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
from smtestbed.services._runtime.commands import TestbedCommand
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.gateway.downloader import build_bundle
from smtestbed.services.gateway.observer import (
    PrivateKey,
    build_manifest,
    load_private_key,
    sign_manifest,
)
from smtestbed.services.gateway.partitions import own_base, own_partitions

PASSWORD_ENV = "SMTB_GATEWAY_KEY_PASSWORD"

_key_option = click.option(
    "--key",
    "key_file",
    type=click.Path(path_type=Path),
    required=True,
    help="PEM private key that signs (ECDSA, e.g. brainpoolP256r1)",
)
_out_option = click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="write the result here"
)


def _signing_key(path: Path) -> PrivateKey:
    password = os.environ.get(PASSWORD_ENV)
    return load_private_key(path, password.encode() if password is not None else None)


def parse_partitions(specs: tuple[str, ...]) -> dict[str, list[Path]]:
    """Turn ``NAME=PATH`` options into partition name -> paths (a name may repeat)."""
    out: dict[str, list[Path]] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"expected NAME=PATH, got {spec!r}", key="partition")
        out.setdefault(name, []).append(Path(path))
    return out


def _write_atomically(path: Path, data: bytes) -> None:
    temp = path.with_name(path.name + ".tmp")
    temp.write_bytes(data)
    os.replace(temp, path)


@click.command("make-manifest", cls=TestbedCommand)
@click.option(
    "--partition",
    "partition_specs",
    multiple=True,
    metavar="NAME=PATH",
    help="a file or folder of a partition (repeatable)",
)
@click.option(
    "--config",
    "configs",
    multiple=True,
    type=click.Path(path_type=Path),
    help="a configuration file (repeatable)",
)
@click.option("--version", "version", required=True, help="firmware version described")
@click.option(
    "--gateway-code",
    is_flag=True,
    help="add the gateway's own partitions (its installed source files)",
)
@click.option(
    "--base",
    type=click.Path(path_type=Path),
    default=None,
    help="record paths relative to this folder",
)
@_key_option
@_out_option
def make_manifest(
    partition_specs: tuple[str, ...],
    configs: tuple[Path, ...],
    version: str,
    gateway_code: bool,
    base: Path | None,
    key_file: Path,
    out: Path,
) -> None:
    """Hash the partitions and configuration files into a signed observer manifest."""
    key = _signing_key(key_file)
    partitions = parse_partitions(partition_specs)
    if gateway_code:
        partitions = {**own_partitions(), **partitions}
        base = base or own_base()
    manifest = build_manifest(partitions, configs, version, base=base)
    doc = sign_manifest(manifest, key)
    _write_atomically(out, json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n")
    files = sum(len(listing) for listing in doc["partitions"].values())
    click.echo(
        f"manifest {version}: {files} files in {len(doc['partitions'])} partitions, "
        f"{len(doc['configs'])} configuration files -> {out}"
    )


@click.command("make-bundle", cls=TestbedCommand)
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="product name the gateway expects")
@click.option("--version", "version", required=True, help="semantic version of the bundle")
@_key_option
@_out_option
def make_bundle(source: Path, name: str, version: str, key_file: Path, out: Path) -> None:
    """Pack the files under SOURCE into an update bundle signed by the manufacturer key."""
    key = _signing_key(key_file)
    bundle = build_bundle(source, name=name, version=version, private_key=key)
    _write_atomically(out, bundle)
    click.echo(f"bundle {name} {version}: {len(bundle)} bytes -> {out}")
