"""End-to-end scenarios through the controller: each on a fresh testbed, with its control.

The ``smtb_scenario`` fixture comes from the smtestbed pytest plugin (entry point
``smtb``); scenarios start real services, so they get a generous timeout.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give every scenario test the scenario timeout."""
    for item in items:
        if "tests/scenarios/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.timeout(300))
