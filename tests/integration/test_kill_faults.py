"""Faults of a real agent process: SIGKILL at random points, and links cut mid-push.

`test_sigkill_at_random_points_leaves_a_consistent_store`: a real agent on 127.0.0.1 pushes,
activates and deletes real small models (chained MatMuls, distinct random weights) while the
test SIGKILLs it after a random delay, restarts it on the same store and checks that
- the manifest parses, and every blob it names exists with the right sha256 and size;
- nothing else is left: no temporary manifest, no blob no version names, and every partial
  upload is a prefix of the artifact it names (so it can resume), and it does resume;
- what the agent acknowledged before the kill is there, and what it had not is there or not as
  a whole (the push or activation in flight at the kill);
- the active version loads and answers Infer with the outputs of its own weights.

EDGEOPT_FAULT_KILLS sets the number of kills (20 by default, the `make test` run; more for a
soak), EDGEOPT_FAULT_SEED the random seed. When EDGEOPT_FAULT_REPORT names a file, a JSON line
{"kills": N, "consistent": M, ...} is appended to it for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import random
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from edgeopt.host.transport.client import from_tensors, to_tensors
from edgeopt.proto import auth
from edgeopt.proto.v1 import agent_pb2, agent_pb2_grpc
from tests.conftest import RunningAgent, start_agent
from tests.models import matmul_chain
from tests.proxy import CuttingProxy

MiB = 1 << 20
KILLS = int(os.environ.get("EDGEOPT_FAULT_KILLS", "20"))
SEED = int(os.environ.get("EDGEOPT_FAULT_SEED", "16"))
TOP_LEVEL = {"manifest.json", "blobs", "uploads", "runner.log", "active"}
"""What the store's folder may hold after recovery."""


@dataclasses.dataclass(frozen=True)
class Model:
    """A real ONNX model: x @ w @ w on an n x n input."""

    data: bytes
    weight: np.ndarray

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def expected(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x @ self.weight @ self.weight)


def make_model(tmp: Path, rng: np.random.Generator, n: int) -> Model:
    weight = (rng.standard_normal((n, n)) / n).astype(np.float32)
    path = matmul_chain(tmp / "model.onnx", weight, depth=2)
    return Model(path.read_bytes(), weight)


CHUNK = 128 << 10
PACE = 0.005
"""Seconds between chunks of the pushes a kill interrupts: a loopback push would otherwise
be over in a few milliseconds, and kills would land in one mid-upload only rarely."""


def requests(
    header: agent_pb2.PushHeader, data: bytes, pace: float
) -> Iterator[agent_pb2.PushRequest]:
    yield agent_pb2.PushRequest(header=header)
    for i in range(header.offset, len(data), CHUNK):
        if pace:
            time.sleep(pace)
        yield agent_pb2.PushRequest(chunk=data[i : i + CHUNK])


class Calls:
    """Plain gRPC calls, one channel per agent process."""

    def __init__(self, address: str, token: str | None) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = agent_pb2_grpc.AgentStub(self.channel)
        self.md = (auth.bearer(token or ""),)

    def push(
        self, name: str, model: Model, offset: int = 0, pace: float = 0.0
    ) -> agent_pb2.PushResult:
        """Push from `offset`; `pace` seconds between chunks, as a slow link spreads them."""
        header = agent_pb2.PushHeader(
            name=name, sha256=model.sha256, size=len(model.data), offset=offset
        )
        return self.stub.PushModel(requests(header, model.data, pace), metadata=self.md, timeout=60)

    def upload_status(self, sha256: str) -> agent_pb2.UploadStatus:
        request = agent_pb2.UploadStatusRequest(sha256=sha256)
        return self.stub.GetUploadStatus(request, metadata=self.md, timeout=30)

    def activate(self, name: str, version: str) -> agent_pb2.ActivateResult:
        request = agent_pb2.ActivateRequest(name=name, version=version)
        return self.stub.ActivateModel(request, metadata=self.md, timeout=60)

    def delete(self, name: str, version: str) -> agent_pb2.DeleteResult:
        request = agent_pb2.DeleteRequest(name=name, version=version)
        return self.stub.DeleteModel(request, metadata=self.md, timeout=30)

    def infer(self, name: str, x: np.ndarray) -> tuple[str, np.ndarray]:
        request = agent_pb2.InferRequest(name=name, inputs=to_tensors({"x": x}))
        reply = self.stub.Infer(request, metadata=self.md, timeout=60)
        return reply.version, next(iter(from_tensors(reply.outputs).values()))

    def close(self) -> None:
        self.channel.close()


