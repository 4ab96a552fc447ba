"""``python -m smtestbed.services.broker`` runs the broker like ``smtb broker run``."""

from smtestbed.services._runtime.commands import run_module
from smtestbed.services.broker.cli import group

if __name__ == "__main__":
    run_module(group)
