"""The model store under a full disk, a quota and abandoned uploads, with a real agent process.

A full disk is real: a small tmpfs holds the agent's store, and the test fills it from outside
once the push has passed the agent's free-disk check, as another process on a board would (the
store keeps `FREE_DISK_MARGIN` free, so the agent itself never pushes a disk to ENOSPC; filling
it from outside exercises that margin as it ships, with no setting made for tests).
Each case asserts the status, the message, the manifest's bytes, the files in blobs/ and
uploads/, and that the model active before still answers.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from edgeopt.agent import cli
from edgeopt.agent.store import FREE_DISK_MARGIN, Limits, ModelStore
from edgeopt.host.transport.client import from_tensors, to_tensors
from edgeopt.proto import auth
from edgeopt.proto.v1 import agent_pb2, agent_pb2_grpc
from tests.conftest import RunningAgent, start_agent
from tests.models import matmul_chain

MiB = 1 << 20
DISK_FULL = os.strerror(errno.ENOSPC)


# --- a real agent and its calls ---------------------------------------------------------------


class Calls:
    """Plain gRPC calls to a real agent: the exact status code and details of each refusal."""

    def __init__(self, agent: RunningAgent) -> None:
        self.agent = agent
        self.channel = grpc.insecure_channel(agent.address)
        self.stub = agent_pb2_grpc.AgentStub(self.channel)
        self.md = (auth.bearer(agent.token or ""),)

    def push(self, name: str, data: bytes, version: str = "") -> agent_pb2.PushResult:
        header = agent_pb2.PushHeader(name=name, version=version, sha256=sha(data), size=len(data))
        requests = [agent_pb2.PushRequest(header=header)]
        requests += [
            agent_pb2.PushRequest(chunk=data[i : i + MiB]) for i in range(0, len(data), MiB)
        ]
        return self.stub.PushModel(iter(requests), metadata=self.md, timeout=60)

    def activate(self, name: str, version: str) -> agent_pb2.ActivateResult:
        request = agent_pb2.ActivateRequest(name=name, version=version)
        return self.stub.ActivateModel(request, metadata=self.md, timeout=60)

    def infer(self, name: str, x: np.ndarray) -> tuple[str, np.ndarray]:
        request = agent_pb2.InferRequest(name=name, inputs=to_tensors({"x": x}))
        reply = self.stub.Infer(request, metadata=self.md, timeout=60)
        return reply.version, next(iter(from_tensors(reply.outputs).values()))

    def listing(self) -> dict[str, tuple[str, list[str]]]:
        """name -> (active version, stored versions)."""
        reply = self.stub.ListModels(agent_pb2.ListModelsRequest(), metadata=self.md, timeout=30)
        return {m.name: (m.active_version, [v.version for v in m.versions]) for m in reply.models}

    def close(self) -> None:
        self.channel.close()


class HeldPush:
    """A PushModel that sends its header and the first `first` bytes, then waits for `go()`."""

    def __init__(self, calls: Calls, name: str, data: bytes, first: int) -> None:
        self.calls, self.name, self.data, self.first = calls, name, data, first
        self.sha256 = sha(data)
        self._go = threading.Event()
        self.result: agent_pb2.PushResult | None = None
        self.error: grpc.RpcError | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _requests(self) -> Iterator[agent_pb2.PushRequest]:
        header = agent_pb2.PushHeader(name=self.name, sha256=self.sha256, size=len(self.data))
        yield agent_pb2.PushRequest(header=header)
        yield agent_pb2.PushRequest(chunk=self.data[: self.first])
        self._go.wait(120)
        for i in range(self.first, len(self.data), MiB):
            yield agent_pb2.PushRequest(chunk=self.data[i : i + MiB])

    def _run(self) -> None:
        try:
            self.result = self.calls.stub.PushModel(
                self._requests(), metadata=self.calls.md, timeout=120
            )
        except grpc.RpcError as exc:
            self.error = exc

    def wait_held(self, store: Path) -> None:
        """Until the agent has the first bytes on disk (it passed its checks)."""
        part = store / "uploads" / f"{self.sha256}.part"
        deadline = time.monotonic() + 30
        while not (part.is_file() and part.stat().st_size == self.first):
            assert time.monotonic() < deadline, "the agent never wrote the first chunk"
            time.sleep(0.01)

    def go(self) -> None:
        """Send the rest and wait for the answer."""
        self._go.set()
        self._thread.join(120)
        assert not self._thread.is_alive()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files(store: Path) -> dict[str, list[str]]:
    """What blobs/ and uploads/ hold, and the stray files at the store's top."""
    listing = {sub: sorted(p.name for p in (store / sub).iterdir()) for sub in ("blobs", "uploads")}
    listing["top"] = sorted(p.name for p in store.iterdir() if p.name not in ("blobs", "uploads"))
    return listing


