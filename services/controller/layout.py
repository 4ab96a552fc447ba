"""The run folder of a testbed: configuration TOML, gateway registry, population file.

:func:`write_run_folder` turns a :class:`TestbedState` into the files ``smtb up``
reads: ``testbed.toml`` (free 127.0.0.1 ports, the services in start order),
``registry.csv`` written by the sensor farm's own ``registry`` command and cut to
the meters the state registers, and ``population.toml`` for explicit meters.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smtestbed.services._runtime.bus import Endpoints
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services._runtime.testing import endpoint_settings, free_port, random_endpoints
from smtestbed.services.controller import wired
from smtestbed.services.controller.credentials import make_pki, pki_settings, write_signing_keys
from smtestbed.services.controller.state import TestbedState

SMTB = str(Path(sys.executable).with_name("smtb"))
ADMIN_SECRET = "controller-admin"
REGISTRY_FIELDS = (
    "gateway",
    "meter",
    "manufacturer",
    "key_hex",
    "security",
    "tafs",
    "consumer",
    "emt",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFolder:
    """What was written, and where the services will listen."""

    folder: Path
    config: Path
    endpoints: Endpoints
    services: tuple[tuple[str, str], ...]  # (instance, kind) in start order
    meters: tuple[str, ...]  # every wireless meter of the population
    registered: dict[str, tuple[str, ...]] = field(default_factory=dict)  # gateway -> meters
    controller_http: int = 0
    ca_url: str = ""
    mbus_tcp: str = ""


def toml_value(value: Any) -> str:
    """Return ``value`` as a TOML value (tables inline)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{value!r} cannot be written to TOML", key="state")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        items = ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    raise ConfigError(f"{value!r} cannot be written to TOML", key="state")


def toml_table(name: str, values: Mapping[str, Any], *, array: bool = False) -> list[str]:
    """Return the lines of one ``[name]`` table (``[[name]]`` for an array entry)."""
    head = f"[[{name}]]" if array else f"[{name}]"
    return [head, *(f"{k} = {toml_value(v)}" for k, v in values.items()), ""]


def has_service(kind: str) -> bool:
    """Return True when ``smtestbed.services.<kind>`` is installed and runnable."""
    return importlib.util.find_spec(f"smtestbed.services.{kind}.__main__") is not None


def services_of(state: TestbedState, *, controller: bool) -> list[dict[str, Any]]:
    """Return the ``[[services]]`` entries the state needs, in start order."""
    out: list[dict[str, Any]] = [{"name": "broker", "run": "broker"}]
    gateway_after = ["broker"]
    if state.pki.enabled:
        out.append({"name": "ca", "run": "ca", "after": ["broker"]})
        gateway_after.append("ca")  # the gateway fetches its CRLs at start
    if "timeservice" in state.pki.certificates:
        out.append({"name": "timeservice", "run": "wan.timeservice", "after": ["broker", "ca"]})
        gateway_after.append("timeservice")  # the gateway syncs its clock at start
    out.append({"name": "gateway", "run": "gateway", "after": gateway_after})
    ordered = _frames_flow_at_start(state)
    out.append({"name": "channel", "run": "channel", "after": _after("gateway", ordered)})
    out.append({"name": "sensorfarm", "run": "sensorfarm", "after": _after("channel", ordered)})
    if state.relays or state.wired.relay:
        out.append({"name": "iohw", "run": "iohw", "after": ["broker"]})
    if controller:
        out.append({"name": "controller", "run": "controller", "after": ["broker"]})
    return out


def _frames_flow_at_start(state: TestbedState) -> bool:
    """Return True unless no frame can move before the controller advances the clock.

    With request stepping and no wired line, nothing flows on the simulation plane until
    the controller advances, which it does only once every service is ready: farm, channel
    and gateway then start together instead of downstream first, one after the other.
    """
    stepped = state.clock.mode == "stepped" and state.clock.step_control == "request"
    return not stepped or state.wired.enabled


def _after(downstream: str, ordered: bool) -> list[str]:
    return ["broker", downstream] if ordered else ["broker"]


def _farm(state: TestbedState, folder: Path, output: str, mbus: str) -> dict[str, Any]:
    pop = state.population
    farm: dict[str, Any] = {
        "seed": state.seed,
        "meters": pop.count,
        "mix": pop.mix,
        "security": pop.security,
        "interval_s": pop.interval_s,
        "area_m": pop.area_m,
        "window_s": state.clock.window_s,
        "output": output,
    }
    if state.meters:
        path = folder / "population.toml"
        lines = [line for row in state.meters for line in toml_table("meter", row, array=True)]
        path.write_text("\n".join(lines))
        farm["population_file"] = str(path)
    if state.clock.mode == "stepped" and state.clock.step_control == "request":
        farm["step_control"] = "request"
    if mbus:
        farm["mbus_tcp"] = mbus
    return farm


def _gateway(state: TestbedState, folder: Path, lmn: str, mbus: str) -> dict[str, Any]:
    gw: dict[str, Any] = {
        "input_endpoint": lmn,
        "data_dir": str(folder / "gateway"),
        "instances": list(state.gateways),
        "synchronous": "NORMAL",
        "manufacturer_key": str(write_signing_keys(folder)),
    }
    if state.registry.meters != "none":
        gw["registry_file"] = str(folder / "registry.csv")
    if mbus:
        gw["wired_lines"] = [wired.line_table(state, mbus)]
    return gw


