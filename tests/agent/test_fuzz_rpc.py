"""Random and mutated requests to every Agent RPC of one real agent, with the right token.

Hypothesis draws field values meant to hurt (names with '/', '..', NUL, unicode and 1 MB
strings; sha256 values that are paths; negative and huge shapes and sizes; NaN, inf and huge
time budgets; random plans, provider options and dtypes), raw garbage bytes as request bodies
(sent through a generic channel method with identity serializers), and chunk streams out of
order, too long and too short for PushModel and InferStream. After every example:

* the call ended with a gRPC status, and never UNKNOWN or INTERNAL (a bug: agent.proto);
* the agent process is alive and its health service answers SERVING;
* nothing changed outside the store: the agent's folder (token, ready file, its TMPDIR) is as
  before, and no file whose name carries the fuzzed names' marker exists under pytest's tmp root.

EDGEOPT_FUZZ_EXAMPLES sets the examples per test (20 by default: the file takes well under a
minute; `make soak` runs thousands). When EDGEOPT_FUZZ_REPORT names a file, a JSON line with
the cases, the agent deaths and the codes seen is appended to it.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeopt.proto import auth
from edgeopt.proto.v1 import agent_pb2, agent_pb2_grpc
from tests.agent.test_models import _push_activate, run
from tests.conftest import RunningAgent, start_agent
from tests.models import DigitsModel

EXAMPLES = int(os.environ.get("EDGEOPT_FUZZ_EXAMPLES", "20"))
MARK = "fuzzmark"
"""Every name that could become a path carries this, so a file made from one can be found."""
FUZZ = settings(
    max_examples=EXAMPLES, database=None, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)  # fmt: skip
BAD = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
CALL_TIMEOUT = 60.0
SERVICE = "/edgeopt.v1.Agent/"


@dataclass
class Fuzzed:
    """The agent under fuzz and what the examples saw."""

    agent: RunningAgent
    root: Path
    """The agent's folder: its token, ready file, log, TMPDIR and store."""
    basetemp: Path
    digits_sha: str
    channel: grpc.Channel
    stub: agent_pb2_grpc.AgentStub
    metadata: tuple[tuple[str, str], ...]
    cases: int = 0
    deaths: int = 0
    codes: collections.Counter[str] = field(default_factory=collections.Counter)
    bad: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, digits: DigitsModel) -> Iterator[Fuzzed]:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "tmp").mkdir()
    agent = start_agent(root, "--max-benchmark-seconds", "1", "--request-timeout", "20",
                        env={"TMPDIR": str(root / "tmp")})  # fmt: skip
    run(_push_activate(agent, digits.onnx))
    options = [("grpc.max_send_message_length", 64 << 20),
               ("grpc.max_receive_message_length", 64 << 20)]  # fmt: skip
    channel = grpc.insecure_channel(agent.address, options=options)
    sha = hashlib.sha256(digits.onnx.read_bytes()).hexdigest()
    stub = agent_pb2_grpc.AgentStub(channel)
    md = (auth.bearer(agent.token or ""),)
    state = Fuzzed(agent, root, tmp_path_factory.getbasetemp(), sha, channel, stub, md)
    yield state
    channel.close()
    alive = agent.process.poll() is None
    agent.stop()
    if os.environ.get("EDGEOPT_FUZZ_REPORT"):
        with open(os.environ["EDGEOPT_FUZZ_REPORT"], "a") as out:
            report = {"test": "fuzz", "cases": state.cases, "agent_deaths": state.deaths,
                      "alive_at_end": alive, "codes": dict(sorted(state.codes.items())),
                      "bad": state.bad[:20]}  # fmt: skip
            out.write(json.dumps(report) + "\n")


def outside_store(root: Path) -> dict[str, int]:
    """Every path under the agent's folder but its store and log, with its size."""
    seen = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] == "store" or rel == Path("agent.log"):
            continue
        seen[str(rel)] = path.stat().st_size if path.is_file() else -1
    return seen


def marked(base: Path) -> list[str]:
    return [str(p) for p in base.rglob(f"*{MARK}*")]


def exercise(state: Fuzzed, what: str, call: Any) -> None:
    """Make one call and check the agent afterwards (see the module's docstring)."""
    before = outside_store(state.root)
    try:
        call()
        code = grpc.StatusCode.OK
        details = ""
    except grpc.RpcError as exc:
        code, details = exc.code(), str(exc.details())
    state.cases += 1
    state.codes[f"{what}:{code.name}"] += 1
    if code in BAD:
        state.bad.append(f"{what}: {code.name}: {details[:300]}")
    if state.agent.process.poll() is not None:
        state.deaths += 1
        raise AssertionError(f"{what}: the agent died:\n{state.agent.output()[-3000:]}")
    health = health_pb2_grpc.HealthStub(state.channel).Check(
        health_pb2.HealthCheckRequest(), timeout=30
    )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert code not in BAD, f"{what}: {code.name}: {details}"
    assert outside_store(state.root) == before
    assert marked(state.basetemp) == []


