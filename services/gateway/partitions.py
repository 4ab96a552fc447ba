"""Which source files make up which partition of the gateway (what the observer hashes)."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent

PARTITION_FILES: dict[str, tuple[str, ...]] = {
    "management": ("registry.py", "api.py"),
    "measurement": (
        "processing.py",
        "layouts.py",
        "heads.py",
        "instance.py",
        "ingest.py",
        "schema.py",
        "unsafe.py",
    ),
    "store": ("store.py", "store_checks.py", "store_sql.py", "store_writer.py"),
    "tariffs": ("tariffs.py", "taf_runner.py"),
    "logs": ("logs.py", "logchain.py", "keys.py"),
    "observer": ("observer.py", "partitions.py", "integrity.py"),
    "downloader": ("downloader.py",),
    "lmn_wireless": ("service.py", "config.py", "__init__.py", "stepping.py"),
    "lmn_wired": ("lmn_wired.py", "lmn_link.py", "wired_readings.py"),
    "lmn_serial": ("lmn_serial.py",),
    "han": ("han.py", "cls_proxy.py"),
    "wan": (
        "wan.py",
        "framed_tls.py",
        "emt_delivery.py",
        "timesync.py",
        "crl_fetch.py",
        "wakeup.py",
        "certstore.py",
        "rotation.py",
    ),
}


def own_partitions() -> dict[str, list[Path]]:
    """Return the gateway's own partitions as file paths (links resolved to the sources)."""
    return {
        name: [(PACKAGE / f).resolve() for f in files] for name, files in PARTITION_FILES.items()
    }


def own_base() -> Path:
    """Return the folder manifest paths of the own partitions are relative to."""
    return (PACKAGE / "service.py").resolve().parent
