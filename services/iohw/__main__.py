"""``python -m smtestbed.services.iohw`` runs like ``smtb iohw run``."""

from smtestbed.services._runtime.commands import run_module
from smtestbed.services.iohw.cli import group

if __name__ == "__main__":
    run_module(group)
