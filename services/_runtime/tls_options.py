"""The TLS client options of the testbed's command-line clients and the context they make.

The HAN display, the CLS device and the GWA client connect with mutual TLS the same
way: ``--name`` (the server certificate's DNS name, checked if given), ``--cert``,
``--key``, ``--chain``, ``--trust`` and ``--crl``.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click
from smtestbed.services._runtime import tls

__all__ = ["FILE", "client_context", "client_options"]

FILE = click.Path(path_type=Path, exists=True, dir_okay=False)
"""An existing file, given as a Path."""

F = TypeVar("F", bound=Callable[..., Any])


def client_options(cert_help: str) -> Callable[[F], F]:
    """Add the TLS client options to a command; ``cert_help`` describes ``--cert``."""
    options = (
        click.option(
            "--name", default="", help="the gateway certificate's DNS name (checked if given)"
        ),
        click.option("--cert", required=True, type=FILE, help=cert_help),
        click.option("--key", required=True, type=FILE, help="its private key (PEM)"),
        click.option("--chain", multiple=True, type=FILE, help="CA certificates sent after --cert"),
        click.option("--trust", multiple=True, required=True, type=FILE, help="SM-PKI root (PEM)"),
        click.option("--crl", multiple=True, required=True, type=FILE, help="CRL files (PEM)"),
    )

    def add(command: F) -> F:
        for option in reversed(options):
            command = option(command)
        return command

    return add


def client_context(opts: Mapping[str, Any]) -> ssl.SSLContext:
    """Return the client context the options of :func:`client_options` describe."""
    return tls.client_context(
        opts["cert"],
        opts["key"],
        opts["chain"],
        opts["trust"],
        opts["crl"],
        check_hostname=bool(opts["name"]),
    )
