"""``python -m smtestbed.services.controller`` runs like ``smtb controller run``."""

from smtestbed.services._runtime.commands import run_module
from smtestbed.services.controller.cli import group

if __name__ == "__main__":
    run_module(group)
