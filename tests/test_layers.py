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


HOST_LAYERS = {
    "errors": set(),
    "config": {"errors"},
    "compress": {"errors"},
    "planning": {"errors", "config"},
    "transport": {"errors", "config"},
    "store": {"errors", "config"},
    "report": {"errors", "config"},
    "workflows": {"errors", "config", "compress", "planning", "transport", "store"},
    "cli": {"errors", "config", "compress", "planning", "transport", "store", "report",
            "workflows"},
}  # fmt: skip
"""Each folder of host/ (or module, for errors.py) and the other host layers it may import.

    cli ──> workflows ──> planning, transport, compress, store ──> config ──> errors
     └────> report ──────────────────────────────────────────────────┘
"""


def host_layer(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) >= 3 and parts[:2] == ["edgeopt", "host"]:
        return parts[2]
    return None


def test_every_host_module_sits_in_a_layer() -> None:
    """host/ holds only its layers' folders (and errors.py, and the entry point __init__.py)."""
    strays = sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "host").iterdir()
        if (p.suffix == ".py" and p.stem not in HOST_LAYERS and p.name != "__init__.py")
        or (p.is_dir() and p.name not in HOST_LAYERS and p.name != "__pycache__")
    )
    assert strays == []


@pytest.mark.parametrize("layer", sorted(HOST_LAYERS))
def test_a_host_layer_imports_only_the_layers_below_it(layer: str) -> None:
    base = ROOT / "host" / layer
    files = sorted(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]
    assert files, f"no modules in host/{layer}"
    broken = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in files
        for line, module in imported(path)
        if (other := host_layer(module)) is not None
        and other != layer
        and other not in HOST_LAYERS[layer]
    ]
    assert broken == []


def test_the_private_rule_sees_both_forms() -> None:
    sample = ROOT / "host" / "probe_for_the_test.py"
    try:
        sample.write_text("from edgeopt.host.report.cases import _x\n"
                          "from edgeopt.host.report import chart\nchart._summary()\n")  # fmt: skip
        hits = private_imports(sample, "host")
    finally:
        sample.unlink()
    assert [h.split(" ", 1)[1] for h in hits] == [
        "imports edgeopt.host.report.cases._x",
        "uses edgeopt.host.report.chart._summary",
    ]


def test_the_host_rule_catches_an_upward_import(tmp_path: Path) -> None:
    """A workflow that imported the CLI, or the report, would be named."""
    sample = tmp_path / "m.py"
    sample.write_text("from edgeopt.host.cli import main\nfrom edgeopt.host import report\n")
    layers = {host_layer(m) for _, m in imported(sample)}
    assert {"cli", "report"} <= layers - HOST_LAYERS["workflows"]


def is_module(dotted: str) -> bool:
    """Whether `edgeopt.x.y` names a module or package of this tree."""
    parts = dotted.split(".")
    if len(parts) < 2 or parts[0] != "edgeopt" or parts[1] not in PACKAGES:
        return False
    base = ROOT / PACKAGES[parts[1]] / Path(*parts[2:]) if parts[2:] else ROOT / parts[1]
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def private_imports(path: Path, package: str) -> list[str]:
    """Another module's underscore names: `from edgeopt.x.m import _y`, or `m._y` on an import."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    own = ".".join(["edgeopt", package, *path.relative_to(ROOT / package).with_suffix("").parts])
    found, modules = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edgeopt."):
            for alias in node.names:
                if is_module(f"{node.module}.{alias.name}"):
                    modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                elif node.module != own and alias.name.startswith("_") and alias.name[1] != "_":
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports "
                                 f"{node.module}.{alias.name}")  # fmt: skip
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id in modules and modules[node.value.id] != own
            and node.attr.startswith("_") and not node.attr.startswith("__")
        ):  # fmt: skip
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} uses "
                         f"{modules[node.value.id]}.{node.attr}")  # fmt: skip
    return found


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_module_imports_another_modules_private_names(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    broken = [hit for path in files for hit in private_imports(path, package)]
    assert broken == []


def test_only_the_transport_touches_the_generated_contract() -> None:
    """Plans, tensors and calls become protobuf in edgeopt.host.transport alone."""
    generated = ("edgeopt.proto.v1", "google.protobuf.json_format")
    broken = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted((ROOT / "host").rglob("*.py"))
        if "transport" not in path.relative_to(ROOT / "host").parts
        for line, module in imported(path)
        if module.startswith(generated)
    ]
    assert broken == []


def declared_all(path: Path) -> list[str] | None:
    """The names a module's `__all__` lists (None: it has none)."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            assert isinstance(value, (ast.List, ast.Tuple)), f"{path}: __all__ is not a literal"
            return [ast.literal_eval(e) for e in value.elts]
    return None


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_every_module_says_what_it_offers(package: str) -> None:
    """Each module has `__all__` (generated protobuf code and `__main__` aside)."""
    files = [
        p
        for p in sorted((ROOT / package).rglob("*.py"))
        if not p.name.endswith(("_pb2.py", "_pb2_grpc.py")) and p.name != "__main__.py"
    ]
    missing = [str(p.relative_to(ROOT)) for p in files if declared_all(p) is None]
    assert missing == []


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_what_a_module_offers_is_there(package: str) -> None:
    """Every name an `__all__` lists is defined or imported at the module's top level."""
    broken = []
    for path in sorted((ROOT / package).rglob("*.py")):
        names = declared_all(path) or []
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bound = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bound.add(node.name)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                bound.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                bound.add(node.id)
        if path.name == "__init__.py":  # a package offers its submodules too
            bound.update(p.stem for p in path.parent.glob("*.py"))
            bound.update(p.name for p in path.parent.iterdir() if (p / "__init__.py").is_file())
        broken += [f"{path.relative_to(ROOT)}: {n}" for n in names if n not in bound]
    assert broken == []
