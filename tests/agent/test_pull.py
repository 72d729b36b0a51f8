"""Pull mode against a real registry: Debian's docker-registry on loopback, real agent processes.

The agent polls its desired state, pulls by digest, activates with the smoke test and pushes
its status; the host's side here is edgeopt.host.transport.registry (what `edgeopt publish`
uses). Faults are real: a blob corrupted in the registry's own storage, an artifact that is not
there, a plan the board cannot run, refused credentials, a registry answering 503, a registry
that goes away, a link cut in the middle of a download, a tag rewritten between HEAD and GET.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from edgeopt.agent.models import Models
from edgeopt.agent.pull import STATUS_FILE, PullConfig, Puller
from edgeopt.host.transport.registry import DeviceView, FleetRegistry, Published, registry_for
from edgeopt.proto import fleetstate as fs
from edgeopt.proto.oci import Credentials, RegistryRef
from edgeopt.proto.plan import RunPlan
from tests.conftest import RunningAgent, start_agent
from tests.registry import CuttingLink, OciRegistry

PLAN = RunPlan(precision="fp32", intra_op_threads=1)


@pytest.fixture(scope="module")
def models(digits, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The digits CNN and a second version of it (same weights, other bytes)."""
    folder = tmp_path_factory.mktemp("versions")
    second = onnx.load(str(digits.onnx))
    second.doc_string = "the second version"
    onnx.save(second, str(folder / "v2.onnx"))
    return {"v1": Path(digits.onnx), "v2": folder / "v2.onnx"}


@pytest.fixture
def fleet(oci_registry: OciRegistry, tmp_path: Path) -> Iterator[FleetRegistry]:
    """The host's view of the test registry."""
    found = registry_for(oci_registry.url, oci_registry.credentials_file(tmp_path / "host.json"))
    yield found
    found.close()


@pytest.fixture
def pull_agent(oci_registry: OciRegistry, tmp_path: Path) -> Iterator[Callable[..., RunningAgent]]:
    """Start agents in pull mode (no listening port unless asked); all stopped afterwards."""
    started: list[RunningAgent] = []

    def start(device: str, *args: str, url: str | None = None, password: str | None = None,
              listen: bool = False, token: str | None = None) -> RunningAgent:  # fmt: skip
        folder = tmp_path / f"{device}-{len(started)}"
        folder.mkdir()
        port = RegistryRef.parse(url).port if url else None
        creds = oci_registry.credentials_file(folder / "creds.json", password, port)
        agent = start_agent(
            folder, "--pull", url or oci_registry.url, "--device-name", device,
            "--pull-interval", "0.2s", "--registry-credentials", str(creds), *args,
            token=token, listen=listen,
        )  # fmt: skip
        started.append(agent)
        return agent

    yield start
    for agent in started:
        if agent.process.poll() is None:
            agent.process.kill()
            agent.process.wait(timeout=15)


def publish(
    fleet: FleetRegistry, device: str, model: Path, version: str, plan: RunPlan = PLAN
) -> Published:
    published = fleet.publish_artifact(model, plan, "digits", version)
    fleet.set_desired(device, [fs.DesiredModel("digits", version, published.artifact,
                                               plan.precision)])  # fmt: skip
    return published


def settled(fleet: FleetRegistry, device: str, timeout: float = 60.0) -> DeviceView:
    """The device's view once its status answers the current desired state."""
    deadline = time.monotonic() + timeout
    while True:
        view = fleet.view(device)
        if view.state in ("converged", "failed") or time.monotonic() > deadline:
            return view
        time.sleep(0.1)


def active(agent: RunningAgent) -> tuple[str, str]:
    """(version, sha256) the agent's store has active for digits."""
    manifest = json.loads((agent.store / "manifest.json").read_text())
    entry = manifest["models"]["digits"]
    version = next(v for v in entry["versions"] if v["version"] == entry["active"])
    return entry["active"], version["sha256"]


def status_of(view: DeviceView) -> fs.Status:
    assert view.status is not None, view
    return view.status


def local_status(agent: RunningAgent) -> dict[str, Any]:
    return json.loads((agent.store / STATUS_FILE).read_text())


