"""`smtb sensorfarm emit`: hex telegrams, the keys CSV, the wmbusmeters file, bad options."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from smtestbed.proto.mbus.header import decode_manufacturer
from smtestbed.proto.wmbus import Telegram, decode_telegram
from smtestbed.services.sensorfarm.cli import emit
from smtestbed.services.sensorfarm.population import generate, parse_mix

MIX = "electricity=0.4,gas=0.1,water=0.3,heat=0.2"
HEX_LINE = re.compile(r"^[0-9A-F]+$")
SIM_LINE = re.compile(r"^telegram=\|([0-9A-F]+)\|\+(\d+)$")


def _emit(*args: str) -> Result:
    return CliRunner().invoke(emit, list(args))


def _keys(path: Path) -> dict[str, tuple[str, bytes]]:
    """Return id -> (manufacturer, key) from the keys CSV, checking its header."""
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["id", "manufacturer", "key_hex"]
    return {ident: (maker, bytes.fromhex(key)) for ident, maker, key in rows[1:]}


def _ident(telegram: Telegram) -> str:
    return f"{telegram.link.address.ident:08x}"  # 8 BCD digits are the decimal number


@pytest.mark.parametrize("security", [0, 5, 7])
def test_each_printed_telegram_decodes_with_its_key_from_the_keys_file(
    tmp_path: Path, security: int
) -> None:
    """--count 12 prints 12 hex lines; each decodes with the key the CSV lists for its id."""
    keys_file = tmp_path / "keys.csv"
    result = _emit(
        "--meters", "5", "--count", "12", "--seed", "4", "--security", str(security),
        "--interval-s", "60", "--keys", str(keys_file),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 12
    assert all(HEX_LINE.match(line) for line in lines)
    keys = _keys(keys_file)
    senders = set()
    for line in lines:
        maker, key = keys[_ident(_plain(line))]
        telegram = decode_telegram(bytes.fromhex(line), key=key)
        assert decode_manufacturer(telegram.link.address.manufacturer) == maker
        assert telegram.security.mode == security
        assert telegram.records is not None
        assert len(telegram.records.records) >= 1
        senders.add(_ident(telegram))
    assert len(senders) >= 2


def _plain(line: str) -> Telegram:
    """Decode the link header only (no key needed)."""
    return decode_telegram(bytes.fromhex(line), records=False)


def test_keys_file_lists_every_generated_meter_with_its_key(tmp_path: Path) -> None:
    """The CSV has one row per meter: the 8-digit id, the FLAG code and the 32-digit key."""
    keys_file = tmp_path / "keys.csv"
    assert (
        _emit("--meters", "7", "--count", "0", "--seed", "9", "--keys", str(keys_file)).exit_code
        == 0
    )
    pop = generate(7, seed=9, mix=parse_mix(MIX), security=5, interval_s=900.0)
    expected = {
        f"{int(pop.ident[i]):08d}": (
            decode_manufacturer(int(pop.manufacturer[i])),
            bytes(pop.key[i]),
        )
        for i in range(7)
    }
    assert _keys(keys_file) == expected
    assert all(len(ident) == 8 and ident.isdigit() for ident in expected)


def test_wmbusmeters_file_has_one_crc_free_line_per_telegram(tmp_path: Path) -> None:
    """Each printed telegram appears as telegram=|HEX|+SECONDS with its CRCs removed."""
    keys_file, sim_file = tmp_path / "keys.csv", tmp_path / "sim.txt"
    result = _emit(
        "--meters", "4", "--count", "9", "--seed", "2", "--security", "7",
        "--interval-s", "30", "--keys", str(keys_file), "--wmbusmeters", str(sim_file),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    printed = result.stdout.splitlines()
    matches = [m for line in sim_file.read_text().splitlines() if (m := SIM_LINE.match(line))]
    other = [line for line in sim_file.read_text().splitlines() if not SIM_LINE.match(line)]
    assert len(matches) == len(printed) == 9
    assert all(line.startswith("# ") for line in other)
    keys = _keys(keys_file)
    seconds = [int(m.group(2)) for m in matches]
    assert seconds[0] == 0
    assert seconds == sorted(seconds)
    for line, match in zip(printed, matches, strict=True):
        plain = bytes.fromhex(match.group(1))
        key = keys[_ident(_plain(line))][1]
        on_air = decode_telegram(bytes.fromhex(line), key=key, crcs=True)
        dongle = decode_telegram(plain, key=key, crcs=False)
        assert len(plain) == on_air.link.length + 1  # L counts the bytes after itself
        assert dongle.application_data == on_air.application_data
        assert dongle.records == on_air.records


def test_same_seed_prints_the_same_telegrams(tmp_path: Path) -> None:
    """Two runs with one seed print the same lines; another seed prints others."""
    args = ("--meters", "3", "--count", "5", "--keys", str(tmp_path / "k.csv"))
    first, second = _emit(*args, "--seed", "8"), _emit(*args, "--seed", "8")
    other = _emit(*args, "--seed", "1")
    assert first.stdout == second.stdout
    assert first.stdout != other.stdout


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--meters", "0"], "meters"),
        (["--count", "-1"], "meters"),
        (["--mix", "gas=lots"], "mix"),
        (["--mix", "gas=0"], "mix"),
        (["--mix", "steam=1"], "mix"),
        (["--interval-s", "0"], "interval"),
        (["--interval-s", "inf"], "interval"),
        (["--interval-s", "nan"], "interval"),
        (["--keys", "/nonexistent/dir/keys.csv"], "keys"),
        (["--wmbusmeters", "/nonexistent/dir/sim.txt"], "wmbusmeters"),
    ],
)
def test_bad_options_give_one_error_line_and_exit_1(
    tmp_path: Path, args: list[str], named: str
) -> None:
    """A bad option value is one 'Error: ...' line naming it, exit code 1, no telegrams."""
    base = {"--meters": "3", "--count": "2", "--keys": str(tmp_path / "k.csv")}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    result = _emit(*[part for item in base.items() for part in item])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # a click error, not a traceback
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Error: ")
    assert named in lines[0]
