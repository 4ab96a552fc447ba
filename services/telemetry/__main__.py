"""``python -m smtestbed.services.telemetry`` runs like ``smtb telemetry run``."""

from smtestbed.services._runtime.commands import run_module
from smtestbed.services.telemetry.cli import group

if __name__ == "__main__":
    run_module(group)