@dataclasses.dataclass
class Round:
    """What one agent process was asked and acknowledged before it was killed."""

    acked_pushes: dict[str, str] = dataclasses.field(default_factory=dict)  # version -> sha
    acked_deletes: set[str] = dataclasses.field(default_factory=set)  # sha
    acked_active: str = ""  # sha of the last acknowledged activation
    in_flight: tuple[str, str] = ("", "")  # (op, sha) when the kill came
    resumed: int = 0
    error: BaseException | None = None  # anything but the kill that stopped the worker


def manifest_versions(store: Path) -> tuple[dict[str, str], str]:
    """({version: sha256}, active version) of the name "m", from a manifest that must parse."""
    raw = json.loads((store / "manifest.json").read_text())
    assert raw["format"] == 1
    entry = raw["models"]["m"]
    return {v["version"]: v["sha256"] for v in entry["versions"]}, entry["active"]


def check_store(store: Path, models: dict[str, Model]) -> list[str]:
    """Everything wrong with a recovered store (empty: consistent)."""
    problems = []
    raw = json.loads((store / "manifest.json").read_text())
    named = {}
    for name, entry in raw["models"].items():
        for v in entry["versions"]:
            named[v["sha256"]] = v["size"]
        if entry["active"] and entry["active"] not in {v["version"] for v in entry["versions"]}:
            problems.append(f"{name}: active {entry['active']} is not a stored version")
    for sha256, size in named.items():
        blob = store / "blobs" / sha256
        if not blob.is_file():
            problems.append(f"blob {sha256} named by the manifest is missing")
            continue
        data = blob.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256 or len(data) != size:
            problems.append(f"blob {sha256} has {len(data)} bytes hashing to something else")
    for blob in (store / "blobs").iterdir():
        if blob.name not in named:
            problems.append(f"stray blob {blob.name}")
    for part in (store / "uploads").iterdir():
        match = re.fullmatch(r"([0-9a-f]{64})\.part", part.name)
        model = models.get(match.group(1)) if match else None
        if model is None or not model.data.startswith(part.read_bytes()):
            problems.append(f"stray or damaged upload {part.name}")
    for path in store.iterdir():
        if path.name not in TOP_LEVEL:
            problems.append(f"stray file {path.name}")
    return problems + check_active(store, raw["models"])


def check_active(store: Path, entries: dict[str, dict[str, Any]]) -> list[str]:
    """What is wrong with active/ (the board applications' view) against the manifest."""
    problems = []
    base = store / "active"
    for name, entry in entries.items():
        link = base / name
        if not entry["active"]:
            if link.exists() or link.is_symlink():
                problems.append(f"active/{name} exists but {name} has no active version")
            continue
        sha = next(v["sha256"] for v in entry["versions"] if v["version"] == entry["active"])
        try:
            model = (link / "model.onnx").read_bytes()
            plan = json.loads((link / "plan.json").read_text())
        except (OSError, ValueError) as exc:
            problems.append(f"active/{name} is unreadable: {exc}")
            continue
        if hashlib.sha256(model).hexdigest() != sha or plan["version"] != entry["active"]:
            problems.append(f"active/{name} is not {entry['active']}")
    if base.is_dir():
        for path in base.iterdir():
            if re.search(r"\.tmp[0-9]+$", path.name) or (
                path.is_symlink() and path.name not in entries
            ):
                problems.append(f"stray active/{path.name}")
    return problems


