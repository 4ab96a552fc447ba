"""What ``smtb up`` starts: supervisor settings and the list of services.

A testbed file is TOML. ``[common]`` holds settings every service reads (bus
endpoints, clock), ``[supervisor]`` the supervisor's own, each
``[[services]]`` entry one process::

    [[services]]
    name = "ticker-a"        # instance name on the bus
    run = "sample"           # service kind: runs python -m smtestbed.services.sample
    after = ["broker"]       # started once these are ready, stopped before them
    restart = "on-failure"   # or "always", "never"
    set = { interval_s = 0.5 }   # settings for this instance only

and a table named after a service kind (``[sample]``) holds settings for
every instance of that kind.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smtestbed.services._runtime.config import ServiceConfig, doc, read_toml
from smtestbed.services._runtime.errors import ConfigError

RESTART_POLICIES = ("on-failure", "always", "never")
_SPEC_KEYS = frozenset({"name", "run", "after", "restart", "set"})

DEFAULT_TESTBED = """\
# The default testbed of `smtb up`: a broker and two sample services.
[common]
bus_pub = "tcp://127.0.0.1:7701"
bus_sub = "tcp://127.0.0.1:7702"
bus_rpc = "tcp://127.0.0.1:7703"

[supervisor]
restart_backoff_s = 0.5

[[services]]
name = "broker"
run = "broker"

[[services]]
name = "ticker-a"
run = "sample"
after = ["broker"]
set = { interval_s = 1.0 }

[[services]]
name = "ticker-b"
run = "sample"
after = ["broker"]
set = { interval_s = 2.5 }
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorConfig(ServiceConfig):
    """Settings of the supervisor itself."""

    restart_backoff_s: float = doc(0.5, "first delay before restarting a crashed service, s")
    restart_backoff_max_s: float = doc(10.0, "longest delay between restarts, s")
    stable_after_s: float = doc(30.0, "a run this long resets the restart delay, s")
    ready_timeout_s: float = doc(20.0, "how long a service may take to become ready, s")
    stop_timeout_s: float = doc(5.0, "how long a service may take to stop before SIGKILL, s")
    log_dir: str = doc("", "write each service's output to DIR/<name>.log (empty: inherit)")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceSpec:
    """One process the supervisor runs."""

    name: str
    run: str
    after: tuple[str, ...] = ()
    restart: str = "on-failure"
    settings: dict[str, Any] = field(default_factory=dict)

    def argv_settings(self) -> list[str]:
        """Return ``--set key=value`` arguments for this instance's settings."""
        out: list[str] = []
        for key, value in self.settings.items():
            out += ["--set", f"{key}={_as_text(value)}"]
        return out


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(_as_text(v) for v in value)
    return str(value)


def load_specs(path: Path) -> list[ServiceSpec]:
    """Read ``[[services]]`` from a testbed file, checked and in start order."""
    raw = read_toml(path).get("services")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{path} has no [[services]] entries", key="services")
    specs = [_spec(i, item) for i, item in enumerate(raw)]
    return start_order(specs)


def _spec(index: int, item: Any) -> ServiceSpec:
    key = f"services[{index}]"
    if not isinstance(item, dict):
        raise ConfigError("must be a table", key=key)
    unknown = set(item) - _SPEC_KEYS
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(unknown)}", key=key)
    name, run = item.get("name"), item.get("run")
    if not isinstance(name, str) or not name:
        raise ConfigError("needs a name", key=f"{key}.name")
    if not isinstance(run, str) or importlib.util.find_spec(f"smtestbed.services.{run}") is None:
        raise ConfigError(f"{run!r} is not a service of this testbed", key=f"{key}.run")
    after = item.get("after", [])
    if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
        raise ConfigError("must be a list of service names", key=f"{key}.after")
    restart = item.get("restart", "on-failure")
    if restart not in RESTART_POLICIES:
        raise ConfigError(f"must be one of {', '.join(RESTART_POLICIES)}", key=f"{key}.restart")
    settings = item.get("set", {})
    if not isinstance(settings, dict):
        raise ConfigError("must be a table", key=f"{key}.set")
    return ServiceSpec(name=name, run=run, after=tuple(after), restart=restart, settings=settings)


def start_order(specs: list[ServiceSpec]) -> list[ServiceSpec]:
    """Order services so each starts after those it names in ``after``."""
    by_name: dict[str, ServiceSpec] = {}
    for spec in specs:
        if spec.name in by_name:
            raise ConfigError(f"service name {spec.name!r} is used twice", key="services")
        by_name[spec.name] = spec
    for spec in specs:
        for dep in spec.after:
            if dep not in by_name:
                raise ConfigError(
                    f"{spec.name} waits for unknown service {dep!r}",
                    key=f"services.{spec.name}.after",
                )
    ordered: list[ServiceSpec] = []
    state: dict[str, int] = {}  # 1: visiting, 2: placed

    def visit(spec: ServiceSpec, path: tuple[str, ...]) -> None:
        if state.get(spec.name) == 2:
            return
        if state.get(spec.name) == 1:
            raise ConfigError(
                f"dependency cycle: {' -> '.join((*path, spec.name))}",
                key=f"services.{spec.name}.after",
            )
        state[spec.name] = 1
        for dep in spec.after:
            visit(by_name[dep], (*path, spec.name))
        state[spec.name] = 2
        ordered.append(spec)

    for spec in specs:
        visit(spec, ())
    return ordered
