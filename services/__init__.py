"""smtestbed services: one subpackage per process, plus the shared runtime."""
