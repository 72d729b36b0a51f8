"""`edgeopt top` against real agents: one serving inferences while it watches, one on a "Pi" (a
/sys with a thermal zone and throttle flags), one that is not there."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from edgeopt.host.cli import cli
from edgeopt.host.transport.client import AgentClient
from edgeopt.host.workflows.top import median_from
from tests.agent.test_metrics import _sysfs
from tests.conftest import RunningAgent
from tests.models import DigitsModel


def test_top_shows_rates_medians_temperatures_and_a_dead_board(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel, tmp_path: Path
) -> None:
    busy = agent_factory(name="busy")
    pi = agent_factory("--sysfs", str(_sysfs(tmp_path / "sys")), name="pi")
    x = np.load(digits.validation)["image"][:1]

    async def deploy(agent: RunningAgent) -> None:
        async with AgentClient(agent.address, token=agent.token) as client:
            await client.push(digits.onnx, "digits", version="v1")
            await client.activate("digits", "v1")

    for agent in (busy, pi):
        asyncio.run(deploy(agent))
    lines = []
    for name, agent in (("busy", busy), ("pi", pi)):
        lines += [f"[devices.{name}]", f'address = "{agent.address}"',
                  f'token_file = "{agent.token_file}"']  # fmt: skip
    lines += ["[devices.gone]", 'address = "127.0.0.1:1"']
    inventory = tmp_path / "edgeopt.toml"
    inventory.write_text("\n".join(lines) + "\n")

    stop = threading.Event()

    def serve_inferences() -> None:
        async def go() -> None:
            async with AgentClient(busy.address, token=busy.token) as client:
                while not stop.is_set():
                    await client.infer("digits", {"image": x})

        asyncio.run(go())

    worker = threading.Thread(target=serve_inferences)
    worker.start()
    try:
        result = CliRunner().invoke(cli, ["--inventory", str(inventory), "--deadline", "3", "top",
                                          "--fleet", "--json", "--every", "2"],
                                    catch_exceptions=False)  # fmt: skip
    finally:
        stop.set()
        worker.join(timeout=30)
    assert result.exit_code == 1  # one board did not answer
    report = {d["device"]: d for d in json.loads(result.stdout)["devices"]}
    assert report["gone"]["reachable"] is False and report["gone"]["models"] == []
    (served,) = report["busy"]["models"]
    assert (served["model"], served["version"]) == ("digits", "v1")
    assert served["rate"] > 5 and served["errors"] == 0
    assert 0 < served["p50_ms"] < 250
    (idle,) = report["pi"]["models"]
    assert idle["rate"] == 0.0 and idle["p50_ms"] is None
    assert report["pi"]["temperatures"] == {"thermal_zone0": 48.5}
    assert report["pi"]["throttled"] == ["under-voltage", "throttled"]

    args = [
        "--inventory",
        str(inventory),
        "top",
        "--device",
        "pi",
        "--count",
        "2",
        "--every",
        "0.2",
    ]
    text = CliRunner().invoke(cli, args)
    assert text.exit_code == 0, text.output
    assert "1/1 reachable" in text.output and "48.5 C" in text.output
    assert "under-voltage,throttled" in text.output


def test_the_median_is_read_off_the_histogram_and_never_off_a_malformed_one() -> None:
    bounds = [1.0, 2.0, 4.0]
    assert median_from(bounds, [0, 10, 10, 10]) == 1.5  # all ten in (1, 2]: the middle
    assert median_from(bounds, [5, 5, 5, 10]) == 1.0  # half at or below 1 ms
    assert median_from(bounds, [0, 0, 0, 4]) == 4.0  # beyond the last bound: the bound
    assert median_from(bounds, [0, 0, 0, 0]) is None  # nothing served
    assert median_from(bounds, [3, 2, 5, 5]) is None  # not cumulative
    assert median_from([2.0, 1.0, 4.0], [0, 1, 2, 2]) is None  # bounds that do not rise
    assert median_from(bounds, [1, 2]) is None  # the wrong length
