"""``smtb decode HEX``: decode a wired M-Bus frame, wireless M-Bus telegram or SML file."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from smtestbed.services._runtime.errors import TestbedError
from smtestbed.services.decode.detect import Decoded, decode_bytes, parse_hex
from smtestbed.services.decode.render import render_json, render_table

__all__ = ["command"]


def _key(text: str | None) -> bytes | None:
    if text is None:
        return None
    key = parse_hex(text)
    if len(key) != 16:
        raise click.BadParameter(f"an AES-128 key has 16 bytes, got {len(key)}", param_hint="--key")
    return key


def _decode(hex_text: str, key_text: str | None) -> Decoded:
    text = sys.stdin.read() if hex_text == "-" else hex_text
    try:
        return decode_bytes(parse_hex(text), key=_key(key_text))
    except TestbedError as exc:
        raise click.ClickException(" ".join(str(exc).split())) from exc


@click.command(name="decode")
@click.argument("hex_text", metavar="HEX")
@click.option("--key", "key_text", metavar="KEY", help="AES-128 key (hex) of a wM-Bus meter.")
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="rich tables or one JSON document",
)
def command(hex_text: str, key_text: str | None, output: str) -> None:
    """Decode HEX as wired M-Bus, wireless M-Bus or SML, detected from its first bytes.

    HEX may separate bytes with spaces or colons; "-" reads it from stdin.
    """
    decoded = _decode(hex_text, key_text)
    if output == "json":
        click.echo(render_json(decoded))
    else:
        render_table(decoded, Console(width=120))
