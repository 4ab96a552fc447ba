"""The supervisor behind `smtb up`: starts, watches, restarts and stops services."""