# --- what the fields are drawn from -----------------------------------------------------------

NASTY_NAMES = [
    "digits", f"../{MARK}-up", f"../../../{MARK}-etc", f"/tmp/{MARK}-abs", f"{MARK}/child",
    f"{MARK}\x00nul", f"{MARK}\u202eevil\u200b", "..", ".", "", f"{MARK}-" + "é" * 64,
    "F" * 129, MARK * 131072, f"..\\{MARK}-win", f"{MARK} space", f"~/{MARK}",
]  # fmt: skip
names = st.one_of(st.sampled_from(NASTY_NAMES), st.text(max_size=24),
                  st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True))  # fmt: skip
versions = st.one_of(st.sampled_from(["", "v1", "v2", f"../{MARK}", f"{MARK}/v", "v1\x00"]),
                     st.text(max_size=12))  # fmt: skip


def shas(state: Fuzzed) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from([
            "/etc/hostname", "../manifest.json", f"../../{MARK}-sha", "0" * 64, "A" * 64,
            "g" * 64, "", "0" * 63, "0" * 65, f"{MARK}\x00", state.digits_sha,
            state.digits_sha.upper(), f"../blobs/{state.digits_sha}", state.digits_sha + "\n",
        ]),
        st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
        st.text(max_size=70),
    )  # fmt: skip


big_ints = st.one_of(st.integers(-3, 70), st.sampled_from([-(2**63), 2**31, 2**32 - 1,
                     2**62, 2**63 - 1]))  # fmt: skip
u32 = st.one_of(st.integers(0, 20), st.sampled_from([0, 10000, 10001, 10**7, 10**7 + 1,
                2**31, 2**32 - 1]))  # fmt: skip
u64 = st.one_of(st.integers(0, 5000), st.sampled_from([2**32, 2**40, 2**63, 2**64 - 1]))
doubles = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0.0, 0.05, 0.2, -1.0, 1e308, math.nan, math.inf, -math.inf,
                                     5e-324, 1.0000001]))  # fmt: skip
dtypes = st.one_of(st.sampled_from(["float32", "int64", "uint8", "bool", "str", "float16",
                                    "complex64", "object", "<f4", ">f4", "", MARK, "V8",
                                    "datetime64", "float32\x00", "U10", "S3"]),
                   st.text(max_size=10))  # fmt: skip
shapes = st.one_of(st.lists(big_ints, max_size=8), st.sampled_from([[1, 1, 8, 8], [2, 1, 8, 8],
                   [0, 1, 8, 8], [-1, 1, 8, 8], [1] * 64, [2**31, 2**31]]))  # fmt: skip
texts = st.one_of(st.text(max_size=16), st.sampled_from(["0", "-1", "1e9", "true", MARK]))
plans = st.builds(
    agent_pb2.Plan,
    precision=texts,
    intra_op_threads=u32,
    inter_op_threads=u32,
    execution_provider=st.one_of(st.sampled_from([
        "", "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider",
        "XnnpackExecutionProvider", "OpenVINOExecutionProvider", MARK]), st.text(max_size=12)),
    provider_options=st.dictionaries(
        st.one_of(st.sampled_from(["device_id", "gpu_mem_limit", "intra_op_num_threads",
                                   "arena_extend_strategy", MARK]), st.text(max_size=8)),
        texts, max_size=4),
    graph_optimization_level=st.one_of(st.sampled_from(["", "disable", "basic", "extended",
                                                        "all", "ALL"]), texts),
    execution_mode=st.one_of(st.sampled_from(["", "sequential", "parallel"]), texts),
    metadata=st.dictionaries(texts, texts, max_size=3),
)  # fmt: skip


def tensors(streamed: bool) -> st.SearchStrategy[agent_pb2.Tensor]:
    good = st.builds(lambda n: agent_pb2.Tensor(
        name="image", dtype="float32", shape=[n, 1, 8, 8],
        **({"byte_size": n * 256} if streamed else {"data": bytes(n * 256)})),
        st.integers(0, 4))  # fmt: skip
    wild = st.builds(
        agent_pb2.Tensor, name=st.one_of(st.just("image"), names), dtype=dtypes, shape=shapes,
        data=st.binary(max_size=2048) if not streamed else st.just(b""), byte_size=u64,
    )  # fmt: skip
    return st.one_of(good, wild)


