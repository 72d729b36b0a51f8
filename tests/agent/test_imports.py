"""The agent must stay small: importing and running it loads nothing of the host's stack.

Model: click's test_imports.py, which checks the modules a fresh interpreter loads.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FORBIDDEN = ("torch", "edgeopt.host", "click", "paramiko", "onnx", "platformdirs")

SCRIPT = """
import json, sys
import edgeopt.agent.cli, edgeopt.agent.server, edgeopt.boardfacts.capabilities
from edgeopt.boardfacts.capabilities import Sources, collect
from edgeopt.boardfacts.runtime import probe_in_process
collect(Sources.live_system(), None, probe_in_process())
json.dump(sorted(sys.modules), sys.stdout)
"""


def test_agent_loads_no_host_module() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True
    ).stdout
    loaded = json.loads(out)
    bad = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert bad == []
    assert "onnxruntime" in loaded  # the probe did run


@pytest.mark.slow
def test_base_install_resolves_without_host_packages(tmp_path: Path) -> None:
    """Resolve `pip install .` (no extras) for real and read what it would install."""
    root = Path(__file__).resolve().parents[2]
    report = tmp_path / "report.json"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
         "--report", str(report), str(root)],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    names = {i["metadata"]["name"].lower() for i in json.loads(report.read_text())["install"]}
    assert {"grpcio", "protobuf", "numpy", "onnxruntime", "edgeopt"} <= names
    assert names.isdisjoint({"torch", "click", "paramiko", "onnx", "platformdirs"})
