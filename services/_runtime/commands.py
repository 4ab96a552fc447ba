"""Click plumbing shared by every service's command line.

Each service gets a group with ``run`` and ``show-config``; commands that
only talk to the bus (``smtb status``, ``smtb bus ...``) read the same
``[common]`` settings. A :class:`TestbedError` becomes one line on stderr
and exit code 1; anything else keeps its traceback, because it is a bug.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from smtestbed.services._runtime.config import (
    ServiceConfig,
    describe,
    load_config,
    parse_assignments,
    resolve,
)
from smtestbed.services._runtime.errors import TestbedError
from smtestbed.services._runtime.lifecycle import Service, main

F = TypeVar("F", bound=Callable[..., Any])


class TestbedGroup(click.Group):
    """A click group that shows TestbedError as one line and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; turn a TestbedError into a ClickException."""
        try:
            return super().invoke(ctx)
        except TestbedError as exc:
            raise click.ClickException(str(exc)) from exc


class TestbedCommand(click.Command):
    """A click command that shows TestbedError as one line and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; turn a TestbedError into a ClickException."""
        try:
            return super().invoke(ctx)
        except TestbedError as exc:
            raise click.ClickException(str(exc)) from exc


def config_options(func: F) -> F:
    """Add ``--config``, ``--instance``, ``--set`` and ``--log-level``."""
    func = click.option(
        "--log-level",
        type=click.Choice(["debug", "info", "warning", "error"]),
        default=None,
        help="log level",
    )(func)
    func = click.option(
        "--set",
        "assignments",
        multiple=True,
        metavar="KEY=VALUE",
        help="override one setting (repeatable)",
    )(func)
    func = click.option("--instance", default=None, help="instance name on the bus")(func)
    return click.option(
        "--config",
        "config_file",
        type=click.Path(path_type=Path),
        default=None,
        help="TOML configuration file",
    )(func)


def _overrides(
    instance: str | None, assignments: tuple[str, ...], log_level: str | None
) -> dict[str, Any]:
    out: dict[str, Any] = parse_assignments(assignments)
    if instance:
        out["instance"] = instance
    if log_level:
        out["log_level"] = log_level
    return out


def client_config(config_file: Path | None, assignments: tuple[str, ...] = ()) -> ServiceConfig:
    """Load the settings a bus client needs (the ``[common]`` table and env)."""
    return load_config(
        ServiceConfig, "cli", path=config_file, overrides=parse_assignments(assignments)
    )


def service_group(service_cls: type[Service], help_text: str) -> click.Group:
    """Build the ``smtb <service>`` group with ``run`` and ``show-config``."""
    name = service_cls.service
    cfg_cls = service_cls.config_class

    @click.group(name=name, cls=TestbedGroup, help=help_text)
    def group() -> None:
        pass

    @group.command("run")
    @config_options
    def run(
        config_file: Path | None,
        instance: str | None,
        assignments: tuple[str, ...],
        log_level: str | None,
    ) -> None:
        """Run the service in the foreground until SIGTERM or Ctrl-C."""
        config = load_config(
            cfg_cls, name, path=config_file, overrides=_overrides(instance, assignments, log_level)
        )
        sys.exit(main(service_cls(config)))

    @group.command("show-config")
    @config_options
    def show_config(
        config_file: Path | None,
        instance: str | None,
        assignments: tuple[str, ...],
        log_level: str | None,
    ) -> None:
        """Print the resolved settings and where each value came from."""
        resolved = resolve(
            cfg_cls, name, path=config_file, overrides=_overrides(instance, assignments, log_level)
        )
        if not resolved.values.get("instance"):
            resolved.values["instance"] = name
        print_config(name, describe(cfg_cls, resolved))

    return group


def print_config(name: str, rows: list[tuple[str, str, str, str]]) -> None:
    """Print settings as TOML lines with their origin as a comment."""
    click.echo(f"[{name}]")
    width = max(len(f"{k} = {v}") for k, v, _, _ in rows)
    for key, value, source, help_text in rows:
        line = f"{key} = {_toml(value)}"
        click.echo(f"{line:<{width}}  # {source}; {help_text}".rstrip("; "))


def _toml(value_repr: str) -> str:
    if value_repr in ("True", "False"):
        return value_repr.lower()
    if value_repr.startswith("'"):
        return '"' + value_repr[1:-1].replace('"', '\\"') + '"'
    return value_repr


def run_module(group: click.Group) -> None:
    """Entry of ``python -m smtestbed.services.<name>``: same as ``smtb <name> run``."""
    group.main(args=["run", *sys.argv[1:]], prog_name=f"smtb {group.name}")
