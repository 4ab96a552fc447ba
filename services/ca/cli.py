"""``smtb ca``: the CA service and commands on a CA directory.

``run|show-config`` as every service; ``serve --dir DIR`` runs the service
on ``DIR``; ``init``, ``issue``, ``revoke``, ``crl``, ``show`` and ``token``
work on the directory directly, as its operator (admin). The key passphrase
comes from ``SMTB_CA_PASSPHRASE`` (or ``--config``), like the service's.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization
from smtestbed.services._runtime.commands import TestbedCommand, service_group
from smtestbed.services._runtime.config import load_config
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services._runtime.lifecycle import main
from smtestbed.services.ca.access import PURPOSES, Requester
from smtestbed.services.ca.authority import Authority, format_serial, parse_serial
from smtestbed.services.ca.config import CaConfig
from smtestbed.services.ca.crl import REASONS
from smtestbed.services.ca.hierarchy import CA_NAMES
from smtestbed.services.ca.profiles import CA_CURVES, PROFILES
from smtestbed.services.ca.service import CaService
from smtestbed.services.ca.state import write_file

group = service_group(CaService, "Run the SM-PKI CA service, or work on a CA directory.")

_DIR = click.option(
    "--dir", "folder", required=True, type=click.Path(path_type=Path), help="CA directory"
)
_CONFIG = click.option(
    "--config", "config_file", type=click.Path(path_type=Path), default=None, help="TOML file"
)


def _settings(config_file: Path | None, **overrides: object) -> CaConfig:
    return load_config(CaConfig, "ca", path=config_file, overrides=overrides)


@contextmanager
def _authority(folder: Path, config_file: Path | None) -> Iterator[Authority]:
    cfg = _settings(config_file)
    authority = Authority.open(folder, cfg.passphrase.encode(), policy=cfg.policy())
    try:
        yield authority
    finally:
        authority.close()


@group.command("init", cls=TestbedCommand)
@_DIR
@_CONFIG
@click.option(
    "--curve",
    type=click.Choice(sorted(CA_CURVES)),
    default=None,
    help="brainpool: root brainpoolP384r1, sub-CAs brainpoolP256r1; nist: P-384, P-256",
)
@click.option("--url", "base_url", default=None, help="HTTP base URL for CRL distribution points")
def init(folder: Path, config_file: Path | None, curve: str | None, base_url: str | None) -> None:
    """Create a CA directory: root, sub-CAs, first CRLs."""
    cfg = _settings(config_file)
    authority = Authority.create(
        folder,
        cfg.passphrase.encode(),
        family=curve or cfg.family,
        base_url=base_url or cfg.base_url,
        policy=cfg.policy(),
    )
    with _closing(authority):
        for ca in authority.status()["cas"]:
            click.echo(f"{ca['name']:<5} {ca['curve']:<16} {ca['subject']}")
    click.echo(f"certificates: {folder / 'certs'}  CRLs: {folder / 'crl'}")


@group.command("issue", cls=TestbedCommand)
@_DIR
@_CONFIG
@click.option(
    "--csr",
    "csr_file",
    required=True,
    type=click.Path(path_type=Path),
    help="PKCS#10 request, PEM or DER",
)
@click.option(
    "--profile",
    required=True,
    type=click.Choice([p.name for p in PROFILES.values() if p.end_entity]),
    help="certificate profile",
)
@click.option(
    "--out",
    "out_file",
    required=True,
    type=click.Path(path_type=Path),
    help="where to write the certificate (PEM)",
)
@click.option("--chain/--no-chain", default=False, help="append the CA chain to --out")
def issue(
    folder: Path,
    config_file: Path | None,
    csr_file: Path,
    profile: str,
    out_file: Path,
    chain: bool,
) -> None:
    """Issue a certificate from a CSR (as the CA operator)."""
    csr = _read(csr_file, "--csr")
    with _authority(folder, config_file) as authority:
        issued = authority.issue(csr, profile, Requester(admin=True))
    certs = [issued.certificate, *(issued.chain if chain else ())]
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    write_file(out_file, pem, 0o644)
    click.echo(
        f"serial {format_serial(issued.serial)} {issued.profile} {issued.subject} "
        f"from {issued.issuer} -> {out_file}"
    )


@group.command("revoke", cls=TestbedCommand)
@_DIR
@_CONFIG
@click.option("--serial", required=True, help="serial number, hex")
@click.option(
    "--reason", default="unspecified", type=click.Choice(list(REASONS)), help="RFC 5280 reason"
)
def revoke(folder: Path, config_file: Path | None, serial: str, reason: str) -> None:
    """Revoke a certificate and publish its issuer's next CRL."""
    with _authority(folder, config_file) as authority:
        record = authority.revoke(parse_serial(serial), reason, Requester(admin=True))
        crl = authority.current_crl(record.issuer)
    click.echo(
        f"revoked {format_serial(record.serial)} ({record.reason}); "
        f"CRL {record.issuer} #{crl.number} with {crl.entries} entries"
    )


