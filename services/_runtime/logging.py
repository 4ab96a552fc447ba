"""Logging: structlog, configured once per process.

A console renderer when stderr is a terminal, JSON lines otherwise; every
entry carries ``service`` and ``instance``. Event names are snake_case.
"""

from __future__ import annotations

import logging as stdlib_logging
import sys
from typing import Any

import structlog

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


def configure(*, service: str, instance: str, level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog for this process and bind the service identity.

    Args:
        service: kind of service (``broker``, ``sample``, ...).
        instance: instance name on the bus.
        level: ``debug``, ``info``, ``warning`` or ``error``.
        fmt: ``console``, ``json`` or ``auto`` (console on a tty).
    """
    console = sys.stderr.isatty() if fmt == "auto" else fmt == "console"
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=True)
        if console
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, 20)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service, instance=instance)
    # Libraries that use the standard logging module end up on stderr, too.
    stdlib_logging.basicConfig(level=_LEVELS.get(level, 20), stream=sys.stderr)


def get_logger(**bind: Any) -> Any:
    """Return a structlog logger with ``bind`` added to every entry."""
    return structlog.get_logger(**bind)