def _channel(state: TestbedState, inp: str, out: str) -> dict[str, Any]:
    return {
        "input_endpoint": inp,
        "output_endpoint": out,
        "seed": state.seed,
        "shadowing_sigma_db": state.channel.shadowing_sigma_db,
        "receivers": [{"name": r.name, "x": r.x, "y": r.y} for r in state.receivers()],
        "interferers": [dict(i) for i in state.channel.interferers],
    }


def write_run_folder(state: TestbedState, folder: Path, *, controller: bool = False) -> RunFolder:
    """Write every file of the run into ``folder``; return where things will be."""
    folder.mkdir(parents=True, exist_ok=True)
    endpoints = random_endpoints()
    farm_out, lmn = (f"tcp://127.0.0.1:{free_port()}" for _ in range(2))
    mbus = f"127.0.0.1:{free_port()}" if state.wired.enabled else ""
    board = f"127.0.0.1:{free_port()}" if state.wired.relay else ""  # the relay's side
    http = free_port() if controller else 0
    ca_port = free_port() if state.pki.enabled else 0
    common = {
        **endpoint_settings(endpoints),
        "heartbeat_s": 0.5,
        "log_format": "json",
        "clock_mode": state.clock.mode,
        "clock_start": state.clock.start,
        "clock_scale": state.clock.scale,
    }
    tables: dict[str, dict[str, Any]] = {
        "common": common,
        "supervisor": {"log_dir": str(folder / "logs"), "ready_timeout_s": 180.0},
        "sensorfarm": _farm(state, folder, farm_out, mbus),
        "channel": _channel(state, farm_out, lmn),
        "gateway": _gateway(state, folder, lmn, board or mbus),
    }
    if board:
        tables["iohw"] = wired.board_table(state, board, mbus)
    if state.pki.enabled:
        tables["ca"] = {
            "data_dir": str(folder / "ca"),
            "port": ca_port,
            "base_url": f"http://127.0.0.1:{ca_port}",
            "admin_secret": ADMIN_SECRET,
            # Certificates and CRLs carry dates that TLS peers check against wall time.
            "clock_mode": "realtime",
            "clock_start": 0.0,
        }
        ca_url = tables["ca"]["base_url"]
        make_pki(folder, SMTB, ca_url, state.pki.certificates)
        for service, settings in pki_settings(folder, ca_url, state.pki.certificates).items():
            tables.setdefault(service, {}).update(settings)
    if controller:
        tables["controller"] = {"http_port": http, "gateways": ["gateway"], "run_dir": str(folder)}
        if state.pki.enabled:
            tables["controller"].update(
                ca_url=f"http://127.0.0.1:{ca_port}", ca_secret=ADMIN_SECRET
            )
    for service, settings in state.settings.items():
        tables.setdefault(service, {}).update(settings)
    specs = services_of(state, controller=controller)
    lines = [line for name, values in tables.items() for line in toml_table(name, values)]
    for spec in specs:
        lines += toml_table("services", spec, array=True)
    config = folder / "testbed.toml"
    config.write_text("\n".join(lines))
    meters = _population_meters(config, folder, state)
    return RunFolder(
        folder=folder,
        config=config,
        endpoints=endpoints,
        services=tuple((s["name"], s["run"]) for s in specs),
        meters=tuple(meters),
        registered=_write_registry(folder, state, meters),
        controller_http=http,
        ca_url=f"http://127.0.0.1:{ca_port}" if ca_port else "",
        mbus_tcp=mbus,
    )


def _population_meters(config: Path, folder: Path, state: TestbedState) -> list[str]:
    """Run ``smtb sensorfarm registry`` on the config; return the wireless meter ids."""
    out = folder / "registry-all.csv"
    argv = [SMTB, "sensorfarm", "registry", "--config", str(config), "--out", str(out)]
    for gw in state.gateways:
        argv += ["--gateway", gw]
    argv += ["--tafs", ";".join(state.registry.tafs), "--emt", state.registry.emt]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise ConfigError(f"smtb sensorfarm registry failed: {done.stderr.strip()}", key="state")
    with out.open(newline="") as handle:
        return [row["meter"] for row in csv.DictReader(handle)]


def _write_registry(
    folder: Path, state: TestbedState, meters: list[str]
) -> dict[str, tuple[str, ...]]:
    """Cut the full registry to the state's meters and TAF assignments; return per gateway."""
    wanted = state.registry.meters
    wired_ids = {r["meter"] for r in wired.registry_rows(state)}
    everyone = set(meters) | wired_ids
    chosen = everyone if wanted == "all" else set() if wanted == "none" else set(wanted)
    unknown = sorted(chosen - everyone)
    if unknown:
        raise ConfigError(
            f"meter {unknown[0]} is not in the population", key="state.registry.meters"
        )
    with (folder / "registry-all.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["meter"] in chosen]
    rows += [r for r in wired.registry_rows(state) if r["meter"] in chosen]
    for row in rows:
        if row["meter"] in state.registry.assign:
            row["tafs"] = ";".join(state.registry.assign[row["meter"]])
    if wanted != "none":
        with (folder / "registry.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=REGISTRY_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    out: dict[str, tuple[str, ...]] = {gw: () for gw in state.gateways}
    for row in rows:
        out[row["gateway"]] = (*out.get(row["gateway"], ()), row["meter"])
    return out
