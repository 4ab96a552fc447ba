"""Every module the running gateway executes belongs to an observed partition."""

from __future__ import annotations

from smtestbed.services.gateway.partitions import PACKAGE, PARTITION_FILES, own_partitions

# Command-line entry points run outside the gateway process and are not observed.
NOT_RUNTIME = {"__main__.py", "cli.py", "cli_firmware.py", "cli_logs.py"}


def test_every_runtime_module_is_in_exactly_one_partition() -> None:
    """A new gateway module must be added to a partition, or the observer misses changes."""
    listed = [f for files in PARTITION_FILES.values() for f in files]
    assert len(listed) == len(set(listed)), "a file is in two partitions"
    present = {p.name for p in PACKAGE.iterdir() if p.suffix == ".py"} - NOT_RUNTIME
    assert present == set(listed)


def test_partition_paths_exist() -> None:
    """Each listed file resolves to a real source file."""
    for paths in own_partitions().values():
        assert all(p.is_file() for p in paths)