# --- the tests ----------------------------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_unary_calls_with_random_fields(fuzzed: Fuzzed, data: st.DataObject) -> None:
    s, md, t = fuzzed.stub, fuzzed.metadata, CALL_TIMEOUT
    calls = {
        "GetCapabilities": lambda: s.GetCapabilities(agent_pb2.GetCapabilitiesRequest(),
                                                     metadata=md, timeout=t),
        "GetUploadStatus": lambda: s.GetUploadStatus(
            agent_pb2.UploadStatusRequest(sha256=data.draw(shas(fuzzed))), metadata=md,
            timeout=t),
        "ActivateModel": lambda: s.ActivateModel(agent_pb2.ActivateRequest(
            name=data.draw(names), version=data.draw(versions),
            plan=data.draw(st.one_of(st.none(), plans)),
            smoke_inputs=data.draw(st.lists(tensors(False), max_size=3)),
            inputs_sha256=data.draw(shas(fuzzed))), metadata=md, timeout=t),
        "ListModels": lambda: s.ListModels(agent_pb2.ListModelsRequest(), metadata=md, timeout=t),
        "RollbackModel": lambda: s.RollbackModel(
            agent_pb2.RollbackRequest(name=data.draw(names)), metadata=md, timeout=t),
        "DeleteModel": lambda: s.DeleteModel(agent_pb2.DeleteRequest(
            name=data.draw(names.filter(lambda n: n != "digits")), version=data.draw(versions),
            force=data.draw(st.booleans())), metadata=md, timeout=t),
        "Infer": lambda: s.Infer(agent_pb2.InferRequest(
            name=data.draw(names), version=data.draw(versions),
            inputs=data.draw(st.lists(tensors(False), max_size=3))), metadata=md, timeout=t),
        "Benchmark": lambda: list(s.Benchmark(agent_pb2.BenchmarkRequest(
            name=data.draw(names), version=data.draw(versions), sha256=data.draw(shas(fuzzed)),
            plan=data.draw(st.one_of(st.none(), plans)),
            inputs=data.draw(st.lists(tensors(False), max_size=2)),
            input_shapes=data.draw(st.lists(st.builds(
                agent_pb2.InputShape, name=st.one_of(st.just("image"), names), dims=shapes),
                max_size=2)),
            warmup=data.draw(u32), min_repeats=data.draw(u32), max_repeats=data.draw(u32),
            target_ci=data.draw(doubles), max_seconds=data.draw(doubles),
            inputs_sha256=data.draw(shas(fuzzed))), metadata=md, timeout=t)),
        "Profile": lambda: s.Profile(agent_pb2.ProfileRequest(
            name=data.draw(names), version=data.draw(versions), sha256=data.draw(shas(fuzzed)),
            plan=data.draw(st.one_of(st.none(), plans)),
            inputs=data.draw(st.lists(tensors(False), max_size=2)),
            input_shapes=data.draw(st.lists(st.builds(
                agent_pb2.InputShape, name=st.one_of(st.just("image"), names), dims=shapes),
                max_size=2)),
            runs=data.draw(u32), warmup=data.draw(u32),
            include_trace=data.draw(st.booleans()),
            inputs_sha256=data.draw(shas(fuzzed))), metadata=md, timeout=t),
    }  # fmt: skip
    what = data.draw(st.sampled_from(sorted(calls)))
    exercise(fuzzed, what, calls[what])


METHODS = {
    "GetCapabilities": "unary_unary", "PushModel": "stream_unary",
    "GetUploadStatus": "unary_unary", "ActivateModel": "unary_unary",
    "ListModels": "unary_unary", "RollbackModel": "unary_unary", "DeleteModel": "unary_unary",
    "Infer": "unary_unary", "InferStream": "stream_stream", "Benchmark": "unary_stream",
    "Profile": "unary_unary",
}  # fmt: skip


def mutated(valid: bytes) -> st.SearchStrategy[bytes]:
    """`valid` with bytes flipped, cut or appended."""

    def mutate(flips: list[tuple[int, int]], cut: int, tail: bytes) -> bytes:
        body = bytearray(valid)
        for at, value in flips:
            if body:
                body[at % len(body)] = value
        return bytes(body[: max(0, len(body) - cut)]) + tail

    return st.builds(mutate, st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                     max_size=6), st.integers(0, 8), st.binary(max_size=16))  # fmt: skip


