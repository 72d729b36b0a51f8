"""The model RPCs of a real agent process: push, resume, store limits, activation, rollback,
delete, infer, crashes of the runner and of the agent itself.

Each bad input asserts the status code, the message, and what is on disk afterwards; after each,
the previously active model still answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from edgeopt.host.errors import AlreadyExists, InvalidRequest, NotFound, ResourceExhausted
from edgeopt.host.transport.client import AgentClient, file_digest, to_tensors
from edgeopt.proto import auth
from edgeopt.proto.v1 import agent_pb2, agent_pb2_grpc
from tests.conftest import RunningAgent, start_agent
from tests.models import DigitsModel, matmul_chain


def stub(agent: RunningAgent) -> tuple[grpc.Channel, agent_pb2_grpc.AgentStub, tuple[Any, ...]]:
    channel = grpc.insecure_channel(agent.address)
    return channel, agent_pb2_grpc.AgentStub(channel), (auth.bearer(agent.token or ""),)


def said(exc: BaseException) -> str:
    """An AgentError's message without the device prefix and the status suffix it carries."""
    text = str(exc).removeprefix("test: ")
    status = getattr(exc, "status", None)
    return text.removesuffix(f" ({status})") if status else text


def run(coro):
    return asyncio.run(coro)


def client(agent: RunningAgent) -> AgentClient:
    return AgentClient(agent.address, token=agent.token, device="test")


async def _push_activate(agent: RunningAgent, path: Path, name: str = "digits", **kw):
    async with client(agent) as c:
        pushed = await c.push(path, name, **kw)
        activated = await c.activate(name, pushed.version)
        return pushed, activated


def digits_feed(digits: DigitsModel, n: int = 3) -> dict[str, np.ndarray]:
    data = np.load(digits.validation)
    return {"image": data["image"][:n].astype(np.float32)}


def expected(path: Path, feed: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, feed)[0])


def infer(agent: RunningAgent, name: str, feed: dict[str, np.ndarray]) -> np.ndarray:
    async def go() -> np.ndarray:
        async with client(agent) as c:
            outputs, _ = await c.infer(name, feed)
            return next(iter(outputs.values()))

    return run(go())


def store_files(agent: RunningAgent) -> dict[str, list[str]]:
    return {
        sub: sorted(p.name for p in (agent.store / sub).iterdir()) for sub in ("blobs", "uploads")
    }


def raw_push(
    agent: RunningAgent, header: agent_pb2.PushHeader, chunks: list[bytes]
) -> agent_pb2.PushResult:
    channel, s, md = stub(agent)
    with channel:
        requests = [agent_pb2.PushRequest(header=header)]
        requests += [agent_pb2.PushRequest(chunk=c) for c in chunks]
        return s.PushModel(iter(requests), metadata=md, timeout=60)


def test_push_activate_infer_rollback_delete(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel, tmp_path: Path
) -> None:
    agent = agent_factory()
    pushed, activated = run(_push_activate(agent, digits.onnx))
    assert pushed.version == "v1" and pushed.bytes_received == digits.onnx.stat().st_size
    assert activated.previous_version == "" and activated.memory_bytes > 0
    assert [i.name for i in activated.inputs] == ["image"]
    feed = digits_feed(digits)
    np.testing.assert_allclose(infer(agent, "digits", feed), expected(digits.onnx, feed),
                               rtol=1e-5, atol=1e-5)  # fmt: skip

    # A second version, then back: the first answers again.
    scaled = tmp_path / "v2.onnx"
    model = onnx.load(str(digits.onnx))
    model.doc_string = "second version"
    onnx.save(model, str(scaled))
    pushed2, activated2 = run(_push_activate(agent, scaled))
    assert pushed2.version == "v2" and activated2.previous_version == "v1"

    async def rollback_and_list() -> tuple[agent_pb2.ActivateResult, agent_pb2.ModelList]:
        async with client(agent) as c:
            return await c.rollback("digits"), await c.list_models()

    back, listing = run(rollback_and_list())
    assert back.version == "v1" and back.previous_version == "v2"
    (info,) = listing.models
    assert info.active_version == "v1" and info.loaded and info.memory_bytes > 0
    assert [(v.version, v.active) for v in info.versions] == [("v1", True), ("v2", False)]
    assert listing.agent_rss_bytes > 0 and listing.runner_rss_bytes > listing.agent_rss_bytes

    async def delete(version: str, force: bool = False) -> agent_pb2.DeleteResult:
        async with client(agent) as c:
            return await c.delete("digits", version, force)

    removed = run(delete("v2"))
    assert list(removed.versions_removed) == ["v2"] and removed.bytes_freed > 0
    with pytest.raises(InvalidRequest) as refused:
        run(delete("v1"))
    assert refused.value.status == "FAILED_PRECONDITION"
    assert "digits v1 is the active version; activate another first, or pass force" in said(
        refused.value
    )
    np.testing.assert_allclose(infer(agent, "digits", feed), expected(digits.onnx, feed),
                               rtol=1e-5, atol=1e-5)  # fmt: skip
    assert list(run(delete("v1", force=True)).versions_removed) == ["v1"]
    assert store_files(agent) == {"blobs": [], "uploads": []}


