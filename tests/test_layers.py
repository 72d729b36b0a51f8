"""The dependency rule between the packages, read from the source (issue 17).

    host ──> proto <── agent          host and agent never import each other;
      └──> boardfacts <──┘            boardfacts and proto import neither of them,
                └──> proto            and proto imports nothing of edgeopt but itself.

Every `import` and `from ... import` of every module is read with `ast`, those inside
functions included, so a late import cannot slip past the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"agent": "agent", "boardfacts": "boardfacts", "host": "host", "proto": "proto"}
"""The import name under `edgeopt.` of each folder."""
FORBIDDEN = {
    "agent": {"host"},
    "host": {"agent"},
    "boardfacts": {"agent", "host"},
    "proto": {"agent", "host", "boardfacts"},
}
"""What each package must never import."""


def imported(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every module a file imports, relative imports made absolute."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.lineno, node.module))
            # `from edgeopt import agent` names the package in the alias
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) >= 2 and parts[0] == "edgeopt" and parts[1] in PACKAGES:
        return parts[1]
    return None


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_only_what_the_rule_allows(package: str) -> None:
    files = sorted((ROOT / PACKAGES[package]).rglob("*.py"))
    assert files, f"no modules under {package}/"
    broken = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in files
        for line, module in imported(path)
        if layer_of(module) in FORBIDDEN[package]
    ]
    assert broken == []


def test_the_rule_catches_a_forbidden_import(tmp_path: Path) -> None:
    """The reader sees late imports and `from edgeopt import agent` alike."""
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from edgeopt import agent\n    import edgeopt.agent.store\n")
    layers = {layer_of(m) for _, m in imported(sample)}
    assert "agent" in layers
