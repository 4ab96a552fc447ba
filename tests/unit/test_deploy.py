"""Every testbed file in deploy/ is valid for `smtb up`; the neighbourhood's parts fit together.

deploy/testbed.toml names files relative to the repository's top folder (where
`smtb up --config deploy/testbed.toml` runs), so the tests resolve them from there.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib
import re
from pathlib import Path
from typing import Any

import pytest
from smtestbed.proto.mbus.header import decode_manufacturer
from smtestbed.services._runtime.config import ServiceConfig, load_config, read_toml
from smtestbed.services._runtime.lifecycle import Service
from smtestbed.services.controller.config import ControllerConfig
from smtestbed.services.gateway.config import GatewayConfig
from smtestbed.services.gateway.lmn_wired import parse_lines
from smtestbed.services.iohw.config import IohwConfig
from smtestbed.services.iohw.wiring import parse_wiring
from smtestbed.services.sensorfarm.config import SensorFarmConfig
from smtestbed.services.sensorfarm.population import Population
from smtestbed.services.sensorfarm.schema import Interface
from smtestbed.services.sensorfarm.service import build_population
from smtestbed.services.supervisor.config import ServiceSpec, SupervisorConfig, load_specs

TOP = Path(__file__).resolve().parents[2]
DEPLOY = TOP / "deploy"
TESTBED = DEPLOY / "testbed.toml"
FILES = sorted(DEPLOY.glob("*.toml"))


def config_class(run: str) -> type[ServiceConfig]:
    """Return the settings class of service kind ``run`` (its Service's ``config_class``)."""
    module = importlib.import_module(f"smtestbed.services.{run}.service")
    for value in vars(module).values():
        if not (isinstance(value, type) and issubclass(value, Service)):
            continue
        if getattr(value, "service", "") == run:
            return value.config_class
    raise AssertionError(f"no service class in smtestbed.services.{run}.service")


def settings(spec: ServiceSpec, cls: type[ServiceConfig], path: Path = TESTBED) -> Any:
    """Return the settings one instance of the testbed file starts with."""
    overrides = {**spec.settings, "instance": spec.name}
    return load_config(cls, spec.run, path=path, env={}, overrides=overrides)


def spec_named(name: str) -> ServiceSpec:
    """Return the ``[[services]]`` entry ``name`` of deploy/testbed.toml."""
    return next(s for s in load_specs(TESTBED) if s.name == name)


def farm(name: str) -> Population:
    """Return the population the sensor farm instance ``name`` simulates."""
    cfg = settings(spec_named(name), SensorFarmConfig)
    if cfg.population_file:
        cfg = dataclasses.replace(cfg, population_file=str(TOP / cfg.population_file))
    return build_population(cfg, 0.0)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_testbed_file_loads_with_a_broker_first(path: Path) -> None:
    """The file parses, its services resolve, and the broker starts first."""
    specs = load_specs(path)
    load_config(SupervisorConfig, "supervisor", path=path, env={})
    assert specs[0].run == "broker"
    assert len({s.name for s in specs}) == len(specs)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_service_of_the_file_accepts_its_settings(path: Path) -> None:
    """Each instance's settings (file tables plus its own ``set``) load without an error."""
    for spec in load_specs(path):
        cfg = settings(spec, config_class(spec.run), path)
        assert cfg.instance == spec.name


def test_the_registry_lists_the_radio_meters_then_the_wired_ones() -> None:
    """deploy/registry.csv is what `smtb sensorfarm registry` writes for the radio farm
    (ids, manufacturers, keys), followed by the wired farm's meters with security 0."""
    with (DEPLOY / "registry.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    radio, wired = farm("sensorfarm"), farm("wiredfarm")
    expected = [_row(radio, i) for i in range(len(radio))]
    expected += [_row(wired, i) for i in range(len(wired))]
    assert [(r["meter"], r["manufacturer"], r["key_hex"], r["security"]) for r in rows] == expected
    assert len(radio) == 200
    assert {r["gateway"] for r in rows} == {"gw0"}
    assert len({r["consumer"] for r in rows}) == len(rows)


def _row(pop: Population, i: int) -> tuple[str, str, str, str]:
    security = int(pop.security[i])
    key = bytes(pop.key[i]).hex() if security else ""
    return (
        f"{int(pop.ident[i]):08d}",
        decode_manufacturer(int(pop.manufacturer[i])),
        key,
        str(security),
    )


def test_the_wired_line_runs_from_the_wired_farm_through_relay_1_to_the_poller() -> None:
    """The board's line relay listens where the gateway polls and passes on to the wired
    farm's M-Bus slaves; the poller reads every wired meter at its primary address."""
    iohw = settings(spec_named("iohw"), IohwConfig)
    gateway = settings(spec_named("gateway"), GatewayConfig)
    wired = settings(spec_named("wiredfarm"), SensorFarmConfig)
    (line,) = parse_wiring(iohw.wiring).lines()
    (poll,) = parse_lines(gateway.wired_lines, gateway.instances)
    assert line.relay == 1
    assert line.target is not None
    assert line.listen is not None
    assert f"{line.target[0]}:{line.target[1]}" == wired.mbus_tcp
    assert poll.url == f"tcp://{line.listen[0]}:{line.listen[1]}"
    pop = farm("wiredfarm")
    assert all(int(pop.interface[i]) == Interface.WIRED_MBUS for i in range(len(pop)))
    on_line = {f"{int(pop.ident[i]):08d}": int(pop.primary_address[i]) for i in range(len(pop))}
    assert {m.meter: m.primary for m in poll.meters} == on_line


def test_the_board_acts_on_radio_meters_of_the_farm_the_controller_drives() -> None:
    """Power relay, DAC load and ADC outputs name radio meters of the farm "sensorfarm";
    the controller's topology names the testbed's instances and its REST port is fixed."""
    iohw = settings(spec_named("iohw"), IohwConfig)
    wiring = parse_wiring(iohw.wiring)
    radio = farm("sensorfarm")
    ids = {f"{int(radio.ident[i]):08d}" for i in range(len(radio))}
    named = [w.meter for w in wiring.relays if w.kind == "power"]
    named += [w.meter for w in wiring.loads] + [w.meter for w in wiring.outputs]
    assert len(named) == 4
    assert set(named) <= ids
    assert [w.factor(w.volts) for w in wiring.loads] == [1.0]  # the meter's own consumption
    controller = settings(spec_named("controller"), ControllerConfig)
    names = {s.name for s in load_specs(TESTBED)}
    topology = controller.topology()
    assert {topology.sensorfarm, topology.channel, topology.iohw, *topology.gateways} <= names
    assert iohw.sensorfarm == topology.sensorfarm
    assert controller.http_port == 7790
    assert read_toml(TESTBED)["telemetry"]["http_port"] == 7780


def test_every_port_of_the_neighbourhood_is_in_7700_to_7799() -> None:
    """Endpoints and ports stay in one documented range, so a test can move them all."""
    text = TESTBED.read_text()
    ports = re.findall(r"127\.0\.0\.1:(\d+)", text) + re.findall(r"_port = (\d+)", text)
    assert len(ports) >= 10
    assert all(7700 <= int(p) <= 7799 for p in ports)
