"""``smtb gateway verify-log``: check a gateway log file against the instance's public key.

Prints one line: ``OK <n> entries (log <name>)`` and exits 0, or names the
first bad entry (``ALTERED entry 3 at line 4 (log system): ...``) and exits 1.
With ``--json`` the line is a JSON object (ok, count, log, problem, seq,
line, detail). An unreadable file or key is one error line and exit 1 too.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from smtestbed.services._runtime.commands import TestbedCommand
from smtestbed.services.gateway.keys import load_public_key
from smtestbed.services.gateway.logs import verify

__all__ = ["verify_log"]


@click.command("verify-log", cls=TestbedCommand)
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--public-key",
    "public_key_file",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="PEM public key of the gateway instance (signing-key.pub.pem)",
)
@click.option("--json", "as_json", is_flag=True, help="print the result as a JSON object")
def verify_log(file: Path, public_key_file: Path, as_json: bool) -> None:
    """Verify a gateway log: hash chain, order and every signature.

    Exits 1 and names the first altered, missing, reordered, badly signed or
    malformed entry (sequence number and line).
    """
    result = verify(file, load_public_key(public_key_file))
    line = json.dumps(result.to_json(), sort_keys=True) if as_json else result.message()
    click.echo(line)
    if not result.ok:
        raise click.exceptions.Exit(1)