def test_pushing_an_artifact_the_agent_has_sends_nothing(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel
) -> None:
    agent = agent_factory()
    run(_push_activate(agent, digits.onnx))

    async def again() -> agent_pb2.PushResult:
        async with client(agent) as c:
            return await c.push(digits.onnx, "digits-copy")

    second = run(again())
    assert second.already_present and second.bytes_received == 0
    assert len(store_files(agent)["blobs"]) == 1


def test_digest_mismatch_is_data_loss_and_stores_nothing(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel
) -> None:
    agent = agent_factory()
    data = digits.onnx.read_bytes()
    header = agent_pb2.PushHeader(name="m", sha256="0" * 64, size=len(data))
    with pytest.raises(grpc.RpcError) as caught:
        raw_push(agent, header, [data])
    assert caught.value.code() == grpc.StatusCode.DATA_LOSS
    assert str(caught.value.details()).startswith(
        f"digest mismatch: the bytes received hash to {hashlib.sha256(data).hexdigest()}, "
        f"the header said {'0' * 64}; nothing was stored"
    )
    assert store_files(agent) == {"blobs": [], "uploads": []}
    assert not (agent.store / "manifest.json").exists()


def test_chunk_past_the_declared_size_is_refused_and_dropped(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel
) -> None:
    agent = agent_factory()
    data = digits.onnx.read_bytes()
    header = agent_pb2.PushHeader(name="m", sha256=hashlib.sha256(data).hexdigest(), size=100)
    with pytest.raises(grpc.RpcError) as caught:
        raw_push(agent, header, [data[:64], data[64:128]])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == (
        "chunk past the declared size: 128 bytes sent for an artifact of 100; the upload was "
        "dropped"
    )
    assert store_files(agent) == {"blobs": [], "uploads": []}


def test_truncated_stream_is_kept_and_resumes(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel
) -> None:
    agent = agent_factory()
    data = digits.onnx.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    header = agent_pb2.PushHeader(name="m", sha256=sha, size=len(data))
    with pytest.raises(grpc.RpcError) as caught:
        raw_push(agent, header, [data[:50000]])
    assert caught.value.code() == grpc.StatusCode.DATA_LOSS
    assert caught.value.details() == (
        f"upload incomplete: 50000 of {len(data)} bytes arrived; resume from offset 50000 "
        "(GetUploadStatus)"
    )
    assert store_files(agent) == {"blobs": [], "uploads": [f"{sha}.part"]}

    async def resume() -> tuple[agent_pb2.UploadStatus, agent_pb2.PushResult]:
        async with client(agent) as c:
            return await c.upload_status(sha), await c.push(digits.onnx, "m")

    status, pushed = run(resume())
    assert not status.complete and status.offset == 50000
    assert pushed.bytes_received == len(data) - 50000  # only the rest went over the wire
    assert store_files(agent) == {"blobs": [sha], "uploads": []}


