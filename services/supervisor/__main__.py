"""``python -m smtestbed.services.supervisor`` runs like ``smtb up``."""

from smtestbed.services.supervisor.cli import up

if __name__ == "__main__":
    up(prog_name="smtb up")
