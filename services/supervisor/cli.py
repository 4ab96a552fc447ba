"""``smtb up`` and ``smtb supervisor show-config``."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click
from smtestbed.services._runtime.commands import (
    TestbedCommand,
    TestbedGroup,
    config_options,
    print_config,
)
from smtestbed.services._runtime.config import describe, load_config, parse_assignments, resolve
from smtestbed.services._runtime.lifecycle import main
from smtestbed.services.supervisor.config import DEFAULT_TESTBED, SupervisorConfig, load_specs
from smtestbed.services.supervisor.service import Supervisor


def _testbed_file(config_file: Path | None) -> Path:
    if config_file is not None:
        return config_file
    with tempfile.NamedTemporaryFile(
        "w", prefix="smtb-testbed-", suffix=".toml", delete=False
    ) as handle:
        handle.write(DEFAULT_TESTBED)
    return Path(handle.name)


@click.command(cls=TestbedCommand)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    default=None,
    help="testbed file (default: broker and two sample services)",
)
@click.option(
    "--set", "assignments", multiple=True, metavar="KEY=VALUE", help="override a supervisor setting"
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None)
def up(config_file: Path | None, assignments: tuple[str, ...], log_level: str | None) -> None:
    """Start the services of a testbed, keep them running, stop them on Ctrl-C."""
    path = _testbed_file(config_file)
    overrides: dict[str, object] = {**parse_assignments(assignments)}
    if log_level:
        overrides["log_level"] = log_level
    config = load_config(SupervisorConfig, "supervisor", path=path, overrides=overrides)
    specs = load_specs(path)
    sys.exit(main(Supervisor(config, specs, path)))


@click.group(cls=TestbedGroup)
def group() -> None:
    """The supervisor behind `smtb up`."""


@group.command("show-config")
@config_options
def show_config(
    config_file: Path | None,
    instance: str | None,
    assignments: tuple[str, ...],
    log_level: str | None,
) -> None:
    """Print the supervisor's settings and the services it would start, in order."""
    path = _testbed_file(config_file)
    resolved = resolve(
        SupervisorConfig, "supervisor", path=path, overrides=parse_assignments(assignments)
    )
    resolved.values["instance"] = resolved.values["instance"] or "supervisor"
    print_config("supervisor", describe(SupervisorConfig, resolved))
    for spec in load_specs(path):
        after = f" after {', '.join(spec.after)}" if spec.after else ""
        click.echo(f"# start {spec.name} ({spec.run}){after}, restart {spec.restart}")