def resume_parts(calls: Calls, store: Path, models: dict[str, Model], done: Round) -> None:
    """Finish the uploads a kill interrupted, each from the offset GetUploadStatus gives."""
    for part in sorted((store / "uploads").iterdir()):
        model = models[part.name[: -len(".part")]]
        done.in_flight = ("resume", model.sha256)
        status = calls.upload_status(model.sha256)
        pushed = calls.push("m", model, offset=status.offset, pace=PACE)
        assert pushed.sha256 == model.sha256
        assert pushed.bytes_received == len(model.data) - status.offset
        done.acked_pushes[pushed.version] = model.sha256
        done.resumed += 1
    done.in_flight = ("", "")


def work(
    agent: RunningAgent, models: dict[str, Model], tmp: Path, rng: random.Random, done: Round
) -> None:
    """Push, resume, activate and delete until the agent dies under it."""
    calls = Calls(agent.address, agent.token)
    np_rng = np.random.default_rng(rng.getrandbits(32))
    try:
        resume_parts(calls, agent.store, models, done)
        while True:
            versions, active = manifest_versions(agent.store)
            choice = rng.random()
            if choice < 0.45 or len(versions) < 2:
                model = make_model(tmp, np_rng, rng.choice([64, 256, 512, 768]))
                models[model.sha256] = model
                done.in_flight = ("push", model.sha256)
                pushed = calls.push("m", model, pace=PACE)
                done.acked_pushes[pushed.version] = model.sha256
            elif choice < 0.85:
                version = rng.choice(sorted(versions))
                done.in_flight = ("activate", versions[version])
                calls.activate("m", version)
                done.acked_active = versions[version]
            else:
                oldest = next(v for v in versions if v != active)
                done.in_flight = ("delete", versions[oldest])
                calls.delete("m", oldest)
                done.acked_deletes.add(versions[oldest])
            done.in_flight = ("", "")
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.UNAVAILABLE:  # anything but the agent gone
            done.error = exc
    except BaseException as exc:  # reported by the test, not lost in a thread
        done.error = exc
    finally:
        calls.close()