def test_pull_converges_then_follows_a_new_version_and_a_rollback(
    fleet: FleetRegistry, pull_agent, models: dict[str, Path]
) -> None:
    one = publish(fleet, "conv", models["v1"], "v1")
    agent = pull_agent("conv")
    assert agent.address == "pull"  # no port: the board only dials out
    view = settled(fleet, "conv")
    assert view.state == "converged", view
    assert active(agent) == ("v1", one.model_digest.split(":")[1])
    assert (agent.store / "blobs" / one.model_digest.split(":")[1]).is_file()
    caps = view.capabilities()
    assert caps is not None and caps.arch  # what the board said of itself, planned from
    two = publish(fleet, "conv", models["v2"], "v2")
    assert settled(fleet, "conv").state == "converged"
    assert active(agent) == ("v2", two.model_digest.split(":")[1])
    desired, _ = fleet.desired("conv")
    assert desired is not None and desired.models[0].previous == one.artifact
    from edgeopt.host.workflows.publish import rollback_desired

    back = rollback_desired(fleet, "conv", "digits")
    assert back is not None
    assert (back.version, back.artifact) == ("v1", one.artifact)
    assert settled(fleet, "conv").state == "converged"
    assert active(agent)[0] == "v1"
    assert "listening on" not in agent.output()


def _corrupt(registry: OciRegistry, digest: str) -> None:
    hexa = digest.split(":")[1]
    data = registry.folder / "data/docker/registry/v2/blobs/sha256" / hexa[:2] / hexa / "data"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))


def test_a_blob_whose_bytes_do_not_match_its_digest_is_refused(
    fleet: FleetRegistry, pull_agent, models: dict[str, Path], oci_registry: OciRegistry,
    tmp_path: Path,
) -> None:  # fmt: skip
    one = publish(fleet, "corrupt", models["v1"], "v1")
    agent = pull_agent("corrupt")
    assert settled(fleet, "corrupt").state == "converged"
    own = onnx.load(str(models["v1"]))
    own.doc_string = "bytes of this test's own, corrupted in the registry below"
    onnx.save(own, str(tmp_path / "own.onnx"))
    bad = fleet.publish_artifact(tmp_path / "own.onnx", PLAN, "digits", "v2")
    _corrupt(oci_registry, bad.model_digest)  # the registry's own storage, flipped on disk
    fleet.set_desired("corrupt", [fs.DesiredModel("digits", "v2", bad.artifact, "fp32")])
    view = settled(fleet, "corrupt")
    assert view.state == "failed"
    (model,) = status_of(view).models
    assert model.state == "refused" and "digest mismatch" in model.error
    assert "v1 stays active" in model.error
    assert active(agent) == ("v1", one.model_digest.split(":")[1])
    hexa = bad.model_digest.split(":")[1]
    assert not (agent.store / "blobs" / hexa).exists()
    assert not (agent.store / "uploads" / f"{hexa}.part").exists()


def test_an_artifact_that_is_not_there_leaves_the_active_version_serving(
    fleet: FleetRegistry, pull_agent, models: dict[str, Path]
) -> None:
    publish(fleet, "missing", models["v1"], "v1")
    agent = pull_agent("missing")
    assert settled(fleet, "missing").state == "converged"
    nowhere = "sha256:" + "ab" * 32
    fleet.set_desired("missing", [fs.DesiredModel("digits", "v9", nowhere, "fp32")])
    view = settled(fleet, "missing")
    (model,) = status_of(view).models
    assert (model.state, model.version, model.wanted) == ("missing", "v1", "v9")
    assert "is not in the registry" in model.error and "MANIFEST_UNKNOWN" in model.error
    assert active(agent)[0] == "v1"


def test_a_plan_the_board_cannot_run_is_refused_before_any_download(
    fleet: FleetRegistry, pull_agent, models: dict[str, Path]
) -> None:
    gpu = RunPlan(precision="fp16", execution_provider="CUDAExecutionProvider")
    published = publish(fleet, "nogpu", models["v2"], "v1", gpu)
    agent = pull_agent("nogpu")
    view = settled(fleet, "nogpu")
    (model,) = status_of(view).models
    assert model.state == "refused"
    assert "CUDAExecutionProvider" in model.error and "does not have" in model.error
    assert not (agent.store / "blobs" / published.model_digest.split(":")[1]).exists()


