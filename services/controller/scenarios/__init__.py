"""The scenario registry: every module in this package defines ``SCENARIO``.

Modules are discovered by name (``billing_day.py`` -> scenario ``billing-day``
unless its ``SCENARIO.name`` says otherwise), so a new scenario is one new module.
"""

from __future__ import annotations

import importlib
import pkgutil

from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.controller.scenario import Scenario


def discover() -> dict[str, Scenario]:
    """Import every scenario module; return the scenarios by name."""
    out: dict[str, Scenario] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        scenario = getattr(module, "SCENARIO", None)
        if not isinstance(scenario, Scenario):
            continue
        if scenario.name in out:
            raise ConfigError(f"scenario {scenario.name!r} defined twice", key=info.name)
        out[scenario.name] = scenario
    return dict(sorted(out.items()))


def get(name: str) -> Scenario:
    """Return the scenario ``name``; ConfigError listing the known ones."""
    scenarios = discover()
    if name not in scenarios:
        raise ConfigError(f"no scenario {name!r} ({', '.join(scenarios)})", key="scenario")
    return scenarios[name]
