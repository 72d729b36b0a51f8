"""The committed generated code is what the committed .proto files generate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_up_to_date() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--check"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "generated code is up to date (3 files)" in done.stdout


def test_generated_code_imports_under_the_installed_name() -> None:
    text = (ROOT / "proto" / "v1" / "agent_pb2_grpc.py").read_text()
    assert "from edgeopt.proto.v1 import agent_pb2" in text
