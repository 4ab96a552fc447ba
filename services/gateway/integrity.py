"""The observer and downloader partitions as the service runs them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smtestbed.services._runtime.errors import ConfigError, RequestError
from smtestbed.services.gateway.config import GatewayConfig
from smtestbed.services.gateway.downloader import Downloader, InstallResult
from smtestbed.services.gateway.instance import GatewayInstance
from smtestbed.services.gateway.observer import Observer, Violation, load_public_key
from smtestbed.services.gateway.partitions import own_base, own_partitions


def make_observer(cfg: GatewayConfig, config_files: list[Path]) -> Observer | None:
    """Return the observer of the gateway's own partitions, or None when not configured."""
    if not cfg.manifest_file:
        return None
    if not cfg.manifest_key:
        raise ConfigError("a manifest needs manifest_key", key="gateway.manifest_key")
    key = load_public_key(Path(cfg.manifest_key))
    return Observer(Path(cfg.manifest_file), key, own_partitions(), config_files, base=own_base())


def report_violations(
    instances: list[GatewayInstance], violations: list[Violation], *, t_sim: float
) -> list[dict[str, Any]]:
    """Write each violation to every instance's system log; return the event bodies."""
    bodies = [v.to_dict() for v in violations]
    for inst in instances:
        for body, violation in zip(bodies, violations, strict=True):
            inst.logs.system.append(
                "integrity_violation", {**body, "summary": violation.describe()}, t_sim=t_sim
            )
    return bodies


def downloader_for(cfg: GatewayConfig, inst: GatewayInstance) -> Downloader:
    """Return the instance's downloader (firmware under its folder)."""
    if not cfg.manufacturer_key:
        raise RequestError("this gateway accepts no updates (no manufacturer_key)", field="bundle")
    key = load_public_key(Path(cfg.manufacturer_key))
    return Downloader(inst.folder / "firmware", key, name=cfg.product_name, skipped=inst.skipped)


def install(
    cfg: GatewayConfig, inst: GatewayInstance, bundle: Any, *, by: str, t_sim: float
) -> InstallResult:
    """Install an update bundle on one instance and log the outcome."""
    if not isinstance(bundle, bytes):
        raise RequestError("must be the bundle's bytes", field="bundle")
    result = downloader_for(cfg, inst).install(bundle)
    kind = "update_installed" if result.accepted else "update_refused"
    inst.logs.system.append(
        kind,
        {
            "version": result.version,
            "previous": result.previous,
            "reason": result.reason,
            "message": result.message,
            "by": by,
        },
        t_sim=t_sim,
    )
    return result