@group.command("crl", cls=TestbedCommand)
@_DIR
@_CONFIG
@click.option(
    "--ca",
    "names",
    multiple=True,
    type=click.Choice(CA_NAMES),
    help="only this CA (repeatable; default: all)",
)
def crl(folder: Path, config_file: Path | None, names: tuple[str, ...]) -> None:
    """Publish a new CRL for each CA."""
    with _authority(folder, config_file) as authority:
        for name in names or CA_NAMES:
            record = authority.publish_crl(name)
            click.echo(
                f"{name:<5} #{record.number} entries {record.entries} "
                f"next update {record.next_update.isoformat()} "
                f"-> {folder / 'crl' / (name + '.crl.pem')}"
            )


@group.command("show", cls=TestbedCommand)
@_DIR
@_CONFIG
@click.option("--limit", default=20, show_default=True, help="certificates listed, newest first")
def show(folder: Path, config_file: Path | None, limit: int) -> None:
    """Show the CAs, their CRLs and the newest certificates."""
    with _authority(folder, config_file) as authority:
        status = authority.status()
        records = authority.store.certificates(limit=limit)
    for ca in status["cas"]:
        click.echo(
            f"{ca['name']:<5} {ca['curve']:<16} CRL #{ca['crl_number']} "
            f"next update {ca['crl_next_update']}  {ca['subject']}"
        )
    counts = status["certificates"]
    click.echo(f"certificates: {counts['valid']} valid, {counts['revoked']} revoked")
    for r in records:
        click.echo(
            f"{format_serial(r.serial)}  {r.status:<7} {r.profile:<8} {r.issuer:<4} "
            f"{r.subject}  until {r.not_after.date().isoformat()}"
        )


@group.command("token", cls=TestbedCommand)
@_DIR
@_CONFIG
@click.option(
    "--profile",
    required=True,
    type=click.Choice(list(PROFILES)),
    help="profile the token is bound to",
)
@click.option("--subject", required=True, help="subject CN the token is bound to")
@click.option("--purpose", default="issue", type=click.Choice(PURPOSES), show_default=True)
def token(folder: Path, config_file: Path | None, profile: str, subject: str, purpose: str) -> None:
    """Create a one-time enrolment (or revocation) token; print it."""
    with _authority(folder, config_file) as authority:
        click.echo(authority.create_token(profile=profile, subject=subject, purpose=purpose))


@group.command("serve", cls=TestbedCommand)
@_DIR
@_CONFIG
@click.option("--port", type=int, default=None, help="HTTP port (default from config)")
@click.option("--host", default=None, help="listen address (default from config)")
def serve(folder: Path, config_file: Path | None, port: int | None, host: str | None) -> None:
    """Run the CA service (HTTP API) on a CA directory; same as `run` with data_dir."""
    overrides: dict[str, object] = {"data_dir": str(folder), "create": False}
    if port is not None:
        overrides["port"] = port
    if host is not None:
        overrides["host"] = host
    sys.exit(main(CaService(_settings(config_file, **overrides))))


def _read(path: Path, option: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", key=option) from exc


@contextmanager
def _closing(authority: Authority) -> Iterator[Authority]:
    try:
        yield authority
    finally:
        authority.close()
