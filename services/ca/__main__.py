"""``python -m smtestbed.services.ca`` runs like ``smtb ca run``."""

from smtestbed.services._runtime.commands import run_module
from smtestbed.services.ca.cli import group

if __name__ == "__main__":
    run_module(group)