def model_bytes(tmp: Path, seed: int, n: int = 32) -> tuple[bytes, np.ndarray]:
    """A real ONNX model (x @ w @ w) and its weight; a seed makes a distinct artifact."""
    weight = np.random.default_rng(seed).standard_normal((n, n)).astype(np.float32) / n
    path = matmul_chain(tmp / f"m{seed}.onnx", weight, depth=2)
    return path.read_bytes(), weight


# --- a small real disk ------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs just over the store's free-disk margin, or a skip saying why it cannot be made."""
    disk = tmp_path / "disk"
    disk.mkdir()
    size = FREE_DISK_MARGIN + 16 * MiB
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs for a real full disk (mount -t tmpfs needs root): "
            f"{mounted.stderr.strip()}"
        )
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


@pytest.fixture
def disk_agent(small_disk: Path, tmp_path: Path) -> Iterator[RunningAgent]:
    """A real agent whose store is on the small tmpfs (its log and token are not)."""
    store = small_disk / "store"
    agent = start_agent(tmp_path / "agent", "--store", str(store))
    yield dataclasses.replace(agent, store=store)
    if agent.process.poll() is None:
        agent.process.kill()
        agent.process.wait(timeout=15)


def fill(disk: Path) -> Path:
    """Write a file until the tmpfs answers ENOSPC; returns it."""
    filler = disk / "filler"
    with filler.open("ab", buffering=0) as f:
        for block in (MiB, 4096):
            try:
                while True:
                    f.write(bytes(block))
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    assert os.statvfs(disk).f_bavail == 0
    return filler


def free_bytes(disk: Path) -> int:
    st = os.statvfs(disk)
    return st.f_bavail * st.f_frsize


# --- 1: the free-disk check counts the other uploads in flight ---------------------------------


def test_concurrent_pushes_cannot_together_overrun_the_free_disk(
    disk_agent: RunningAgent, small_disk: Path
) -> None:
    calls = Calls(disk_agent)
    try:
        # Each fits the free disk with the margin kept; both together do not.
        first, second = os.urandom(9 * MiB), os.urandom(9 * MiB)
        held = HeldPush(calls, "first", first, MiB)
        held.wait_held(disk_agent.store)
        free = free_bytes(small_disk)
        assert free - len(second) >= FREE_DISK_MARGIN > free - len(second) - (len(first) - MiB)
        with pytest.raises(grpc.RpcError) as refused:
            calls.push("second", second)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refused.value.details() == (
            f"not enough free disk for {9 * MiB} more bytes: {free} free, {8 * MiB} still to "
            f"come for other uploads in flight, and the store keeps {FREE_DISK_MARGIN} free for "
            "the board"
        )
        held.go()
        assert held.error is None and held.result is not None
        assert held.result.version == "v1" and held.result.bytes_received == len(first)
        assert files(disk_agent.store)["blobs"] == [sha(first)]
        assert files(disk_agent.store)["uploads"] == []
        assert free_bytes(small_disk) >= FREE_DISK_MARGIN
    finally:
        calls.close()


# --- 2: a full disk is RESOURCE_EXHAUSTED and nothing is half-written ------------------------


def _active_model(calls: Calls, tmp: Path) -> tuple[np.ndarray, np.ndarray]:
    """Push and activate m v1; returns (input, expected output)."""
    data, weight = model_bytes(tmp, seed=1)
    assert calls.push("m", data).version == "v1"
    calls.activate("m", "v1")
    x = np.random.default_rng(7).standard_normal((32, 32)).astype(np.float32)
    return x, x @ weight @ weight


def test_a_disk_that_fills_mid_push_refuses_it_and_removes_the_partial_upload(
    disk_agent: RunningAgent, small_disk: Path, tmp_path: Path
) -> None:
    calls = Calls(disk_agent)
    try:
        x, want = _active_model(calls, tmp_path)
        manifest = (disk_agent.store / "manifest.json").read_bytes()
        before = files(disk_agent.store)
        big = os.urandom(8 * MiB)
        held = HeldPush(calls, "big", big, MiB)
        held.wait_held(disk_agent.store)
        filler = fill(small_disk)  # another process on the board takes the rest
        held.go()
        assert held.error is not None
        assert held.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert held.error.details() == (
            f"the disk is full ({DISK_FULL}) while receiving {sha(big)}: nothing was stored, "
            "the partial upload was removed; free disk space on the board or delete versions "
            "(DeleteModel)"
        )
        assert (disk_agent.store / "manifest.json").read_bytes() == manifest
        assert files(disk_agent.store) == before
        assert calls.listing() == {"m": ("v1", ["v1"])}
        version, got = calls.infer("m", x)
        assert version == "v1"
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

        # Once the board has room again the same push goes through.
        filler.unlink()
        assert calls.push("big", big).bytes_received == len(big)
        assert (disk_agent.store / "blobs" / sha(big)).read_bytes() == big
    finally:
        calls.close()


