"""``python -m smtestbed.services.sensorfarm`` runs like ``smtb sensorfarm run``."""

from smtestbed.services._runtime.commands import run_module
from smtestbed.services.sensorfarm.cli import group

if __name__ == "__main__":
    run_module(group)
