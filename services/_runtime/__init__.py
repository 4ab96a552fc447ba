"""Shared runtime of every service: bus, lifecycle, clock, config, logging, errors."""