def test_a_desired_state_for_another_device_is_refused(
    fleet: FleetRegistry, pull_agent, models: dict[str, Path]
) -> None:
    published = fleet.publish_artifact(models["v1"], PLAN, "digits", "v1")
    state = fs.Desired("elsewhere", 1, (fs.DesiredModel("digits", "v1", published.artifact),))
    digest, size, _ = fleet.registry.push_blob(state.to_bytes())
    manifest = fs.document_manifest(fs.DESIRED_TYPE, fs.Descriptor(fs.DESIRED_TYPE, digest, size))
    fleet.registry.put_manifest(fs.desired_tag("stray"), manifest)
    agent = pull_agent("stray")
    view = settled(fleet, "stray")
    assert view.state == "failed"
    assert "is for device 'elsewhere', not this one" in status_of(view).error
    assert not (agent.store / "blobs").exists() or not any((agent.store / "blobs").iterdir())


def test_wrong_credentials_say_so_locally_and_do_not_retry_in_a_storm(
    fleet: FleetRegistry, pull_agent, models: dict[str, Path]
) -> None:
    publish(fleet, "badlogin", models["v1"], "v1")
    agent = pull_agent("badlogin", password="not-the-password")
    deadline = time.monotonic() + 20
    while not (agent.store / STATUS_FILE).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2.0)  # ten poll intervals
    status = local_status(agent)
    assert "refused the credentials for 'fleet'" in status["error"]
    assert status["timings"]["requests"] <= 2  # the challenge, then one try with the login
    assert status["timings"]["next_poll_s"] >= 900  # waits the longest back-off
    assert agent.process.poll() is None
    assert fleet.view("badlogin").status is None  # nothing reached the registry


class _Failing(http.server.BaseHTTPRequestHandler):
    """A registry that answers every request with one status (503 or 429)."""

    answer = 503
    count = 0

    def _fail(self) -> None:
        type(self).count += 1
        self.send_response(self.answer)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = do_PUT = do_POST = _fail

    def log_message(self, *_: object) -> None:
        pass


