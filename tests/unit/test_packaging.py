"""Packaging: every package folder is listed in pyproject.toml and importable."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _listed_packages() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(data["tool"]["setuptools"]["packages"])


def _package_folders() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found: set[str] = set()
    for name, folder in data["tool"]["setuptools"]["package-dir"].items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    return found


def test_every_package_folder_is_listed_in_pyproject() -> None:
    """A folder with __init__.py under services/ or proto/ must be in `packages`."""
    missing = _package_folders() - _listed_packages()
    assert not missing, f"add to [tool.setuptools] packages: {sorted(missing)}"


def test_every_listed_package_exists_and_imports() -> None:
    """Each listed package imports under its smtestbed.* name."""
    for name in sorted(_listed_packages()):
        module = importlib.import_module(name)
        assert module.__name__ == name
