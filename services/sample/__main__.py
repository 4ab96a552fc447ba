"""``python -m smtestbed.services.sample`` runs like ``smtb sample run``."""

from smtestbed.services._runtime.commands import run_module
from smtestbed.services.sample.cli import group

if __name__ == "__main__":
    run_module(group)
