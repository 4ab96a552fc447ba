"""Application layer of M-Bus (EN 13757-3): DIF/DIFE/VIF/VIFE data records, wired and wireless."""
