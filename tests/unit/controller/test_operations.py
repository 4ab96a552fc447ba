"""The operation registry: parameter checks, bus names, OpenAPI document, REST error codes."""

from __future__ import annotations

from typing import Any

import pytest
from smtestbed.proto import topics
from smtestbed.services._runtime.errors import (
    RemoteError,
    RequestError,
    RequestTimeoutError,
    ServiceUnavailableError,
    UnknownServiceError,
)
from smtestbed.services.controller import ops
from smtestbed.services.controller.operations import REGISTRY, UnknownOperationError, openapi
from smtestbed.services.controller.rest import BadBodyError, error_status

_ = ops
REQUIRED_OPS = {
    "meter_counter", "meter_key", "meter_sending", "meter_interval", "corrupt_frames",
    "channel_fault", "force_collision", "relay", "dac", "gateway_add_meter",
    "gateway_remove_meter", "gateway_assign_taf", "certificate", "advance", "readout",
    "revoke", "push_update", "cut_line", "restore_line", "wait_event", "events", "mark",
    "readings", "read_log", "verify_log", "gateway_status", "meters", "adc", "emt_queue",
    "counters",
}  # fmt: skip


def test_registry_has_every_operation_in_its_group() -> None:
    """Set, act and observe operations the test API promises are all registered."""
    names = {op.name for op in REGISTRY.all()}
    assert names >= REQUIRED_OPS
    groups = {op.name: op.group for op in REGISTRY.all()}
    assert groups["meter_key"] == "set"
    assert groups["advance"] == "act"
    assert groups["wait_event"] == "observe"


def test_every_operation_is_a_known_bus_request() -> None:
    """controller.<op> is defined in proto.topics for every operation, and nothing more."""
    methods = {op.method for op in REGISTRY.all()}
    assert methods == set(topics.CONTROLLER_REQUESTS)
    assert all(topics.is_known(m) for m in methods)


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("meter_counter", {"column": "volume_m3", "value": 1.0}, "meter"),
        ("meter_counter", {"meter": "1", "column": "x", "value": "high"}, "value"),
        ("meter_counter", {"meter": "1", "column": "x", "value": float("inf")}, "value"),
        ("meter_counter", {"meter": 12345678, "column": "x", "value": 1}, "meter"),
        ("meter_interval", {"meter": "1", "interval_s": 0.5}, "interval_s"),
        ("meter_sending", {"meter": "1", "sending": "yes"}, "sending"),
        ("gateway_add_meter", {"meter": "1", "manufacturer": "EMH", "security": 3}, "security"),
        ("wait_event", {"kind": "gateway.frame_rejected", "since": -1}, "since"),
        ("wait_event", {"kind": "gateway.frame_rejected", "colour": 1}, "colour"),
        ("force_collision", {"count": True}, "count"),
    ],
)
def test_bad_parameter_is_refused_naming_it(name: str, params: dict[str, Any], field: str) -> None:
    """Validation raises RequestError whose field is the bad parameter."""
    with pytest.raises(RequestError) as info:
        REGISTRY.get(name).validate(params)
    assert info.value.field == field


def test_defaults_are_filled_in() -> None:
    """Optional parameters take their defaults."""
    params = REGISTRY.get("corrupt_frames").validate({"meter": "00000001"})
    assert params == {"meter": "00000001", "frames": 1}


def test_unknown_operation_names_the_operation() -> None:
    """An unknown name is an UnknownOperationError on field ``operation``."""
    with pytest.raises(UnknownOperationError) as info:
        REGISTRY.get("make_coffee")
    assert info.value.field == "operation"


def test_openapi_lists_every_operation_with_its_parameters() -> None:
    """The OpenAPI 3.1 document has one POST path per operation with its parameter schema."""
    doc = openapi()
    assert doc["openapi"] == "3.1.0"
    for op in REGISTRY.all():
        post = doc["paths"][f"/api/v1/{op.name}"]["post"]
        schema = post["requestBody"]["content"]["application/json"]["schema"]
        assert set(schema["properties"]) == {p.name for p in op.params}
        assert set(schema.get("required", [])) == {p.name for p in op.params if p.required}
        assert post["tags"] == [op.group]
        assert {"400", "404", "422", "503", "504"} <= set(post["responses"])
    counter = doc["paths"]["/api/v1/meter_counter"]["post"]["requestBody"]["content"]
    props = counter["application/json"]["schema"]["properties"]
    assert props["value"]["type"] == "number"
    assert props["allow_backwards"]["default"] is False


@pytest.mark.parametrize(
    ("exc", "status", "field"),
    [
        (BadBodyError("not JSON", field="body"), 400, "body"),
        (UnknownOperationError("no op", field="operation"), 404, "operation"),
        (RequestError("bad", field="meter"), 422, "meter"),
        (RemoteError("value: must be a finite number", code="RequestError"), 422, "value"),
        (
            RemoteError("channel.set_fault: receiver: 'x' is not one of gw0", code="E"),
            422,
            "receiver",
        ),
        (RemoteError("boom", code="internal"), 502, ""),
        (UnknownServiceError("no iohw"), 503, ""),
        (ServiceUnavailableError("dead"), 503, ""),
        (RequestTimeoutError("slow"), 504, ""),
        (ValueError("bug"), 502, ""),
    ],
)
def test_errors_map_to_http_status_never_500(exc: Exception, status: int, field: str) -> None:
    """Refusals are 4xx naming the field; unreachable services 503/504; never 500."""
    assert error_status(exc)[:2] == (status, field)
