"""`smtb decode`: auto-detecting decoder for wired M-Bus, wireless M-Bus and SML."""
