"""Every testbed file in deploy/ is valid for `smtb up`."""

from __future__ import annotations

from pathlib import Path

import pytest
from smtestbed.services._runtime.config import load_config
from smtestbed.services.supervisor.config import SupervisorConfig, load_specs

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.mark.parametrize("path", sorted(DEPLOY.glob("*.toml")), ids=lambda p: p.name)
def test_testbed_file_loads_with_a_broker_first(path: Path) -> None:
    """The file parses, its services resolve, and the broker starts first."""
    specs = load_specs(path)
    load_config(SupervisorConfig, "supervisor", path=path, env={})
    assert specs[0].run == "broker"
    assert len({s.name for s in specs}) == len(specs)