def test_a_push_over_the_quota_is_resource_exhausted(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel
) -> None:
    agent = agent_factory("--max-store-bytes", "300000")
    run(_push_activate(agent, digits.onnx))  # ~240 kB: fits
    big = agent.store.parent / "big.bin"
    big.write_bytes(os.urandom(100_000))

    async def push_big() -> None:
        async with client(agent) as c:
            await c.push(big, "big")

    with pytest.raises(ResourceExhausted) as caught:
        run(push_big())
    used = digits.onnx.stat().st_size
    assert said(caught.value) == (
        f"PushModel: store quota exceeded: {used + 100_000} bytes needed of 300000 allowed "
        f"({used} in use); delete versions (DeleteModel) or raise --max-store-bytes"
    )
    assert store_files(agent)["uploads"] == []
    feed = digits_feed(digits)
    np.testing.assert_allclose(infer(agent, "digits", feed), expected(digits.onnx, feed),
                               rtol=1e-5, atol=1e-5)  # fmt: skip


@pytest.mark.parametrize("name", ["../../etc/x", "", "a\x00b", "a/b", ".hidden"])
def test_names_that_could_escape_the_store_are_refused(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel, name: str
) -> None:
    agent = agent_factory()
    data = digits.onnx.read_bytes()
    # With a version label (a name-less push stores a bare artifact for benchmarks only).
    header = agent_pb2.PushHeader(name=name, version="v1", size=len(data),
                                  sha256=hashlib.sha256(data).hexdigest())  # fmt: skip
    with pytest.raises(grpc.RpcError) as caught:
        raw_push(agent, header, [data])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == (
        f"model name {name!r} is not allowed: use 1 to 128 letters, digits, '.', '_' or '-', "
        "starting with a letter or digit (no '/', no NUL)"
    )
    assert store_files(agent) == {"blobs": [], "uploads": []}
    assert not (agent.store.parent / "etc").exists()


def test_a_file_that_is_not_onnx_is_not_activated(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel, tmp_path: Path
) -> None:
    agent = agent_factory()
    run(_push_activate(agent, digits.onnx))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a model" * 100)

    async def push_junk() -> None:
        async with client(agent) as c:
            pushed = await c.push(junk, "digits")
            await c.activate("digits", pushed.version)

    with pytest.raises(InvalidRequest) as caught:
        run(push_junk())
    assert caught.value.status == "FAILED_PRECONDITION"
    message = said(caught.value)
    assert message.startswith("ActivateModel: digits v2 was not activated: ONNX Runtime cannot "
                              "load it: ")  # fmt: skip
    assert message.endswith("; digits v1 stays active")
    feed = digits_feed(digits)
    np.testing.assert_allclose(infer(agent, "digits", feed), expected(digits.onnx, feed),
                               rtol=1e-5, atol=1e-5)  # fmt: skip
    manifest = json.loads((agent.store / "manifest.json").read_text())
    assert manifest["models"]["digits"]["active"] == "v1"


@pytest.mark.parametrize(
    ("feed", "message"),
    [
        ({"img": np.zeros((1, 1, 8, 8), np.float32)},
         "inputs do not match the model's ['image']: missing ['image'], unexpected ['img']"),
        ({"image": np.zeros((1, 1, 8, 8), np.float64)},
         "input 'image' is float64, the model wants float32"),
        ({"image": np.zeros((1, 8, 8), np.float32)},
         "input 'image' has shape [1, 8, 8], the model wants ['?', 1, 8, 8]"),
        ({"image": np.zeros((1, 1, 9, 8), np.float32)},
         "input 'image' has shape [1, 1, 9, 8], the model wants ['?', 1, 8, 8]"),
    ],
)  # fmt: skip
def test_infer_checks_names_dtypes_and_shapes(
    shared_digits_agent: RunningAgent, feed: dict[str, np.ndarray], message: str
) -> None:
    channel, s, md = stub(shared_digits_agent)
    with channel, pytest.raises(grpc.RpcError) as caught:
        s.Infer(agent_pb2.InferRequest(name="digits", inputs=to_tensors(feed)), metadata=md,
                timeout=60)  # fmt: skip
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == message


@pytest.fixture(scope="module")
def shared_digits_agent(
    tmp_path_factory: pytest.TempPathFactory, digits: DigitsModel
) -> Iterator[RunningAgent]:
    agent = start_agent(tmp_path_factory.mktemp("digits-agent"))
    run(_push_activate(agent, digits.onnx))
    yield agent
    agent.stop()


