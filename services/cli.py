"""The ``smtb`` command: one click group whose subcommands load lazily."""

from __future__ import annotations

import importlib
from typing import Any

import click
from smtestbed.services._runtime.commands import TestbedGroup
from smtestbed.services._runtime.version import VERSION

# name -> "module:attribute"; a module is imported only when its command runs
COMMANDS: dict[str, tuple[str, str]] = {
    "broker": ("smtestbed.services.broker.cli:group", "run the bus broker"),
    "bus": ("smtestbed.services.broker.cli:bus", "tap, record and replay bus events"),
    "status": ("smtestbed.services.broker.cli:status", "list the services on the bus"),
    "telemetry": (
        "smtestbed.services.telemetry.cli:group",
        "MQTT, Prometheus and web dashboard",
    ),
    "timeservice": (
        "smtestbed.services.wan.timeservice:group",
        "run a WAN time service gateways set their clocks from",
    ),
    "top": ("smtestbed.services.telemetry.cli:top", "the testbed at a glance in the terminal"),
    "up": ("smtestbed.services.supervisor.cli:up", "start a testbed from a configuration"),
    "supervisor": ("smtestbed.services.supervisor.cli:group", "supervisor settings"),
    "sample": ("smtestbed.services.sample.cli:group", "run the sample service"),
    "decode": ("smtestbed.services.decode.cli:command", "decode M-Bus, wM-Bus or SML bytes"),
    "ca": ("smtestbed.services.ca.cli:group", "the SM-PKI CA: run it, or work on a CA directory"),
    "channel": ("smtestbed.services.channel.cli:group", "run the radio channel"),
    "cls": (
        "smtestbed.services.han.cls:group",
        "a CLS device: its proxy channel to its EMT through the gateway's HAN endpoint",
    ),
    "controller": (
        "smtestbed.services.controller.cli:group",
        "the test API over the bus and REST (smtb controller serve)",
    ),
    "scenario": (
        "smtestbed.services.controller.scenario_cli:group",
        "list and run scenarios with negative controls; JSON/JUnit report",
    ),
    "demo": (
        "smtestbed.services.controller.demo:command",
        "every scenario with its negative control on this machine; report with plots",
    ),
    "display": (
        "smtestbed.services.wan.display:command",
        "a consumer's latest readings from the gateway's HAN endpoint (display certificate)",
    ),
    "emt": (
        "smtestbed.services.wan.emt:group",
        "run an EMT: receive signed TAF data from gateways over TLS",
    ),
    "fuzz": (
        "smtestbed.services.campaigns.fuzz_cli:command",
        "fuzz a decoder, the wired slave or the gateway's LMN input",
    ),
    "gwa": (
        "smtestbed.services.wan.gwa_cli:group",
        "administer a gateway over its WAN endpoint (GWA, mutual TLS)",
    ),
    "load": (
        "smtestbed.services.campaigns.load_cli:command",
        "load campaign: farm, channel and gateway against pure ALOHA",
    ),
    "gateway": ("smtestbed.services.gateway.cli:group", "run smart meter gateway instances"),
    "iohw": (
        "smtestbed.services.iohw.cli:group",
        "the manipulation I/O board: relays, DAC/ADC, UART/RS-485, I2C, SPI",
    ),
    "sensorfarm": (
        "smtestbed.services.sensorfarm.cli:group",
        "simulated meters, wired M-Bus slaves",
    ),
}


class LazyGroup(TestbedGroup):
    """A group that imports a subcommand's module only when it is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Return the subcommand names."""
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import and return one subcommand."""
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target[0].split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                return None  # that part of the testbed is not installed
            raise
        command: Any = getattr(module, attr)
        return command  # type: ignore[no-any-return]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List subcommands with their short help without importing them."""
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup)
@click.version_option(VERSION, prog_name="smtb")
def cli() -> None:
    """smtestbed: a testbed for intelligent measuring systems."""


def main() -> None:
    """Entry point of the ``smtb`` console script."""
    cli(prog_name="smtb")
