"""The gateway's step tracker behind ``gateway.sync``."""

from __future__ import annotations

import asyncio

import pytest
from smtestbed.services._runtime.errors import RequestError
from smtestbed.services.gateway.stepping import (
    StepTracker,
    SyncTimeoutError,
    next_due,
    sync_params,
)


def test_next_due_is_the_first_grid_time_after_now() -> None:
    """After a jump of the clock the tariff grid continues where it would have been."""
    assert next_due(900.0, 900.0, 900.0) == 1800.0
    assert next_due(900.0, 4000.0, 900.0) == 4500.0
    assert next_due(900.0, 500.0, 900.0) == 900.0


def test_sync_waits_for_the_tariff_run_as_well_as_the_batches() -> None:
    """Batches ingested up to ``until`` are not enough while a tariff run due by then is
    pending; the wait ends when it has run."""

    async def scenario() -> None:
        tracker = StepTracker(0.0, 900.0)
        waiting = asyncio.create_task(tracker.wait(900.0, 5.0))
        tracker.ingested_to(900.0)
        await asyncio.sleep(0)
        assert not waiting.done()
        tracker.tariffs_ran(1800.0)
        await asyncio.wait_for(waiting, 5.0)
        assert tracker.reached(900.0)
        assert not tracker.reached(900.5)

    asyncio.run(scenario())


def test_sync_times_out_naming_until_and_how_far_the_gateway_got() -> None:
    """A time never reached ends in SyncTimeoutError (a RequestError naming ``until``)."""

    async def scenario() -> None:
        tracker = StepTracker(100.0, 1000.0)
        tracker.ingested_to(200.0)
        with pytest.raises(SyncTimeoutError) as info:
            await tracker.wait(300.0, 0.05)
        assert info.value.field == "until"
        assert "ingested up to 200.0" in str(info.value)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "until"),
        ({"until": "x"}, "until"),
        ({"until": float("nan")}, "until"),
        ({"until": 1.0, "timeout_s": 0}, "timeout_s"),
        ({"until": 1.0, "timeout_s": 1e9}, "timeout_s"),
        ({"until": 1.0, "timeout_s": True}, "timeout_s"),
        ({"until": 1.0, "other": 1}, "other"),
    ],
)
def test_bad_sync_parameters_name_their_field(params: dict[str, object], field: str) -> None:
    """Every malformed sync request names the field at fault."""
    with pytest.raises(RequestError) as info:
        sync_params(params)
    assert info.value.field == field
