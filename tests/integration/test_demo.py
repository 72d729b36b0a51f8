"""`make demo`'s script runs end to end: a real agent, the real CLI, a real shell."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_script() -> None:
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh")],
        capture_output=True, text=True, timeout=300, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "$ edgeopt devices\n" in out
    assert "local  127.0.0.1:" in out and "  yes  " in out
    assert "$ edgeopt devices show local" in out and "onnxruntime" in out
    assert "OK  arch" in out
    # The model part: two deployments, a real digit read on the board, a rollback.
    assert "local   ok       v1" in out and "local   ok       v2" in out
    assert "int8-static" in out
    read = out.split("the digit to read is a ")[1].split()[0]
    assert f"argmax per row [{read}]" in out
    assert "local   v2    v1" in out  # rolled back from v2 to v1
    assert "digits.onnx on local: " in out and "alternatives, best first:" in out  # the plan
    # The benchmark: fp32 and int8-static side by side in one run, and its HTML report.
    bench = out.split("$ edgeopt bench ")[1]
    assert re.search(r"^run r\d{8}-\d{6}-[0-9a-f]{4} \(ok\)$", bench, re.M)
    assert re.search(r"^local +fp32 .* 1\.00x ", bench, re.M)
    assert re.search(r"^local +int8-static .* \d\.\d\dx ", bench, re.M)
    assert "bytes, one self-contained page)" in bench