def runner_pids(parent: int) -> set[int]:
    """Pids of the runner children (processes running edgeopt.agent.runner) of `parent`."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and b"edgeopt.agent.runner" in cmdline:
            found.add(int(proc.name))
    return found


def runner_pid(agent: RunningAgent) -> int:
    """The agent's runner child (the process running edgeopt.agent.runner)."""
    found = runner_pids(agent.process.pid)
    if not found:
        raise AssertionError("no runner process")
    return min(found)


def slow_model(path: Path) -> Path:
    """A real model that takes about a second per inference: 40 chained 1024x1024 MatMuls."""
    return matmul_chain(path, np.eye(1024), 40)


def test_a_runner_that_dies_fails_its_request_and_the_agent_serves_on(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel, tmp_path: Path
) -> None:
    """A real SIGSEGV of the runner process while it runs a model (sent from outside: no model
    that crashes ONNX Runtime on purpose is at hand), then a quiet death between requests."""
    agent = agent_factory()
    run(_push_activate(agent, digits.onnx))
    run(_push_activate(agent, slow_model(tmp_path / "slow.onnx"), name="slow"))
    pid = runner_pid(agent)
    errors: list[BaseException] = []

    def call_slow() -> None:
        try:
            infer(agent, "slow", {"x": np.ones((1024, 1024), np.float32)})
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=call_slow)
    worker.start()
    cpu = Path(f"/proc/{pid}/stat")
    start = sum(int(x) for x in cpu.read_text().rsplit(")", 1)[1].split()[11:13])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until the runner is busy with the request
        used = sum(int(x) for x in cpu.read_text().rsplit(")", 1)[1].split()[11:13])
        if used - start > 10:
            break
        time.sleep(0.02)
    os.kill(pid, signal.SIGSEGV)
    worker.join(60)
    (error,) = errors
    assert isinstance(error, InvalidRequest) and error.status == "FAILED_PRECONDITION"
    assert said(error) == (
        "Infer: ONNX Runtime crashed while running slow v1: the runner process died "
        "(signal SIGSEGV)"
    )
    assert agent.process.poll() is None
    feed = digits_feed(digits)
    np.testing.assert_allclose(infer(agent, "digits", feed), expected(digits.onnx, feed),
                               rtol=1e-5, atol=1e-5)  # fmt: skip
    # Killed between requests: the next request gets a new runner with the models loaded.
    new_pid = runner_pid(agent)
    assert new_pid != pid
    os.kill(new_pid, signal.SIGKILL)
    time.sleep(0.2)
    np.testing.assert_allclose(infer(agent, "digits", feed), expected(digits.onnx, feed),
                               rtol=1e-5, atol=1e-5)  # fmt: skip


def test_sigkill_mid_upload_then_restart_keeps_the_store_consistent(
    tmp_path: Path, digits: DigitsModel
) -> None:
    agent = start_agent(tmp_path / "a")
    try:
        run(_push_activate(agent, digits.onnx))
        data = os.urandom(3 << 20)
        big = tmp_path / "big.bin"
        big.write_bytes(data)
        sha = file_digest(big)
        sent = threading.Event()

        def requests() -> Iterator[agent_pb2.PushRequest]:
            yield agent_pb2.PushRequest(
                header=agent_pb2.PushHeader(name="big", sha256=sha, size=len(data))
            )
            yield agent_pb2.PushRequest(chunk=data[: 1 << 20])
            sent.set()
            time.sleep(30)  # the agent dies meanwhile

        channel, s, md = stub(agent)
        failure: list[BaseException] = []

        def push() -> None:
            try:
                s.PushModel(requests(), metadata=md, timeout=60)
            except grpc.RpcError as exc:
                failure.append(exc)

        worker = threading.Thread(target=push, daemon=True)
        worker.start()
        assert sent.wait(30)
        part = agent.store / "uploads" / f"{sha}.part"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not part.exists() or part.stat().st_size == 0):
            time.sleep(0.02)
        agent.process.kill()
        agent.process.wait()
        channel.close()
    finally:
        if agent.process.poll() is None:
            agent.process.kill()
    # Restarted on the same store: what was active is active and answers; the upload resumes.
    (tmp_path / "a" / "ready").unlink()
    again = start_agent(tmp_path / "a")
    try:
        feed = digits_feed(digits)
        np.testing.assert_allclose(infer(again, "digits", feed), expected(digits.onnx, feed),
                                   rtol=1e-5, atol=1e-5)  # fmt: skip

        async def resume() -> tuple[agent_pb2.UploadStatus, agent_pb2.PushResult,
                                    agent_pb2.ModelList]:  # fmt: skip
            async with client(again) as c:
                status = await c.upload_status(sha)
                return status, await c.push(big, "big"), await c.list_models()

        status, pushed, listing = run(resume())
        assert not status.complete and 0 < status.offset <= 1 << 20
        assert pushed.bytes_received == len(data) - status.offset
        assert [m.name for m in listing.models] == ["big", "digits"]
        assert (again.store / "blobs" / sha).read_bytes() == data
    finally:
        again.stop()


