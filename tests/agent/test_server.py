"""The agent as a real process on loopback, called by real gRPC clients."""

from __future__ import annotations

import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
import onnxruntime
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from edgeopt.proto import auth
from edgeopt.proto.v1 import agent_pb2, agent_pb2_grpc
from tests.conftest import RunningAgent


def _caps(agent: RunningAgent, metadata: tuple[tuple[str, str], ...]) -> agent_pb2.Capabilities:
    with grpc.insecure_channel(agent.address) as channel:
        stub = agent_pb2_grpc.AgentStub(channel)
        return stub.GetCapabilities(
            agent_pb2.GetCapabilitiesRequest(), metadata=metadata, timeout=60
        )


def test_capabilities_with_the_right_token(shared_agent: RunningAgent) -> None:
    assert shared_agent.token
    reply = _caps(shared_agent, (auth.bearer(shared_agent.token),))
    assert reply.arch == platform.machine()
    assert reply.python_version == platform.python_version()
    assert reply.onnxruntime.version == onnxruntime.__version__
    assert reply.onnxruntime.max_ir_version >= 9 and reply.onnxruntime.max_opset >= 19
    assert "CPUExecutionProvider" in reply.onnxruntime.execution_providers
    assert reply.HasField("store_free_bytes") and reply.store_free_bytes > 0
    assert reply.HasField("memory_total_bytes")
    assert len(reply.fingerprint) == 16


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ((), "missing bearer token: send metadata 'authorization: Bearer <token>'"),
        ((auth.bearer("not-the-token"),), "wrong token: check the device's token_file"),
        ((("authorization", "Basic dXNlcjpwYXNz"),), "missing bearer token"),
    ],
)
def test_wrong_or_missing_token_is_unauthenticated(
    shared_agent: RunningAgent, metadata: tuple[tuple[str, str], ...], message: str
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        _caps(shared_agent, metadata)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert (info.value.details() or "").startswith(message)


def test_health_needs_no_token(shared_agent: RunningAgent) -> None:
    with grpc.insecure_channel(shared_agent.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "edgeopt.v1.Agent"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as info:
            stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_services(shared_agent: RunningAgent) -> None:
    with grpc.insecure_channel(shared_agent.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        replies = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    names = {s.name for s in replies[0].list_services_response.service}
    assert {"edgeopt.v1.Agent", "grpc.health.v1.Health"} <= names


def test_sigterm_stops_cleanly(agent_factory: Callable[..., RunningAgent]) -> None:
    agent = agent_factory()
    assert agent.stop() == 0
    out = agent.output()
    assert f"edgeopt-agent listening on {agent.address}" in out
    assert "edgeopt-agent stopped" in out
    assert agent.store.is_dir()


def test_loopback_without_token_is_allowed(agent_factory: Callable[..., RunningAgent]) -> None:
    agent = agent_factory(token=None)
    reply = _caps(agent, ())
    assert reply.arch == platform.machine()


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeopt.agent", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_refuses_non_loopback_without_token(tmp_path: Path) -> None:
    done = _serve("--listen", "0.0.0.0:0", "--store", str(tmp_path / "s"))
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without authentication" in done.stderr
    assert not (tmp_path / "s").exists()  # nothing created before refusing


def test_insecure_allows_non_loopback(agent_factory: Callable[..., RunningAgent]) -> None:
    # Binds every interface but is only ever contacted through loopback.
    agent = agent_factory("--listen", "0.0.0.0:0", "--insecure", token=None)
    port = agent.address.rsplit(":", 1)[1]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = agent_pb2_grpc.AgentStub(channel).GetCapabilities(
            agent_pb2.GetCapabilitiesRequest(), timeout=60
        )
    assert reply.arch == platform.machine()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "localhost"], "--listen wants HOST:PORT"),
        (["--listen", "127.0.0.1:99999"], "--listen wants HOST:PORT"),
        (["--token-file", "/nonexistent/token"], "--token-file: [Errno 2] No such file"),
    ],
)
def test_bad_arguments_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    done = _serve(*args, "--store", str(tmp_path / "s"))
    assert done.returncode == 2
    assert message in done.stderr


def test_empty_token_file_is_refused(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("\n")
    done = _serve("--token-file", str(token), "--store", str(tmp_path / "s"))
    assert done.returncode == 2
    assert f"token file {token} is empty" in done.stderr


def test_port_in_use_is_an_error(shared_agent: RunningAgent, tmp_path: Path) -> None:
    done = _serve("--listen", shared_agent.address, "--store", str(tmp_path / "s"))
    assert done.returncode == 1
    assert f"cannot listen on {shared_agent.address}" in done.stderr
