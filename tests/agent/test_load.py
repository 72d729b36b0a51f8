"""Many clients at once against one real agent with a small --max-concurrent-rpcs.

64 client threads (EDGEOPT_LOAD_CLIENTS), each on its own channel, call for 4 seconds
(EDGEOPT_LOAD_SECONDS) a mix of Infer and InferStream on the real digits model, short
Benchmarks, ListModels, wrong-token Infers with bodies of a few MiB and over 4 MiB, and
right-token Infers over 4 MiB. Every call must end OK or with the status its kind expects; the
agent must live through it with its memory bounded, answer every accepted Infer exactly as a
local ONNX Runtime does, and refuse the excess with RESOURCE_EXHAUSTED.

When EDGEOPT_LOAD_REPORT names a file, a JSON line with the counts, the p99 of ListModels and
the agent's peak RSS is appended to it (benchmarks/hardening.py reads it).
"""

from __future__ import annotations

import collections
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edgeopt.proto import auth
from edgeopt.proto.v1 import agent_pb2, agent_pb2_grpc
from tests.agent.test_models import _push_activate, expected, run
from tests.conftest import RunningAgent
from tests.models import DigitsModel

CLIENTS = int(os.environ.get("EDGEOPT_LOAD_CLIENTS", "64"))
SECONDS = float(os.environ.get("EDGEOPT_LOAD_SECONDS", "4"))
MAX_CONCURRENT = 16
RSS_ROOM = 150 << 20
"""How far above its idle RSS the agent may grow under load (generous: the figure itself is
for benchmarks/hardening.py)."""

# Each call kind, and the statuses other than OK it may end with. RESOURCE_EXHAUSTED is always
# possible: more than MAX_CONCURRENT calls in progress are refused by gRPC at once.
EXPECTED: dict[str, set[grpc.StatusCode]] = {
    "infer": {grpc.StatusCode.RESOURCE_EXHAUSTED},
    "infer_stream": {grpc.StatusCode.RESOURCE_EXHAUSTED},
    "benchmark": {grpc.StatusCode.RESOURCE_EXHAUSTED},  # also: the Benchmark queue is full
    "list": {grpc.StatusCode.RESOURCE_EXHAUSTED},
    "wrong_token_3mib": {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAUTHENTICATED},
    "wrong_token_5mib": {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAUTHENTICATED},
    "oversized": {grpc.StatusCode.RESOURCE_EXHAUSTED},
}
NEVER_OK = {"wrong_token_3mib", "wrong_token_5mib", "oversized"}
# The order one client cycles through (its start rotates with its number).
PLAN = ["infer", "list", "infer_stream", "wrong_token_3mib", "infer", "list", "benchmark",
        "oversized", "infer", "list", "wrong_token_5mib"]  # fmt: skip


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def tensor(name: str, array: np.ndarray, streamed: bool = False) -> agent_pb2.Tensor:
    array = np.ascontiguousarray(array)
    if streamed:
        return agent_pb2.Tensor(name=name, dtype=str(array.dtype), shape=list(array.shape),
                                byte_size=array.nbytes)  # fmt: skip
    return agent_pb2.Tensor(name=name, dtype=str(array.dtype), shape=list(array.shape),
                            data=array.tobytes())  # fmt: skip