def test_two_hosts_pushing_one_name_at_once(
    agent_factory: Callable[..., RunningAgent], tmp_path: Path
) -> None:
    agent = agent_factory()
    files = []
    for i in range(2):
        path = tmp_path / f"f{i}.bin"
        path.write_bytes(os.urandom(2 << 20))
        files.append(path)

    async def both() -> list[agent_pb2.PushResult]:
        async with client(agent) as a, client(agent) as b:
            return list(await asyncio.gather(a.push(files[0], "m"), b.push(files[1], "m")))

    results = run(both())
    assert sorted(r.version for r in results) == ["v1", "v2"]
    manifest = json.loads((agent.store / "manifest.json").read_text())
    stored = {v["sha256"] for v in manifest["models"]["m"]["versions"]}
    assert stored == {file_digest(f) for f in files}


def test_active_models_are_loaded_again_after_a_restart(
    tmp_path: Path, digits: DigitsModel
) -> None:
    agent = start_agent(tmp_path / "a")
    run(_push_activate(agent, digits.onnx))
    agent.stop()
    (tmp_path / "a" / "ready").unlink()
    again = start_agent(tmp_path / "a")
    try:
        deadline = time.monotonic() + 30

        async def listing() -> agent_pb2.ModelList:
            async with client(again) as c:
                return await c.list_models()

        while time.monotonic() < deadline and not run(listing()).models[0].loaded:
            time.sleep(0.1)
        assert run(listing()).models[0].loaded
        feed = digits_feed(digits)
        np.testing.assert_allclose(infer(again, "digits", feed), expected(digits.onnx, feed),
                                   rtol=1e-5, atol=1e-5)  # fmt: skip
    finally:
        again.stop()


def test_unknown_model_is_not_found(shared_digits_agent: RunningAgent) -> None:
    with pytest.raises(NotFound) as caught:
        run(_push_activate_missing(shared_digits_agent))
    assert caught.value.status == "NOT_FOUND"
    assert said(caught.value) == "ActivateModel: no model named 'nope' (stored: digits)"


async def _push_activate_missing(agent: RunningAgent) -> None:
    async with client(agent) as c:
        await c.activate("nope")


def test_recovery_drops_stray_files_and_stale_uploads_only(tmp_path: Path) -> None:
    from edgeopt.agent.store import ModelStore

    store = ModelStore(tmp_path / "store")
    fresh = store.root / "uploads" / f"{'a' * 64}.part"
    stale = store.root / "uploads" / f"{'b' * 64}.part"
    orphan = store.root / "blobs" / ("c" * 64)
    stray = store.root / ".manifest.123.456"
    for path in (fresh, stale, orphan, stray):
        path.write_bytes(b"x")
    old = time.time() - 8 * 86400
    os.utime(stale, (old, old))
    removed = store.recover()
    assert sorted(removed) == sorted([f"uploads/{stale.name}", f"blobs/{orphan.name}", stray.name])
    assert fresh.exists() and not stale.exists() and not orphan.exists()