def test_a_disk_full_at_the_manifest_write_keeps_the_old_manifest_and_active_model(
    disk_agent: RunningAgent, small_disk: Path, tmp_path: Path
) -> None:
    calls = Calls(disk_agent)
    try:
        x, want = _active_model(calls, tmp_path)
        other, _ = model_bytes(tmp_path, seed=2)
        assert calls.push("m", other).version == "v2"  # stored, not active
        manifest = (disk_agent.store / "manifest.json").read_bytes()
        before = files(disk_agent.store)

        # A push whose bytes fit the disk exactly: the blob is whole, the manifest cannot grow.
        big = os.urandom(4 * MiB)
        held = HeldPush(calls, "big", big, MiB)
        held.wait_held(disk_agent.store)
        filler = fill(small_disk)
        with filler.open("r+b") as f:
            f.truncate(filler.stat().st_size - (len(big) - MiB))
        assert free_bytes(small_disk) == len(big) - MiB
        held.go()
        assert held.error is not None
        assert held.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert held.error.details() == (
            f"the disk is full ({DISK_FULL}) while writing the manifest: nothing was stored, "
            "the models and active versions are as before; free disk space on the board or "
            "delete versions (DeleteModel)"
        )
        assert (disk_agent.store / "manifest.json").read_bytes() == manifest
        assert files(disk_agent.store) == before  # no blob of `big`, no temporary manifest
        assert calls.listing() == {"m": ("v1", ["v1", "v2"])}

        # An activation on the full disk: refused the same way, v1 stays active and answers.
        fill(small_disk)
        with pytest.raises(grpc.RpcError) as refused:
            calls.activate("m", "v2")
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refused.value.details() == (
            f"the disk is full ({DISK_FULL}) while writing the manifest: nothing was stored, "
            "the models and active versions are as before; free disk space on the board or "
            "delete versions (DeleteModel)"
        )
        assert (disk_agent.store / "manifest.json").read_bytes() == manifest
        assert files(disk_agent.store) == before
        assert calls.listing() == {"m": ("v1", ["v1", "v2"])}
        version, got = calls.infer("m", x)
        assert version == "v1"
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    finally:
        calls.close()


# --- 3: abandoned uploads expire, and make room before a push is refused ----------------------


