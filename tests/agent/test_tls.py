"""TLS, mutual TLS and rotation on SIGHUP, against real agent processes on 127.0.0.1.

The clients here are plain grpc channels (the host's client has its own tests): what matters is
what the agent accepts and refuses on the wire.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edgeopt.host.transport import tls
from edgeopt.proto import auth
from edgeopt.proto.v1 import agent_pb2, agent_pb2_grpc
from tests.conftest import RunningAgent
from tests.pki import Pki


def _server_args(pki: Pki, *, mutual: bool = False) -> tuple[str, ...]:
    args = ("--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key))
    return (*args, "--client-ca", str(pki.ca)) if mutual else args


def _credentials(
    pki: Pki, cert: Path | None = None, key: Path | None = None
) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        pki.ca.read_bytes(),
        key.read_bytes() if key else None,
        cert.read_bytes() if cert else None,
    )


def _call(
    address: str,
    credentials: grpc.ChannelCredentials | None,
    token: str | None = None,
) -> tuple[grpc.StatusCode, str]:
    """ListModels over a fresh channel: (OK, "") or the error's code and details."""
    channel = (
        grpc.secure_channel(address, credentials)
        if credentials is not None
        else grpc.insecure_channel(address)
    )
    metadata = (auth.bearer(token),) if token else ()
    with channel:
        try:
            agent_pb2_grpc.AgentStub(channel).ListModels(
                agent_pb2.ListModelsRequest(), metadata=metadata, timeout=20
            )
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def _health(address: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    channel = (
        grpc.secure_channel(address, credentials)
        if credentials is not None
        else grpc.insecure_channel(address)
    )
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=20
            )
        except grpc.RpcError as exc:
            return exc.code()
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    return grpc.StatusCode.OK


def _hangup(agent: RunningAgent, expect: str) -> None:
    """SIGHUP the agent and wait until its log reports the reload (a count of lines grows)."""
    marker = "edgeopt-agent reloaded:"
    before = agent.output().count(marker)
    agent.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while agent.output().count(marker) == before:
        assert agent.process.poll() is None, agent.output()
        assert time.monotonic() < deadline, f"no reload reported:\n{agent.output()}"
        time.sleep(0.02)
    last = [line for line in agent.output().splitlines() if marker in line][-1]
    assert last == f"{marker} {expect}", agent.output()


def test_plaintext_client_cannot_talk_to_a_tls_agent(
    agent_factory: Callable[..., RunningAgent], fleet_pki: Pki
) -> None:
    agent = agent_factory(*_server_args(fleet_pki), token=None)
    assert _health(agent.address, None) == grpc.StatusCode.UNAVAILABLE
    assert _call(agent.address, None)[0] == grpc.StatusCode.UNAVAILABLE
    # The same agent over TLS, trusting the fleet CA, answers.
    assert _health(agent.address, _credentials(fleet_pki)) == grpc.StatusCode.OK
    assert _call(agent.address, _credentials(fleet_pki)) == (grpc.StatusCode.OK, "")


def test_mutual_tls_wants_a_client_certificate_the_ca_signed(
    agent_factory: Callable[..., RunningAgent], fleet_pki: Pki
) -> None:
    agent = agent_factory(*_server_args(fleet_pki, mutual=True), token=None)
    without = _credentials(fleet_pki)
    foreign = _credentials(fleet_pki, fleet_pki.other_client_cert, fleet_pki.other_client_key)
    good = _credentials(fleet_pki, fleet_pki.client_cert, fleet_pki.client_key)
    assert _call(agent.address, without)[0] == grpc.StatusCode.UNAVAILABLE
    assert _call(agent.address, foreign)[0] == grpc.StatusCode.UNAVAILABLE
    # Health too: under mutual TLS nothing is served to a stranger, not even health.
    assert _health(agent.address, without) == grpc.StatusCode.UNAVAILABLE
    assert _call(agent.address, good) == (grpc.StatusCode.OK, "")


def test_token_over_tls(agent_factory: Callable[..., RunningAgent], fleet_pki: Pki) -> None:
    agent = agent_factory(*_server_args(fleet_pki))
    assert agent.token
    creds = _credentials(fleet_pki)
    assert _call(agent.address, creds, agent.token) == (grpc.StatusCode.OK, "")
    assert _call(agent.address, creds, "not-the-token") == (
        grpc.StatusCode.UNAUTHENTICATED,
        "wrong token: check the device's token_file in the inventory",
    )
    assert _call(agent.address, creds)[0] == grpc.StatusCode.UNAUTHENTICATED


def test_sighup_rotates_the_token(agent_factory: Callable[..., RunningAgent]) -> None:
    agent = agent_factory()
    assert agent.token and agent.token_file
    old = agent.token
    assert _call(agent.address, None, old) == (grpc.StatusCode.OK, "")
    agent.token_file.write_text("the-new-token\n")
    _hangup(agent, "token")
    assert _call(agent.address, None, "the-new-token") == (grpc.StatusCode.OK, "")
    assert _call(agent.address, None, old)[0] == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("damage", ["empty", "missing"])
