"""``python -m smtestbed.services.gateway`` runs like ``smtb gateway run``."""

from smtestbed.services._runtime.commands import run_module
from smtestbed.services.gateway.cli import group

if __name__ == "__main__":
    run_module(group)