class Load:
    """What the clients saw, shared between their threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.outcomes: collections.Counter[tuple[str, str]] = collections.Counter()
        self.unexpected: list[str] = []
        self.wrong_answers: list[str] = []
        self.list_latencies: list[float] = []

    def record(self, kind: str, code: grpc.StatusCode, details: str = "") -> None:
        with self.lock:
            self.outcomes[(kind, code.name)] += 1
            allowed = EXPECTED[kind] | (set() if kind in NEVER_OK else {grpc.StatusCode.OK})
            if code not in allowed:
                self.unexpected.append(f"{kind}: {code.name}: {details[:300]}")


def client_loop(
    number: int, agent: RunningAgent, load: Load, feeds: list[tuple[np.ndarray, np.ndarray]],
    stop: threading.Event,
) -> None:  # fmt: skip
    big = agent_pb2.InferRequest(name="digits", inputs=[tensor("image", np.zeros(
        (12 * 1024, 1, 8, 8), np.float32))])  # 3 MiB: fits a message  # fmt: skip
    huge = agent_pb2.InferRequest(name="digits", inputs=[tensor("image", np.zeros(
        (20 * 1024, 1, 8, 8), np.float32))])  # 5 MiB: over the agent's 4 MiB  # fmt: skip
    md = (auth.bearer(agent.token or ""),)
    wrong = (auth.bearer("not-the-token"),)
    options = [("grpc.max_send_message_length", 64 << 20),
               ("grpc.max_receive_message_length", 64 << 20)]  # fmt: skip
    with grpc.insecure_channel(agent.address, options=options) as channel:
        s = agent_pb2_grpc.AgentStub(channel)
        step = number
        while not stop.is_set():
            kind = PLAN[step % len(PLAN)]
            feed, want = feeds[step % len(feeds)]
            step += 1
            try:
                if kind == "infer":
                    reply = s.Infer(
                        agent_pb2.InferRequest(name="digits", inputs=[tensor("image", feed)]),
                        metadata=md,
                        timeout=120,
                    )
                    (out,) = reply.outputs
                    got = np.frombuffer(out.data, np.float32).reshape(tuple(out.shape))
                    check(load, kind, got, want)
                elif kind == "infer_stream":
                    parts = [agent_pb2.InferPart(request=agent_pb2.InferRequest(
                                name="digits", inputs=[tensor("image", feed, streamed=True)])),
                             agent_pb2.InferPart(chunk=feed.tobytes())]  # fmt: skip
                    answer = list(s.InferStream(iter(parts), metadata=md, timeout=120))
                    (out,) = answer[0].result.outputs
                    data = b"".join(p.chunk for p in answer[1:])
                    got = np.frombuffer(data, np.float32).reshape(tuple(out.shape))
                    check(load, kind, got, want)
                elif kind == "benchmark":
                    events = list(s.Benchmark(agent_pb2.BenchmarkRequest(
                        name="digits", max_seconds=0.2, warmup=1, min_repeats=3),
                        metadata=md, timeout=120))  # fmt: skip
                    assert events[-1].HasField("result"), events[-1]
                elif kind == "list":
                    began = time.perf_counter()
                    listing = s.ListModels(agent_pb2.ListModelsRequest(), metadata=md, timeout=60)
                    took = time.perf_counter() - began
                    assert [m.name for m in listing.models] == ["digits"]
                    with load.lock:
                        load.list_latencies.append(took)
                elif kind == "wrong_token_3mib":
                    s.Infer(big, metadata=wrong, timeout=60)
                elif kind == "wrong_token_5mib":
                    s.Infer(huge, metadata=wrong, timeout=60)
                elif kind == "oversized":
                    s.Infer(huge, metadata=md, timeout=60)
                load.record(kind, grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                load.record(kind, exc.code(), str(exc.details()))


def check(load: Load, kind: str, got: np.ndarray, want: np.ndarray) -> None:
    if got.shape != want.shape or not np.allclose(got, want, rtol=1e-5, atol=1e-5):
        with load.lock:
            load.wrong_answers.append(f"{kind}: batch {want.shape[0]}: {got[:1]} != {want[:1]}")


def sample_rss(pid: int, stop: threading.Event, into: list[int]) -> None:
    while not stop.is_set():
        try:
            into.append(rss_bytes(pid))
        except OSError:
            return  # the process is gone: the test says so
        stop.wait(0.05)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def test_many_clients_against_a_small_concurrency_limit(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel
) -> None:
    agent = agent_factory("--max-concurrent-rpcs", str(MAX_CONCURRENT))
    run(_push_activate(agent, digits.onnx))
    images = np.load(digits.validation)["image"].astype(np.float32)
    feeds = [(images[:n], expected(digits.onnx, {"image": images[:n]})) for n in (1, 3, 7, 32)]
    with grpc.insecure_channel(agent.address) as channel:  # the runner is warm: idle from here
        agent_pb2_grpc.AgentStub(channel).ListModels(
            agent_pb2.ListModelsRequest(), metadata=(auth.bearer(agent.token or ""),), timeout=30
        )
    time.sleep(0.5)
    idle = rss_bytes(agent.process.pid)

    load = Load()
    stop, sampling = threading.Event(), threading.Event()
    samples: list[int] = []
    sampler = threading.Thread(target=sample_rss, args=(agent.process.pid, sampling, samples))
    sampler.start()
    clients = [threading.Thread(target=client_loop, args=(i, agent, load, feeds, stop))
               for i in range(CLIENTS)]  # fmt: skip
    began = time.monotonic()
    for t in clients:
        t.start()
    stop.wait(SECONDS)
    stop.set()
    for t in clients:
        t.join(300)
    seconds = time.monotonic() - began
    sampling.set()
    sampler.join()

    assert [t.name for t in clients if t.is_alive()] == []
    assert agent.process.poll() is None, agent.output()
    with grpc.insecure_channel(agent.address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                           timeout=30)  # fmt: skip
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert load.unexpected == []
    assert load.wrong_answers == []
    by_kind = {kind: {c: n for (k, c), n in load.outcomes.items() if k == kind} for kind in PLAN}
    # Every kind ran, and every kind that can succeed did at least once.
    assert all(by_kind[kind] for kind in PLAN), by_kind
    assert all(by_kind[kind].get("OK") for kind in EXPECTED if kind not in NEVER_OK), by_kind
    assert by_kind["wrong_token_3mib"].get("UNAUTHENTICATED"), by_kind
    assert by_kind["oversized"].get("RESOURCE_EXHAUSTED"), by_kind
    refused = sum(
        n
        for (k, c), n in load.outcomes.items()
        if c == "RESOURCE_EXHAUSTED" and k in ("list", "infer", "infer_stream")
    )
    assert refused > 0, "64 clients against 16 slots: some calls must be refused"
    peak = max(samples)
    assert peak < idle + RSS_ROOM, f"agent RSS {peak >> 20} MiB, idle {idle >> 20} MiB"

    by_code: collections.Counter[str] = collections.Counter()
    for (_, code), n in load.outcomes.items():
        if code != "OK":
            by_code[code] += n
    report = {
        "clients": CLIENTS, "max_concurrent_rpcs": MAX_CONCURRENT, "seconds": round(seconds, 1),
        "calls": sum(load.outcomes.values()),
        "answered": sum(n for (_, c), n in load.outcomes.items() if c == "OK"),
        "by_code": dict(by_code),
        "by_kind": by_kind,
        "list_p50_ms": round(percentile(load.list_latencies, 0.5) * 1000, 2),
        "list_p99_ms": round(percentile(load.list_latencies, 0.99) * 1000, 2),
        "idle_rss_mib": round(idle / 2**20, 1), "peak_rss_mib": round(peak / 2**20, 1),
    }  # fmt: skip
    if os.environ.get("EDGEOPT_LOAD_REPORT"):
        with open(os.environ["EDGEOPT_LOAD_REPORT"], "a") as out:
            out.write(json.dumps({"test": "load", **report}) + "\n")
    print(json.dumps(report))