def test_sigkill_at_random_points_leaves_a_consistent_store(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    models: dict[str, Model] = {}
    home = tmp_path / "agent"
    x_rng = np.random.default_rng(SEED)

    agent = start_agent(home)
    store = agent.store
    first = make_model(tmp_path, x_rng, 64)
    models[first.sha256] = first
    calls = Calls(agent.address, agent.token)
    calls.activate("m", calls.push("m", first).version)
    calls.close()

    consistent, failures = 0, []
    during = dict.fromkeys(("push", "resume", "activate", "delete", ""), 0)
    acked_total = resumed = 0
    began = time.monotonic()
    versions_before, active_before = manifest_versions(store)
    for kill in range(KILLS):
        done = Round(acked_active=versions_before[active_before])
        worker = threading.Thread(target=work, args=(agent, models, tmp_path, rng, done))
        worker.start()
        time.sleep(rng.uniform(0.0, 0.4))
        agent.process.kill()
        agent.process.wait(timeout=15)
        worker.join(60)
        assert not worker.is_alive()
        assert done.error is None, f"kill {kill}: {done.error!r}"
        during[done.in_flight[0]] += 1
        acked_total += len(done.acked_pushes) + len(done.acked_deletes)
        resumed += done.resumed

        (home / "ready").unlink()
        agent = start_agent(home)
        problems = check_store(store, models)
        versions, active = manifest_versions(store)
        op, sha = done.in_flight
        shas = set(versions.values())
        must = (
            set(versions_before.values()) | set(done.acked_pushes.values())
        ) - done.acked_deletes
        may = must | ({sha} if op in ("push", "resume") else set())
        if op == "delete":
            must.discard(sha)
        if not must <= shas <= may:
            problems.append(f"versions {sorted(shas)} after acknowledged {sorted(must)}")
        if versions.get(active) not in {done.acked_active, sha if op == "activate" else ""}:
            problems.append(f"active {active} is neither acknowledged nor in flight")
        try:
            calls = Calls(agent.address, agent.token)
            model = models[versions[active]]
            n = model.weight.shape[0]
            x = x_rng.standard_normal((n, n)).astype(np.float32)
            answered, got = calls.infer("m", x)
            if answered != active or not np.allclose(got, model.expected(x), rtol=1e-3, atol=1e-4):
                problems.append(f"Infer answered {answered} with other outputs than {active}'s")
        except grpc.RpcError as exc:
            problems.append(f"Infer on the active model: {exc.code().name} {exc.details()}")
        finally:
            calls.close()
        if problems:
            failures.append(f"kill {kill} during {op or 'nothing'}: {problems}")
        else:
            consistent += 1
        versions_before, active_before = versions, active
    # The uploads the last kill interrupted resume too, and leave nothing behind.
    last = Round()
    calls = Calls(agent.address, agent.token)
    try:
        resume_parts(calls, store, models, last)
    finally:
        calls.close()
    resumed += last.resumed
    assert check_store(store, models) == [] and not list((store / "uploads").iterdir())
    agent.stop()
    seconds = time.monotonic() - began
    report = {
        "kills": KILLS, "consistent": consistent, "seed": SEED, "killed_during": during,
        "acknowledged_changes": acked_total, "uploads_resumed": resumed,
        "seconds": round(seconds, 1),
    }  # fmt: skip
    if os.environ.get("EDGEOPT_FAULT_REPORT"):
        with open(os.environ["EDGEOPT_FAULT_REPORT"], "a") as out:
            out.write(json.dumps({"test": "sigkill", **report}) + "\n")
    assert failures == []
    assert consistent == KILLS


def test_a_push_cut_mid_stream_resumes_from_the_agents_offset(tmp_path: Path) -> None:
    agent = start_agent(tmp_path / "agent")
    rng = np.random.default_rng(SEED)
    try:
        resumed_from = []
        for cut in (1 * MiB, 2 * MiB, 3 * MiB):
            model = make_model(tmp_path, rng, 1024)  # 4 MiB
            size = len(model.data)

            async def cut_push(
                cut: int = cut, model: Model = model, size: int = size
            ) -> grpc.StatusCode:
                proxy = CuttingProxy(agent.address, cut=cut)
                await proxy.start()
                try:
                    channel = grpc.aio.insecure_channel(f"127.0.0.1:{proxy.port}")
                    stub = agent_pb2_grpc.AgentStub(channel)
                    header = agent_pb2.PushHeader(name="cut", sha256=model.sha256, size=size)

                    async def paced() -> AsyncIterator[agent_pb2.PushRequest]:
                        yield agent_pb2.PushRequest(header=header)
                        for i in range(0, size, CHUNK):
                            await asyncio.sleep(PACE)
                            yield agent_pb2.PushRequest(chunk=model.data[i : i + CHUNK])

                    try:
                        await stub.PushModel(
                            paced(), metadata=(auth.bearer(agent.token or ""),), timeout=60
                        )
                    except grpc.aio.AioRpcError as exc:
                        return exc.code()
                    finally:
                        await channel.close()
                    raise AssertionError("the push went through a cut link")
                finally:
                    assert proxy.cuts == 1
                    await proxy.close()

            assert asyncio.run(cut_push()) in (
                grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL,
            )  # fmt: skip
            calls = Calls(agent.address, agent.token)
            try:
                status = calls.upload_status(model.sha256)
                part = agent.store / "uploads" / f"{model.sha256}.part"
                # What arrived whole before the cut is kept; a stream cut before its handler
                # took a chunk in leaves nothing (offset 0), which is a resume from the start.
                assert not status.complete and 0 <= status.offset <= cut
                held = part.read_bytes() if part.exists() else b""
                assert held == model.data[: status.offset]
                resumed_from.append(status.offset)
                pushed = calls.push("cut", model, offset=status.offset)
            finally:
                calls.close()
            assert pushed.sha256 == model.sha256 and pushed.size == size
            assert pushed.bytes_received == size - status.offset
            assert (agent.store / "blobs" / model.sha256).read_bytes() == model.data
            assert not part.exists()
        # The link was paced (PACE per chunk): the agent had long taken chunks in before the
        # later cuts, so at least one push really resumed mid-way.
        assert max(resumed_from) > 0, resumed_from
    finally:
        agent.stop()