def _abandon(calls: Calls, store: Path, data: bytes, age: float) -> Path:
    """Send the first half of `data`, end the stream (the agent keeps it), age the part."""
    header = agent_pb2.PushHeader(name="gone", sha256=sha(data), size=len(data))
    requests = [agent_pb2.PushRequest(header=header)]
    requests.append(agent_pb2.PushRequest(chunk=data[: len(data) // 2]))
    with pytest.raises(grpc.RpcError) as cut:
        calls.stub.PushModel(iter(requests), metadata=calls.md, timeout=60)
    assert cut.value.code() == grpc.StatusCode.DATA_LOSS
    part = store / "uploads" / f"{sha(data)}.part"
    assert part.stat().st_size == len(data) // 2
    when = time.time() - age
    os.utime(part, (when, when))
    return part


KiB = 1 << 10


def test_an_abandoned_upload_makes_room_oldest_first_before_the_quota_refuses(
    tmp_path: Path,
) -> None:
    agent = start_agent(tmp_path / "a", "--max-store-bytes", str(1000 * KiB))
    calls = Calls(agent)
    try:
        older = _abandon(calls, agent.store, os.urandom(400 * KiB), age=3 * 3600)
        old = _abandon(calls, agent.store, os.urandom(400 * KiB), age=2 * 3600)
        recent = _abandon(calls, agent.store, os.urandom(400 * KiB), age=60)
        assert sorted(files(agent.store)["uploads"]) == sorted(p.name for p in (older, old, recent))
        # 600 KiB held in parts; 500 KiB more needs one part gone: the oldest goes.
        first = os.urandom(500 * KiB)
        assert calls.push("first", first).bytes_received == len(first)
        assert files(agent.store)["uploads"] == sorted([old.name, recent.name])
        # 900 KiB held; 200 KiB more needs the next idle one gone; the recent one stays.
        second = os.urandom(200 * KiB)
        assert calls.push("second", second).bytes_received == len(second)
        assert files(agent.store)["uploads"] == [recent.name]
        # Only an upload untouched for less than ten minutes is left: refused, and it stays.
        third = os.urandom(400 * KiB)
        with pytest.raises(grpc.RpcError) as refused:
            calls.push("third", third)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        used = 200 * KiB + 500 * KiB + 200 * KiB
        assert refused.value.details() == (
            f"store quota exceeded: {used + len(third)} bytes needed of {1000 * KiB} allowed "
            f"({used} in use); delete versions (DeleteModel) or raise --max-store-bytes"
        )
        assert files(agent.store)["uploads"] == [recent.name]
        assert sorted(files(agent.store)["blobs"]) == sorted([sha(first), sha(second)])
    finally:
        calls.close()
        agent.stop()


def test_an_upload_in_flight_is_never_evicted_however_old(tmp_path: Path) -> None:
    agent = start_agent(tmp_path / "a", "--max-store-bytes", str(1000 * KiB))
    calls = Calls(agent)
    try:
        slow = os.urandom(600 * KiB)
        held = HeldPush(calls, "slow", slow, 300 * KiB)
        held.wait_held(agent.store)
        part = agent.store / "uploads" / f"{held.sha256}.part"
        when = time.time() - 2 * 86400  # a sender stalled for days still holds its upload
        os.utime(part, (when, when))
        other = os.urandom(500 * KiB)
        with pytest.raises(grpc.RpcError) as refused:
            calls.push("other", other)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refused.value.details() == (
            f"store quota exceeded: {1100 * KiB} bytes needed of {1000 * KiB} allowed "
            f"({600 * KiB} in use); delete versions (DeleteModel) or raise --max-store-bytes"
        )
        held.go()
        assert held.error is None and held.result is not None
        assert files(agent.store) == {"blobs": [held.sha256], "uploads": [], "top": _top(agent)}
    finally:
        calls.close()
        agent.stop()


def _top(agent: RunningAgent) -> list[str]:
    return sorted(p.name for p in agent.store.iterdir() if p.name not in ("blobs", "uploads"))


def test_recovery_drops_uploads_untouched_for_a_day_by_default(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    day_old = store.root / "uploads" / f"{'a' * 64}.part"
    hour_old = store.root / "uploads" / f"{'b' * 64}.part"
    for path, age in ((day_old, 25 * 3600), (hour_old, 3600)):
        path.write_bytes(b"x" * 100)
        os.utime(path, (time.time() - age, time.time() - age))
    assert store.recover() == [f"uploads/{day_old.name}"]
    assert [p.name for p in (store.root / "uploads").iterdir()] == [hour_old.name]


def test_an_expired_upload_is_dropped_when_a_push_asks_for_room(tmp_path: Path) -> None:
    # Expired while the agent runs (no restart): swept when the next upload asks for room,
    # whether or not that upload needs the space.
    store = ModelStore(tmp_path / "store", Limits(upload_expiry=3600))
    expired = store.root / "uploads" / f"{'a' * 64}.part"
    expired.write_bytes(b"x" * 100)
    os.utime(expired, (time.time() - 7200, time.time() - 7200))
    upload = store.begin_upload("b" * 64, 10, 0)
    upload.abort(keep=False)
    assert list((store.root / "uploads").iterdir()) == []


def test_upload_expiry_flag_sets_what_start_up_drops(tmp_path: Path) -> None:
    store = tmp_path / "a" / "store"
    (store / "uploads").mkdir(parents=True)
    kept = store / "uploads" / f"{'a' * 64}.part"
    dropped = store / "uploads" / f"{'b' * 64}.part"
    for path, age in ((kept, 20 * 60), (dropped, 40 * 60)):
        path.write_bytes(b"x" * 100)
        os.utime(path, (time.time() - age, time.time() - age))
    agent = start_agent(tmp_path / "a", "--upload-expiry", "30m", "--log-level", "WARNING")
    try:
        assert [p.name for p in (store / "uploads").iterdir()] == [kept.name]
        assert f"store recovery removed uploads/{dropped.name}" in agent.output()
    finally:
        agent.stop()


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("30m", 1800.0), ("24h", 86400.0),
                          ("7d", 604800.0), ("1.5h", 5400.0)]
)  # fmt: skip
def test_upload_expiry_durations(text: str, seconds: float) -> None:
    assert cli._duration(text) == seconds


@pytest.mark.parametrize("text", ["0", "-1h", "soon", "inf", "nan", ""])
def test_upload_expiry_refuses_what_is_not_a_positive_duration(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", f"--upload-expiry={text}"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    reason = "a duration must be positive and finite"
    if text in ("soon", ""):
        reason = "want a duration like 30m, 24h or 7d"
    assert err == f"edgeopt-agent serve: error: argument --upload-expiry: {reason}, got {text!r}"
