"""``python -m smtestbed.services.channel`` runs like ``smtb channel run``."""

from smtestbed.services._runtime.commands import run_module
from smtestbed.services.channel.cli import group

if __name__ == "__main__":
    run_module(group)