def test_two_pushes_at_once_cannot_both_squeeze_under_the_quota(
    agent_factory: Callable[..., RunningAgent], tmp_path: Path
) -> None:
    agent = agent_factory("--max-store-bytes", "10M")
    files = []
    for i in range(2):
        path = tmp_path / f"f{i}.bin"
        path.write_bytes(os.urandom(6 << 20))
        files.append(path)

    async def push(path: Path) -> str:
        async with client(agent) as c:
            try:
                await c.push(path, path.stem)
                return "ok"
            except ResourceExhausted as exc:
                return said(exc)

    async def both() -> list[str]:
        return list(await asyncio.gather(*(push(f) for f in files)))

    outcomes = run(both())
    assert outcomes.count("ok") == 1
    (refused,) = [o for o in outcomes if o != "ok"]
    assert refused == (
        "PushModel: store quota exceeded: 12582912 bytes needed of 10485760 allowed (6291456 in "
        "use); delete versions (DeleteModel) or raise --max-store-bytes"
    )
    listing = run(_listing(agent))
    assert listing.store_bytes <= 10 << 20
    assert len(store_files(agent)["blobs"]) == 1


async def _listing(agent: RunningAgent) -> agent_pb2.ModelList:
    async with client(agent) as c:
        return await c.list_models()


def test_a_version_label_that_names_another_artifact_is_refused_before_any_byte(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel, tmp_path: Path
) -> None:
    agent = agent_factory()

    async def push(path: Path) -> agent_pb2.PushResult:
        async with client(agent) as c:
            return await c.push(path, "m", version="v1")

    run(push(digits.onnx))
    other = tmp_path / "other.bin"
    other.write_bytes(os.urandom(1 << 20))
    with pytest.raises(AlreadyExists) as caught:
        run(push(other))
    assert said(caught.value) == (
        f"PushModel: m v1 already holds another artifact ({file_digest(digits.onnx)[:12]}); "
        "push under a new version label"
    )
    # Refused from the header: no orphan blob, no partial upload.
    assert store_files(agent) == {"blobs": [file_digest(digits.onnx)], "uploads": []}


def picky_model(path: Path) -> Path:
    """A model whose free dim must be a multiple of 96: made-up inputs (128 wide) fail it."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["r"]),
         helper.make_node("MatMul", ["r", "w"], ["y"])],
        "picky",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, "width"])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["rows", 8])],
        initializer=[numpy_helper.from_array(np.array([-1, 96], np.int64), "shape"),
                     numpy_helper.from_array(np.ones((96, 8), np.float32), "w")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_model_activated_with_real_inputs_comes_back_after_a_restart(tmp_path: Path) -> None:
    path = picky_model(tmp_path / "picky.onnx")
    sample = {"x": np.ones((1, 192), np.float32)}
    agent = start_agent(tmp_path / "a")

    async def deploy(made_up: bool) -> agent_pb2.ActivateResult:
        async with client(agent) as c:
            pushed = await c.push(path, "picky")
            return await c.activate("picky", pushed.version,
                                    smoke_inputs=None if made_up else sample)  # fmt: skip

    with pytest.raises(InvalidRequest) as caught:
        run(deploy(made_up=True))
    assert "smoke inference failed" in said(caught.value)
    assert run(deploy(made_up=False)).version == "v1"
    agent.stop()
    (tmp_path / "a" / "ready").unlink()
    again = start_agent(tmp_path / "a")
    try:
        # Loaded again without a made-up smoke inference, which this model would fail.
        np.testing.assert_allclose(infer(again, "picky", sample), np.full((2, 8), 96.0))
        assert run(_listing(again)).models[0].loaded
    finally:
        again.stop()


def test_scalars_cross_the_wire_as_scalars(tmp_path: Path) -> None:
    """A scalar input (silero's sample rate) and a scalar output keep shape [] both ways.

    The model: y = sum(x) * scale, x float32[3], scale float32[] and y float32[].
    """
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
         helper.make_node("Mul", ["s", "scale"], ["y"])],
        "scalars",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [3]),
         helper.make_tensor_value_info("scale", onnx.TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "scalars.onnx"
    onnx.save(model, str(path))
    agent = start_agent(tmp_path / "agent")
    try:
        run(_push_activate(agent, path, name="scalars"))
        feed = {"x": np.array([1.0, 2.0, 3.0], np.float32), "scale": np.array(0.5, np.float32)}
        assert [t.shape for t in to_tensors(feed)] == [[3], []]
        y = infer(agent, "scalars", feed)
        assert y.shape == () and y == np.float32(3.0)
    finally:
        agent.stop()
