"""Configuration layers: defaults <- TOML <- environment <- command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from smtestbed.services._runtime.config import load_config, resolve
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.sample.service import SampleConfig


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_each_layer_overrides_the_one_before(tmp_path: Path) -> None:
    """A key set everywhere takes the CLI value; others fall back layer by layer."""
    path = _file(
        tmp_path,
        '[common]\nheartbeat_s = 2.0\nlog_level = "debug"\n'
        "[sample]\ninterval_s = 3.0\npayload_bytes = 7\n",
    )
    env = {"SMTB_SAMPLE_INTERVAL_S": "4.5", "SMTB_COMMON_HEARTBEAT_S": "0.5"}
    cfg = load_config(SampleConfig, "sample", path=path, env=env, overrides={"interval_s": "9"})
    assert cfg.interval_s == 9.0
    assert cfg.heartbeat_s == 0.5
    assert cfg.payload_bytes == 7
    assert cfg.log_level == "debug"
    assert cfg.instance == "sample"
    sources = resolve(SampleConfig, "sample", path=path, env=env).sources
    assert sources["interval_s"] == "SMTB_SAMPLE_*"
    assert sources["payload_bytes"] == f"{path}[sample]"
    assert sources["bus_rpc"] == "default"


@pytest.mark.parametrize(
    ("text", "env", "overrides", "message"),
    [
        ("[sample]\nintervall_s = 1\n", {}, {}, "sample.intervall_s: unknown key"),
        ("[sample]\ninterval_s = 'fast'\n", {}, {}, "sample.interval_s: expected a number"),
        ("", {"SMTB_SAMPLE_PAYLOAD_BYTES": "many"}, {}, "sample.payload_bytes"),
        ("", {}, {"log_level": "loud"}, "sample.log_level: 'loud' is not one of"),
        ("[common]\nclock_mode = 'warp'\n", {}, {}, "sample.clock_mode"),
        ("[sample\n", {}, {}, "is not valid TOML"),
        ("sample = 3\n", {}, {}, "[sample]"),
    ],
)
def test_bad_values_name_the_key(
    tmp_path: Path, text: str, env: dict[str, str], overrides: dict[str, str], message: str
) -> None:
    """Every bad value raises ConfigError whose one-line message names the key."""
    with pytest.raises(ConfigError) as info:
        load_config(
            SampleConfig, "sample", path=_file(tmp_path, text), env=env, overrides=overrides
        )
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A config path that does not exist is reported, not a traceback."""
    with pytest.raises(ConfigError, match="not found"):
        load_config(SampleConfig, "sample", path=tmp_path / "nope.toml", env={})


def test_other_services_tables_are_ignored(tmp_path: Path) -> None:
    """Keys in another service's table do not concern this one."""
    path = _file(tmp_path, "[broker]\nliveness = 9\n[sample]\ninterval_s = 2\n")
    assert load_config(SampleConfig, "sample", path=path, env={}).interval_s == 2.0


def test_booleans_accept_the_usual_spellings() -> None:
    """'true', 'yes', '1' and 'off' convert for bool fields."""
    from smtestbed.services.broker.config import BrokerConfig

    for raw, expected in (("true", True), ("yes", True), ("1", True), ("off", False)):
        cfg = load_config(BrokerConfig, "broker", env={}, overrides={"validate": raw})
        assert cfg.validate is expected
    with pytest.raises(ConfigError, match="expected true or false"):
        load_config(BrokerConfig, "broker", env={}, overrides={"validate": "maybe"})


def test_parallel_test_workers_draw_ports_from_separate_slices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two pytest-xdist workers get disjoint port ranges; a lone process the whole range."""
    from smtestbed.services._runtime import testing

    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    assert testing._port_range() == (20000, 32000)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    slices = []
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        slices.append(testing._port_range())
        assert slices[-1][0] <= testing.free_port() < slices[-1][1]
    assert slices == [(20000, 26000), (26000, 32000)]


def test_free_port_never_hands_out_a_port_twice_in_a_row_of_picks() -> None:
    """A testbed takes many ports before binding any: none may come out twice."""
    from smtestbed.services._runtime import testing

    picks = [testing.free_port() for _ in range(500)]
    assert len(set(picks)) == len(picks)
