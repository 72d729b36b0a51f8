"""The agent's metrics, scraped by a real Prometheus server (Debian's) and read back through its
query API after inferences, a refused one, and a rollback. The board's /sys is a folder the
test writes (`--sysfs`): a thermal zone and a Raspberry Pi's throttle flags, as on a Pi 4.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeopt.host.errors import InvalidRequest
from edgeopt.host.transport.client import AgentClient
from tests import prom
from tests.conftest import RunningAgent
from tests.models import DigitsModel


def _sysfs(root: Path) -> Path:
    zone = root / "class" / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("cpu-thermal\n")
    (zone / "temp").write_text("48500\n")
    firmware = root / "devices" / "platform" / "soc" / "soc:firmware"
    firmware.mkdir(parents=True)
    (firmware / "get_throttled").write_text("50005\n")  # under-voltage and throttled, now
    return root


def test_prometheus_scrapes_inference_rollbacks_and_the_board(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel, tmp_path: Path,
    free_port: int,
) -> None:  # fmt: skip
    reason = prom.unavailable_reason()
    if reason:
        pytest.skip(reason)
    agent = agent_factory("--metrics", str(free_port), "--sysfs", str(_sysfs(tmp_path / "sys")))
    second = onnx.load(str(digits.onnx))
    second.doc_string = "v2"
    onnx.save(second, str(tmp_path / "v2.onnx"))
    x = np.load(digits.validation)["image"][:1]

    async def work() -> None:
        async with AgentClient(agent.address, token=agent.token) as client:
            await client.push(digits.onnx, "digits", version="v1")
            await client.push(tmp_path / "v2.onnx", "digits", version="v2")
            await client.activate("digits", "v1")
            await client.activate("digits", "v2")
            for _ in range(5):
                await client.infer("digits", {"image": x})
            with pytest.raises(InvalidRequest):
                await client.infer("digits", {"not-an-input": x})
            with pytest.raises(InvalidRequest):  # a name no label should ever carry
                await client.infer('../"x\n' * 40, {"image": x})
            await client.rollback("digits")
            for _ in range(3):
                await client.infer("digits", {"image": x})

    asyncio.run(work())
    text = urllib.request.urlopen(f"http://127.0.0.1:{free_port}/metrics", timeout=10).read()
    assert b'edgeopt_inference_requests_total{model="digits",version="v2"} 6.0' in text
    invalid = b'{code="INVALID_ARGUMENT",model="(invalid)",version=""} 1.0'
    assert b"edgeopt_inference_errors_total" + invalid in text  # the name never became a label

    with prom.Prometheus(tmp_path / "prometheus", [f"127.0.0.1:{free_port}"]) as server:
        up = server.wait_for('up{job="edgeopt"}', 1.0)
        assert up == 1.0, server.log()
        ask = 'edgeopt_inference_requests_total{model="digits",version="%s"}'
        assert server.wait_for(ask % "v2", 6.0) == 6.0
        assert server.value(ask % "v1") == 3.0
        errors = server.query('edgeopt_inference_errors_total{model="digits"}')
        assert [(e["metric"]["version"], e["metric"]["code"], e["value"][1]) for e in errors] == [
            ("v2", "INVALID_ARGUMENT", "1")
        ]
        assert server.value('edgeopt_inference_errors_total{model="(invalid)"}') == 1.0
        answered = 'edgeopt_inference_latency_seconds_count{version="v1"}'
        assert server.value(answered) == 3.0
        p50 = server.value('histogram_quantile(0.5, edgeopt_inference_latency_seconds_bucket'
                           '{version="v2"})')  # fmt: skip
        assert p50 is not None and 0 < p50 <= 10
        (active,) = server.query("edgeopt_model_active_info")
        assert (active["metric"]["model"], active["metric"]["version"]) == ("digits", "v1")
        assert server.value("edgeopt_runner_restarts_total") == 0.0
        assert (server.value("edgeopt_store_bytes") or 0) > 400_000  # the two versions
        assert server.value("edgeopt_uploads_in_flight") == 0.0
        assert server.value('edgeopt_temperature_celsius{type="cpu-thermal"}') == 48.5
        assert server.value('edgeopt_throttled{condition="under-voltage"}') == 1.0
        assert server.value('edgeopt_throttled{condition="arm frequency capped"}') == 0.0
        assert server.value('edgeopt_throttled_since_boot{condition="under-voltage"}') == 1.0
        assert (server.value("edgeopt_agent_resident_memory_bytes") or 0) > 10 << 20
        assert (server.value("edgeopt_runner_resident_memory_bytes") or 0) > 10 << 20


def test_metrics_are_off_by_default_and_on_loopback_when_given_a_port(
    agent_factory: Callable[..., RunningAgent], free_port: int
) -> None:
    quiet = agent_factory()
    assert "metrics on" not in quiet.output()
    loud = agent_factory("--metrics", str(free_port))
    assert f"metrics on http://127.0.0.1:{free_port}/metrics" in loud.output()
