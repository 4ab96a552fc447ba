"""Wired LMN pieces without a line: configuration, stream cutting, SML readings, the inbox."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from smtestbed.proto.mbus import encode_req_ud2, encode_snd_nke
from smtestbed.proto.sml import (
    GetListResponse,
    ListEntry,
    ObisCode,
    SmlInt,
    SmlMessage,
    SmlTime,
    TimeKind,
    encode_sml_file,
)
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.gateway.instance import GatewayInstance
from smtestbed.services.gateway.lmn_link import Inbox
from smtestbed.services.gateway.lmn_serial import InputConfig, SerialInput, cut
from smtestbed.services.gateway.lmn_wired import parse_lines
from smtestbed.services.gateway.schema import MeterEntry
from smtestbed.services.gateway.wired_readings import RefusedError, sml_meter

SERVER_ID = bytes.fromhex("0a01454d480001e240ff")[:6] + (12345678).to_bytes(4, "big")
"""DIN 43863-5 server ID of EMH meter 12345678."""


def sml_file(seconds: int, energy_dwh: int) -> bytes:
    """Return an SML file with one GetList.Res: 1.8.0 in 0.1 Wh, 16.7.0 = 250 W."""
    entries = (
        ListEntry(
            obj_name=ObisCode.parse("1-0:1.8.0*255"),
            unit=30,
            scaler=-1,
            value=SmlInt(value=energy_dwh, size=8),
        ),
        ListEntry(
            obj_name=ObisCode.parse("1-0:16.7.0*255"),
            unit=27,
            scaler=0,
            value=SmlInt(value=250, signed=True),
        ),
    )
    body = GetListResponse(
        server_id=SERVER_ID,
        act_sensor_time=SmlTime(kind=TimeKind.SEC_INDEX, value=SmlInt(value=seconds, size=4)),
        entries=entries,
    )
    return encode_sml_file([SmlMessage(transaction_id=b"\x00\x01", body=body)])


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[GatewayInstance]:
    """A gateway instance with EMH meter 12345678 registered for mode 0."""
    inst = GatewayInstance("gw0", tmp_path / "gw0", synchronous="NORMAL")
    inst.registry.add(MeterEntry(meter="12345678", manufacturer="EMH", key=b"", security=0))
    yield inst
    inst.close()


def line(**change: Any) -> dict[str, Any]:
    """Return a valid wired_lines table with ``change`` applied."""
    table: dict[str, Any] = {
        "instance": "gw0",
        "url": "tcp://127.0.0.1:5000",
        "meters": [{"meter": "12345678", "primary": 3}],
    }
    table.update(change)
    return table


def test_wired_line_table_becomes_targets_by_primary_and_secondary() -> None:
    """Primary 3 and secondary 1234567893153303 become targets; defaults fill the rest."""
    meters = [
        {"meter": "12345678", "primary": 3},
        {"meter": "12345678", "secondary": "1234567893153303"},
    ]
    (config,) = parse_lines([line(meters=meters, interval_s=5)], ["gw0"])
    assert config.meters[0].primary == 3
    secondary = config.meters[1].secondary
    assert secondary is not None
    assert str(secondary) == "1234567893153303"
    assert (config.interval_s, config.retries, config.parity) == (5.0, 3, "E")


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"instance": "gw9"}, "gateway.wired_lines[0].instance"),
        ({"url": ""}, "gateway.wired_lines[0].url"),
        ({"parity": "O"}, "gateway.wired_lines[0].parity"),
        ({"interval_s": 0}, "gateway.wired_lines[0].interval_s"),
        ({"meters": [{"meter": "12345678", "primary": 251}]}, "gateway.wired_lines[0].meters[0]"),
        ({"meters": [{"meter": "12345678"}]}, "gateway.wired_lines[0].meters[0]"),
        ({"meters": [{"meter": "1", "secondary": "12"}]}, "gateway.wired_lines[0].meters[0]"),
    ],
)
def test_bad_wired_line_is_refused_naming_the_key(change: dict[str, Any], key: str) -> None:
    """Each bad setting gives a ConfigError whose key names the table entry."""
    with pytest.raises(ConfigError) as caught:
        parse_lines([line(**change)], ["gw0"])
    assert caught.value.key == key


def test_cut_separates_mbus_frames_sml_files_and_noise() -> None:
    """Noise, a short frame, an SML file and a partial frame: each lands in its place."""
    sml = sml_file(100, 1234)
    stream = b"\x00\x01" + encode_snd_nke(1) + sml + encode_req_ud2(2)[:3]
    pieces = cut(stream)
    assert pieces.mbus == (encode_snd_nke(1),)
    assert pieces.sml == (sml,)
    assert pieces.garbage == 2
    assert pieces.rest == encode_req_ud2(2)[:3]


def test_cut_waits_for_the_end_of_an_sml_file() -> None:
    """Half an SML file stays in the rest; nothing is counted as garbage."""
    sml = sml_file(100, 1234)
    pieces = cut(sml[:20])
    assert (pieces.sml, pieces.garbage, pieces.rest) == ((), 0, sml[:20])


def test_cut_reports_an_sml_file_with_a_bad_crc_and_goes_on() -> None:
    """A flipped CRC byte makes the file a bad_sml entry; the frame after it is still found."""
    sml = bytearray(sml_file(100, 1234))
    sml[-1] ^= 0xFF
    pieces = cut(bytes(sml) + encode_snd_nke(5))
    assert len(pieces.bad_sml) == 1
    assert "CRC" in pieces.bad_sml[0]
    assert pieces.mbus == (encode_snd_nke(5),)


def test_sml_server_id_gives_meter_and_manufacturer() -> None:
    """0A 01 'EMH' 00 <12345678 big-endian> is EMH meter 12345678."""
    assert sml_meter(SERVER_ID) == ("12345678", "EMH")
    with pytest.raises(RefusedError):
        sml_meter(b"\x01\x02")


def test_pushed_sml_files_are_stored_and_a_repeat_is_refused(instance: GatewayInstance) -> None:
    """Two SML files store 123.4 Wh then 130.0 Wh; the first again (older seconds) is a replay."""
    config = InputConfig(instance="gw0", url="/dev/null")
    listener = SerialInput(config, instance, lambda: 1000.0)
    listener.feed(sml_file(100, 1234) + sml_file(160, 1300)[:30])
    listener.feed(sml_file(160, 1300)[30:])
    (result,) = listener.feed(sml_file(100, 1234) + b"\x00")
    assert [str(r.reason) for r in result.rejected] == ["replay"]
    stored = [r.values for _, r in instance.store.readings("12345678")]
    assert [[(v.quantity, v.unit, v.value) for v in values] for values in stored] == [
        [("energy", "Wh", pytest.approx(123.4)), ("power", "W", 250.0)],
        [("energy", "Wh", pytest.approx(130.0)), ("power", "W", 250.0)],
    ]
    assert listener.counters.sml_files == 3


def test_inbox_take_returns_empty_after_its_timeout_and_bytes_when_put() -> None:
    """take() gives b"" after the timeout, the bytes put so far, and ConnectionError at the end."""

    async def body() -> None:
        inbox = Inbox()
        assert await inbox.take(0.01) == b""
        inbox.put(b"\xe5")
        inbox.put(b"\x10")
        assert await inbox.take(1.0) == b"\xe5\x10"
        inbox.end()
        with pytest.raises(ConnectionError):
            await inbox.take(1.0)

    asyncio.run(body())
