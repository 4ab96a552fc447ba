"""The installed smtestbed version."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("smtestbed")
except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
    VERSION = "0+unknown"
