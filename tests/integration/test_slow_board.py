"""A frozen board in a fleet operation: its deadline holds and the others finish (issue 16).

The board is a real agent stopped with SIGSTOP: the kernel still accepts its TCP connections,
but nothing answers, as a board that hangs in a kernel driver or swaps itself to death does.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.test_deploy import edgeopt, inventory
from tests.conftest import RunningAgent
from tests.models import DigitsModel

pytestmark = pytest.mark.slow


def test_a_frozen_board_fails_alone_within_its_deadline(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel, tmp_path: Path
) -> None:
    agents = {name: agent_factory(name=name) for name in ("a", "frozen", "c")}
    inv = inventory(tmp_path, agents)
    os.kill(agents["frozen"].process.pid, signal.SIGSTOP)
    try:
        began = time.monotonic()
        listed = edgeopt(tmp_path, inv, "devices", "--device", "shelf", "--json")
        seconds = time.monotonic() - began
        assert listed.exit_code == 1, listed.output
        rows = {row["name"]: row for row in json.loads(listed.stdout)}
        assert rows["a"]["error"] is None and rows["c"]["error"] is None
        assert "within 3 s" in rows["frozen"]["error"]
        # A bound that a hang would break, far above the 3 s deadline: not a speed figure.
        assert seconds < 60
        deployed = edgeopt(tmp_path, inv, "deploy", str(digits.onnx), "--device", "shelf",
                           "--precision", "fp32", "--name", "digits", "--json")  # fmt: skip
        assert deployed.exit_code == 1, deployed.output
        report = json.loads(deployed.stdout)
        outcome = {d["device"]: d for d in report["devices"]}
        assert outcome["a"]["error"] is None and outcome["c"]["error"] is None
        assert outcome["frozen"]["error"]
    finally:
        os.kill(agents["frozen"].process.pid, signal.SIGCONT)
    # Thawed, it answers again: nothing about it was left half done.
    again = edgeopt(tmp_path, inv, "devices", "--device", "frozen", "--json")
    assert again.exit_code == 0, again.output
