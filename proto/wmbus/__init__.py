"""Wireless M-Bus and OMS (EN 13757-4/7): link layer, transport layer, security."""