@pytest.mark.parametrize("answer", [503, 429])
def test_a_failing_registry_is_backed_off_with_jitter(pull_agent, answer: int) -> None:
    handler: type[_Failing] = type("Failing", (_Failing,), {"answer": answer, "count": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        agent = pull_agent("flaky", url=f"oci+http://127.0.0.1:{server.server_port}/edgeopt/fleet")
        time.sleep(4.0)  # 20 poll intervals of 0.2 s
        status = local_status(agent)
        assert str(answer) in status["error"]
        # Exponential back-off from 0.2 s with full jitter: a handful of tries in 4 s, not 20.
        assert 1 <= handler.count <= 8
        assert agent.process.poll() is None
    finally:
        server.shutdown()
        server.server_close()


def test_serving_goes_on_while_the_registry_is_down(
    fleet: FleetRegistry, pull_agent, models: dict[str, Path], oci_registry: OciRegistry,
    digits,
) -> None:  # fmt: skip
    from edgeopt.host.config.inventory import Device
    from edgeopt.host.transport.client import ClientConfig
    from edgeopt.host.transport.fanout import open_client

    publish(fleet, "down", models["v1"], "v1")
    agent = pull_agent("down", listen=True, token="a-token-for-the-test")
    assert settled(fleet, "down").state == "converged"
    oci_registry.stop()
    try:
        time.sleep(1.0)
        sample = np.load(digits.validation)
        feed = {k: sample[k][:1] for k in sample.files if k != "labels"}

        async def infer() -> str:
            device = Device("down", agent.address, token_file=agent.token_file)
            async with open_client(device, ClientConfig()) as client:
                _, reply = await client.infer("digits", feed)
                return reply.version

        import asyncio

        assert asyncio.run(infer()) == "v1"
        assert "cannot reach" in local_status(agent)["error"]
    finally:
        oci_registry.start()
    publish(fleet, "down", models["v2"], "v2")
    view = settled(fleet, "down")
    assert view.state == "converged", view
    assert active(agent)[0] == "v2"


def test_a_cut_download_resumes_with_a_range_request(
    fleet: FleetRegistry, pull_agent, models: dict[str, Path], oci_registry: OciRegistry
) -> None:
    published = publish(fleet, "cut", models["v1"], "v1")
    link = CuttingLink(oci_registry.port, [published.size // 3, published.size // 2])
    try:
        agent = pull_agent("cut", url=f"oci+http://127.0.0.1:{link.port}/edgeopt/fleet")
        view = settled(fleet, "cut")
        assert view.state == "converged", view
        assert link.cut_done == 2
        assert active(agent)[1] == published.model_digest.split(":")[1]
        # Each cut costs at most the chunk in flight and the headers, never a restart.
        assert link.downloaded < published.size + 2 * (64 << 10) + 64 * 1024
    finally:
        link.close()


def test_the_digest_from_the_head_pins_what_is_applied(
    fleet: FleetRegistry, models: dict[str, Path], oci_registry: OciRegistry, tmp_path: Path
) -> None:
    """A tag rewritten between the HEAD and the fetch changes nothing this poll applies."""
    publish(fleet, "pinned", models["v1"], "v1")
    ref = RegistryRef.parse(oci_registry.url)
    creds = Credentials(oci_registry.user, oci_registry.password)
    store = Models(tmp_path / "store")
    puller = Puller(store, PullConfig(ref, "pinned", credentials=creds), lambda: {}, "test")
    try:
        first = puller.registry.manifest_digest(fs.desired_tag("pinned"))
        publish(fleet, "pinned", models["v2"], "v2")  # the tag moves on
        assert first is not None and puller.registry.manifest_digest(
            fs.desired_tag("pinned")) != first  # fmt: skip
        puller._apply(first)
        assert store.store.entries()["digits"].active == "v1"
        assert puller.applied == first
        puller.poll()  # the next poll sees the new digest
        assert store.store.entries()["digits"].active == "v2"
    finally:
        puller.registry.close()
        store.close()


@pytest.fixture(scope="module")
def tls_registry(fleet_pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OciRegistry]:
    """The registry serving TLS with a certificate the fleet CA signed (127.0.0.1)."""
    from tests import registry

    reason = registry.unavailable_reason()
    if reason:
        pytest.skip(reason)
    running = OciRegistry(tmp_path_factory.mktemp("tls-registry"), cert=fleet_pki.server_cert,
                          key=fleet_pki.server_key, ca=fleet_pki.ca).start()  # fmt: skip
    yield running
    running.stop()


def test_pull_over_tls_checks_the_registry_against_its_ca(
    tls_registry: OciRegistry, fleet_pki, models: dict[str, Path], tmp_path: Path
) -> None:
    creds = tls_registry.credentials_file(tmp_path / "creds.json")
    fleet = registry_for(tls_registry.url, creds, fleet_pki.ca)
    assert tls_registry.url.startswith("oci://")
    publish(fleet, "tls", models["v1"], "v1")
    trusting = start_agent(
        tmp_path / "trusting", "--pull", tls_registry.url, "--device-name", "tls",
        "--pull-interval", "0.2s", "--registry-credentials", str(creds),
        "--registry-ca", str(fleet_pki.ca), token=None, listen=False,
    )  # fmt: skip
    stranger = start_agent(
        tmp_path / "stranger", "--pull", tls_registry.url, "--device-name", "tls-noca",
        "--pull-interval", "0.2s", "--registry-credentials", str(creds),
        token=None, listen=False,
    )  # fmt: skip
    try:
        assert settled(fleet, "tls").state == "converged"
        deadline = time.monotonic() + 20
        while not (stranger.store / STATUS_FILE).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        error = local_status(stranger)["error"]
        assert "TLS with 127.0.0.1" in error and "CERTIFICATE_VERIFY_FAILED" in error
    finally:
        trusting.stop()
        stranger.stop()
        fleet.close()
