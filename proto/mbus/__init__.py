"""Wired M-Bus (EN 13757-2/3): frames, checksums, RSP_UD data, secondary addressing."""
