"""A module-scoped controller testbed and running a coroutine against its Controller."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from smtestbed.services.controller.client import Controller
from smtestbed.services.controller.state import state_from_dict
from smtestbed.services.controller.testbed import Testbed


def running_testbed(state: dict[str, Any], folder: Path) -> Iterator[Testbed]:
    """Start a testbed for ``state`` with the controller service in ``folder``; yield it
    and stop it afterwards (the body of a module-scoped fixture)."""
    tb = Testbed(state_from_dict(state), folder, controller_service=True)
    tb.start()
    try:
        yield tb
    finally:
        tb.stop()


def run(testbed: Testbed, body: Callable[[Controller], Awaitable[Any]]) -> Any:
    """Open a Controller on ``testbed`` and run ``body(ctl)`` in a fresh event loop."""

    async def main() -> Any:
        async with testbed.controller() as ctl:
            return await body(ctl)

    return asyncio.run(main())
