"""The controller on a real testbed: defined state, REST and bus giving equal results,
4xx refusals, and a stop that leaves no process behind."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from smtestbed.services._runtime.testing import pid_alive
from smtestbed.services.controller.client import Controller
from smtestbed.services.controller.state import state_from_dict
from smtestbed.services.controller.testbed import StateMismatchError, Testbed

from tests.integration.controller_helpers import run, running_testbed

pytestmark = pytest.mark.timeout(240)

STATE = {"seed": 3, "population": {"count": 3, "interval_s": 300.0}, "clock": {"window_s": 300.0}}


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """One testbed with the controller service for the module; stopped at the end."""
    yield from running_testbed(STATE, tmp_path_factory.mktemp("ctl"))


async def rest(port: int, name: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
    """POST one operation to the REST API; return (status, JSON)."""
    url = f"http://127.0.0.1:{port}/api/v1/{name}"
    async with aiohttp.ClientSession() as http:
        kwargs: dict[str, Any] = {"data": raw} if raw is not None else {"json": body}
        async with http.post(url, **kwargs) as reply:
            return reply.status, await reply.json()


SEQUENCE: list[tuple[str, dict[str, Any]]] = [
    ("meters", {}),
    ("gateway_status", {"gateway": "gw0"}),
    ("clock", {}),
]


def test_start_confirms_the_defined_state(testbed: Testbed) -> None:
    """The farm has the state's meters, the gateway registered all of them."""

    async def body(ctl: Controller) -> Any:
        return await ctl.call("gateway_status", gateway="gw0"), await ctl.call("clock")

    status, clock = run(testbed, body)
    assert status["meters"] == len(testbed.layout.meters) == 3
    assert clock["sensorfarm"] == testbed.state.clock.start


def test_rest_and_bus_give_equal_results(testbed: Testbed) -> None:
    """The same operations through REST and through controller.<op> on the bus agree."""
    port = testbed.layout.controller_http
    meter = testbed.layout.meters[0]
    sequence = [*SEQUENCE, ("meter", {"meter": meter}), ("readings", {"meter": meter})]

    async def body(ctl: Controller) -> tuple[list[Any], list[Any]]:
        await ctl.advance(by=900.0)
        by_rest, by_bus = [], []
        for name, params in sequence:
            status, reply = await rest(port, name, params)
            assert status == 200, reply
            by_rest.append(reply)
            by_bus.append(await ctl.ctx.request("controller", f"controller.{name}", params))
        return by_rest, by_bus

    by_rest, by_bus = run(testbed, body)
    assert by_rest == by_bus
    assert by_rest[-1], "the meter has readings after 900 s"


@pytest.mark.parametrize(
    ("name", "body", "raw", "status", "field"),
    [
        ("make_coffee", {}, None, 404, "operation"),
        ("meter", None, b"{not json", 400, "body"),
        ("meter", None, b"[1, 2]", 400, "body"),
        ("meter", {}, None, 422, "meter"),
        ("meter", {"meter": "00000001"}, None, 422, "meter"),
        ("meter_interval", {"meter": "00000001", "interval_s": "x"}, None, 422, "interval_s"),
        ("channel_fault", {"receiver": "nowhere"}, None, 422, "receiver"),
        ("relay", {"relay": 1, "closed": True}, None, 503, ""),
    ],
)
def test_bad_requests_get_4xx_naming_the_field(
    testbed: Testbed, name: str, body: Any, raw: bytes | None, status: int, field: str
) -> None:
    """Unknown op 404, bad JSON 400, bad field 422 (also when the service refuses),
    a service not on the bus 503; the reply names the field."""
    got, reply = asyncio.run(rest(testbed.layout.controller_http, name, body, raw))
    assert (got, reply["field"]) == (status, field), reply
    assert reply["error"]


def test_openapi_document_is_served(testbed: Testbed) -> None:
    """GET /openapi.json and /api/v1/operations list the registry's operations."""

    async def fetch() -> tuple[Any, Any]:
        base = f"http://127.0.0.1:{testbed.layout.controller_http}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/openapi.json") as doc:
                document = await doc.json()
            async with http.get(f"{base}/api/v1/operations") as ops:
                return document, await ops.json()

    document, operations = asyncio.run(fetch())
    assert {f"/api/v1/{op['name']}" for op in operations} <= set(document["paths"])


def test_stop_leaves_no_process(tmp_path: Path) -> None:
    """After stop() neither the supervisor nor any service process is alive."""
    tb = Testbed(state_from_dict({"population": {"count": 2}}), tmp_path)
    tb.start()
    try:
        run(tb, lambda ctl: ctl.call("clock"))
        pids = dict(tb.pids)
    finally:
        tb.stop()
    assert {"broker", "gateway", "channel", "sensorfarm", "supervisor"} <= set(pids)
    assert [name for name, pid in pids.items() if pid_alive(pid)] == []


def test_state_mismatch_fails_the_start(tmp_path: Path) -> None:
    """A farm setting overriding the state's meter count is caught by the confirmation."""
    state = state_from_dict({"population": {"count": 2}, "settings": {"sensorfarm": {"meters": 3}}})
    tb = Testbed(state, tmp_path)
    tb.start()
    try:
        with pytest.raises(StateMismatchError, match="sensor farm has 3 meters, state asks 2"):
            run(tb, lambda ctl: ctl.call("clock"))
    finally:
        tb.stop()