def test_a_bad_token_file_on_sighup_keeps_the_old_token(
    agent_factory: Callable[..., RunningAgent], damage: str
) -> None:
    agent = agent_factory()
    assert agent.token and agent.token_file
    if damage == "empty":
        agent.token_file.write_text("\n")
    else:
        agent.token_file.unlink()
    _hangup(agent, "nothing")
    assert "reload: keeping the previous token" in agent.output()
    assert _call(agent.address, None, agent.token) == (grpc.StatusCode.OK, "")
    assert _call(agent.address, None, "")[0] == grpc.StatusCode.UNAUTHENTICATED


def _served_pin(address: str) -> str:
    host, _, port = address.rpartition(":")
    return tls.fingerprint(tls.fetch_certificate(host, int(port)))


def test_sighup_serves_a_renewed_certificate(
    agent_factory: Callable[..., RunningAgent], fleet_pki: Pki, tmp_path: Path
) -> None:
    # The agent's own copy of its files, renewed in place as a board's would be.
    first = tls.issue(fleet_pki.ca_dir, "board", ["127.0.0.1"])
    cert, key = tls.write_issued(first, tmp_path / "board")
    agent = agent_factory("--tls-cert", str(cert), "--tls-key", str(key))
    assert _served_pin(agent.address) == first.pin
    renewed = tls.issue(fleet_pki.ca_dir, "board", ["127.0.0.1"])
    tls.write_issued(renewed, tmp_path / "board")
    _hangup(agent, "token, certificate")
    assert _served_pin(agent.address) == renewed.pin
    assert _call(agent.address, _credentials(fleet_pki), agent.token) == (grpc.StatusCode.OK, "")

    # A key that does not fit the certificate: the reload is refused, the renewed pair stays.
    key.write_bytes(tls.issue(fleet_pki.ca_dir, "other", ["127.0.0.1"]).key_pem)
    _hangup(agent, "token")
    assert "reload: keeping the previous certificate" in agent.output()
    assert _served_pin(agent.address) == renewed.pin


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeopt.agent", "serve", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_non_loopback_without_tls_is_refused(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("secret\n")
    token.chmod(0o600)
    done = _serve("--listen", "0.0.0.0:0", "--token-file", str(token),
                  "--store", str(tmp_path / "s"))  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("edgeopt-agent: refusing to listen on 0.0.0.0 without TLS: ")
    assert "--tls-cert FILE --tls-key FILE" in done.stderr and "--insecure" in done.stderr
    assert not (tmp_path / "s").exists()  # nothing created before refusing


def test_non_loopback_with_tls_and_token(
    agent_factory: Callable[..., RunningAgent], fleet_pki: Pki
) -> None:
    # Binds every interface but is only ever contacted through loopback.
    agent = agent_factory("--listen", "0.0.0.0:0", *_server_args(fleet_pki))
    port = agent.address.rsplit(":", 1)[1]
    reply = _call(f"127.0.0.1:{port}", _credentials(fleet_pki), agent.token)
    assert reply == (grpc.StatusCode.OK, "")


def test_non_loopback_with_insecure_serves_plaintext(
    agent_factory: Callable[..., RunningAgent],
) -> None:
    agent = agent_factory("--listen", "0.0.0.0:0", "--insecure")
    port = agent.address.rsplit(":", 1)[1]
    assert _call(f"127.0.0.1:{port}", None, agent.token) == (grpc.StatusCode.OK, "")


def test_mutual_tls_authenticates_without_a_token_beyond_loopback(
    agent_factory: Callable[..., RunningAgent], fleet_pki: Pki
) -> None:
    agent = agent_factory("--listen", "0.0.0.0:0", *_server_args(fleet_pki, mutual=True),
                          token=None)  # fmt: skip
    port = agent.address.rsplit(":", 1)[1]
    good = _credentials(fleet_pki, fleet_pki.client_cert, fleet_pki.client_key)
    assert _call(f"127.0.0.1:{port}", good) == (grpc.StatusCode.OK, "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tls-cert", "{cert}"], "--tls-cert and --tls-key go together"),
        (["--tls-key", "{key}"], "--tls-cert and --tls-key go together"),
        (["--client-ca", "{ca}"], "--client-ca needs TLS"),
        (["--tls-cert", "{cert}", "--tls-key", "/nonexistent/key"],
         "--tls-key /nonexistent/key: No such file or directory"),
        (["--tls-cert", "{cert}", "--tls-key", "{other_key}"],
         "are not a certificate and its key (PEM)"),
        (["--tls-cert", "{cert}", "--tls-key", "{key}", "--client-ca", "{token}"],
         "holds no PEM certificate"),
    ],
)  # fmt: skip
def test_bad_tls_arguments_exit_2(
    args: list[str], message: str, fleet_pki: Pki, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("secret\n")
    files = {"cert": fleet_pki.server_cert, "key": fleet_pki.server_key, "ca": fleet_pki.ca,
             "other_key": fleet_pki.client_key, "token": token}  # fmt: skip
    done = _serve(*(a.format(**files) for a in args), "--store", str(tmp_path / "s"))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("edgeopt-agent: ")
    assert message in done.stderr
    assert not (tmp_path / "s").exists()