def valid_bodies(state: Fuzzed) -> list[bytes]:
    return [
        agent_pb2.InferRequest(name="digits", inputs=[agent_pb2.Tensor(
            name="image", dtype="float32", shape=[1, 1, 8, 8], data=bytes(256))]
        ).SerializeToString(),
        agent_pb2.PushRequest(header=agent_pb2.PushHeader(
            name="m", sha256=state.digits_sha, size=10)).SerializeToString(),
        agent_pb2.BenchmarkRequest(name="digits", max_seconds=0.05).SerializeToString(),
        agent_pb2.ActivateRequest(name="digits").SerializeToString(),
        agent_pb2.InferPart(request=agent_pb2.InferRequest(name="digits", inputs=[
            agent_pb2.Tensor(name="image", dtype="float32", shape=[1, 1, 8, 8], byte_size=256)])
        ).SerializeToString(),
    ]  # fmt: skip


@FUZZ
@given(data=st.data())
def test_raw_bytes_as_request_bodies(fuzzed: Fuzzed, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(sorted(METHODS)))
    shape = METHODS[method]
    body = st.one_of(st.binary(max_size=512),
                     st.sampled_from(valid_bodies(fuzzed)).flatmap(mutated))  # fmt: skip
    identity = {"request_serializer": None, "response_deserializer": None}
    multicallable = getattr(fuzzed.channel, shape)(SERVICE + method, **identity)
    md, t = fuzzed.metadata, CALL_TIMEOUT
    if shape.startswith("stream"):
        bodies = data.draw(st.lists(body, max_size=4))

        def call() -> Any:
            answer = multicallable(iter(bodies), metadata=md, timeout=t)
            return list(answer) if shape == "stream_stream" else answer
    else:
        one = data.draw(body)

        def call() -> Any:
            answer = multicallable(one, metadata=md, timeout=t)
            return list(answer) if shape == "unary_stream" else answer

    exercise(fuzzed, f"raw {method}", call)


@FUZZ
@given(data=st.data())
def test_push_streams_out_of_order(fuzzed: Fuzzed, data: st.DataObject) -> None:
    payload = data.draw(st.binary(min_size=0, max_size=4096))
    digest = hashlib.sha256(payload).hexdigest()
    header = st.builds(
        agent_pb2.PushHeader,
        name=names, version=versions,
        sha256=st.one_of(st.just(digest), shas(fuzzed)),
        size=st.one_of(st.just(len(payload)), u64),
        plan=st.one_of(st.none(), plans),
        offset=st.one_of(st.just(0), u64),
    )  # fmt: skip
    chunk = st.one_of(
        st.builds(lambda a, b: payload[min(a, b) : max(a, b)], st.integers(0, len(payload)),
                  st.integers(0, len(payload))),
        st.binary(max_size=512), st.just(b"\0" * (5 << 20)),
    )  # fmt: skip
    parts = data.draw(st.lists(st.one_of(
        st.builds(lambda h: agent_pb2.PushRequest(header=h), header),
        st.builds(lambda c: agent_pb2.PushRequest(chunk=c), chunk),
        st.just(agent_pb2.PushRequest())), max_size=6))  # fmt: skip

    exercise(fuzzed, "PushModel", lambda: fuzzed.stub.PushModel(
        iter(parts), metadata=fuzzed.metadata, timeout=CALL_TIMEOUT))  # fmt: skip


@FUZZ
@given(data=st.data())
def test_infer_streams_out_of_order(fuzzed: Fuzzed, data: st.DataObject) -> None:
    request = st.builds(
        agent_pb2.InferRequest,
        name=st.one_of(st.just("digits"), names), version=versions,
        inputs=st.lists(tensors(True), max_size=3),
    )  # fmt: skip
    chunk = st.one_of(st.binary(max_size=1024), st.just(bytes(256)), st.just(bytes(5 << 20)))
    result = st.builds(agent_pb2.InferResult, version=versions)
    parts = data.draw(st.lists(st.one_of(
        st.builds(lambda r: agent_pb2.InferPart(request=r), request),
        st.builds(lambda c: agent_pb2.InferPart(chunk=c), chunk),
        st.builds(lambda r: agent_pb2.InferPart(result=r), result),
        st.just(agent_pb2.InferPart())), max_size=6))  # fmt: skip

    exercise(fuzzed, "InferStream", lambda: list(fuzzed.stub.InferStream(
        iter(parts), metadata=fuzzed.metadata, timeout=CALL_TIMEOUT)))  # fmt: skip


@pytest.mark.parametrize("method", ["ActivateModel", "Infer", "ListModels"])
def test_a_body_that_is_not_protobuf_is_invalid_argument(fuzzed: Fuzzed, method: str) -> None:
    """One NUL byte is no message of any type: the request is wrong, not the agent (INTERNAL
    says "a bug: please report" in agent.proto)."""
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = fuzzed.channel.unary_unary(SERVICE + method)
    with pytest.raises(grpc.RpcError) as caught:
        call(b"\x00", metadata=fuzzed.metadata, timeout=CALL_TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert fuzzed.agent.process.poll() is None
