"""Every package folder on disk is installed (STYLE.md: list every subpackage)."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]


def test_every_subpackage_is_listed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = config["package-dir"]
    on_disk = set()
    for package, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            on_disk.add(".".join([package, *rel.parts]))
    assert on_disk == listed


def test_each_package_folder_is_a_regular_package() -> None:
    """A folder of .py files without __init__.py would silently not be installed."""
    for folder in ("agent", "host", "proto", "device_profiles"):
        for py in (ROOT / folder).rglob("*.py"):
            assert (py.parent / "__init__.py").exists(), py
