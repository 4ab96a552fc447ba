"""``smtb controller run|serve|show-config|operations|openapi``."""

from __future__ import annotations

import json

import click
from smtestbed.services._runtime.commands import service_group
from smtestbed.services.controller import ops as _ops  # registers the operations
from smtestbed.services.controller.operations import REGISTRY, openapi
from smtestbed.services.controller.service import ControllerService

_ = _ops
group = service_group(
    ControllerService, "Run the controller: the atomic test API over the bus and REST."
)
group.add_command(group.commands["run"], "serve")


@group.command("operations")
def operations() -> None:
    """List the operations of the test API by group."""
    for op in REGISTRY.all():
        params = ", ".join(f"{p.name}{'' if p.required else '?'}" for p in op.params)
        click.echo(f"{op.group:8} {op.name}({params})  {op.description}")


@group.command("openapi")
def openapi_command() -> None:
    """Print the REST API's OpenAPI 3.1 document."""
    click.echo(json.dumps(openapi(), indent=2))
