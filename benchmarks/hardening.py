"""What the agent's hardening costs and how fast it reacts (issue 16), measured in one run.

    python benchmarks/hardening.py [--repeats 3] [--reports DIR]     (or `make bench`)

(a) Memory an unauthenticated caller costs: the agent's idle RSS, then its peak while 6
    callers send 200 MiB Infer bodies with a wrong token at once (goal: <= 50 MB above idle).
(b) The agent's own RSS (its runner apart) through 16 InferStream calls of a 15 MB float32
    input (4x3x640x640 into a real Add model) through the host's AgentClient: before, highest
    during, after (goal: <= 70 MB).
(c) SIGTERM during a runaway Infer (a chain of 1024x1024 MatMuls on a 4096x1024 input, about
    a minute of work; --request-timeout 600 so that only the shutdown stops it): seconds to the
    agent's exit, and whether its runners are gone (goal: <= 5 s).
(d) Cancellation: seconds from a client cancelling a long Benchmark (max_seconds 300) to its
    runner process being gone (goal: <= 2 s); and from a client's deadline on a long Infer to
    the serving runner answering a small Infer again (restarted, the model reloaded).
(e) The load, fuzz and fault tests' figures: the tests run here with modest sizes and their
    JSON reports are read; with --reports DIR the reports of an earlier run (`make soak`) are
    read from DIR instead (load.jsonl, fuzz.jsonl, host_fuzz.jsonl, faults.jsonl).

Medians over --repeats runs; the CPU is read from /proc/cpuinfo. Writes the `hardening`
section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnx
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import write_section  # noqa: E402

from edgeopt.host.transport.client import AgentClient  # noqa: E402
from edgeopt.proto import auth  # noqa: E402
from edgeopt.proto.v1 import agent_pb2, agent_pb2_grpc  # noqa: E402
from tests.agent.test_models import runner_pids  # noqa: E402
from tests.conftest import RunningAgent, start_agent  # noqa: E402

MIB = 1 << 20


def cpu_name() -> str:
    """The CPU as /proc/cpuinfo names it, and how many logical CPUs this process may use."""
    name = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware") and value.strip():
            name = value.strip()
            break
    return f"{name}, {len(os.sched_getaffinity(0))} CPUs usable ({platform.machine()})"


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting for its parent's wait() does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def runners(parent: int) -> list[int]:
    """The live runner processes (edgeopt.agent.runner) whose parent is `parent`."""
    return sorted(pid for pid in runner_pids(parent) if alive(pid))


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def wait_busy(pid: int, ticks: int = 20, timeout: float = 60.0) -> None:
    """Wait until `pid` has used `ticks` more CPU ticks: it is working on the request."""
    start = cpu_ticks(pid)
    deadline = time.monotonic() + timeout
    while cpu_ticks(pid) - start < ticks:
        if time.monotonic() > deadline:
            raise RuntimeError(f"process {pid} did not start working")
        time.sleep(0.01)


class Sampler:
    """The highest RSS of a process, read every 10 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss(self.pid))
            except OSError:
                return
            self._stop.wait(0.01)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def save(model: onnx.ModelProto, path: Path) -> Path:
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def add_model(path: Path) -> Path:
    """y = x + 1 on float32 [batch, 3, 640, 640]."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["y"])], "add",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 3, 640, 640])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 3, 640, 640])],
        initializer=[numpy_helper.from_array(np.ones((), np.float32), "one")],
    )  # fmt: skip
    return save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def runaway_model(path: Path, depth: int = 300) -> Path:
    """`depth` chained MatMuls by a 1024x1024 weight on a [rows, 1024] input: fast on the one
    row activation's smoke test uses, about a minute on 4096 rows."""
    nodes, last = [], "x"
    for i in range(depth):
        nodes.append(helper.make_node("MatMul", [last, "w"], [f"h{i}"]))
        last = f"h{i}"
    weight = (np.eye(1024) * 1.0001).astype(np.float32)
    graph = helper.make_graph(
        nodes, "runaway",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["rows", 1024])],
        [helper.make_tensor_value_info(last, onnx.TensorProto.FLOAT, ["rows", 1024])],
        initializer=[numpy_helper.from_array(weight, "w")],
    )  # fmt: skip
    return save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def deploy(agent: RunningAgent, path: Path, name: str) -> None:
    async def go() -> None:
        async with AgentClient(agent.address, token=agent.token) as client:
            pushed = await client.push(path, name)
            await client.activate(name, pushed.version)

    asyncio.run(go())


def infer(agent: RunningAgent, name: str, feed: dict[str, np.ndarray],
          timeout: float | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    async def go() -> dict[str, np.ndarray]:
        async with AgentClient(agent.address, token=agent.token) as client:
            outputs, _ = await client.infer(name, feed, timeout=timeout)
            return outputs

    return asyncio.run(go())


def in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run `work` in a thread; the list gets its result or its exception."""
    out: list[Any] = []

    def target() -> None:
        try:
            out.append(work())
        except BaseException as exc:  # reported by the caller
            out.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


# --- (a) -------------------------------------------------------------------------------------


def unauthenticated_memory(tmp: Path) -> dict[str, Any]:
    agent = start_agent(tmp / "a")
    try:
        time.sleep(1.0)  # the background ONNX Runtime probe (a child) has ended
        idle = rss(agent.process.pid)
        body = agent_pb2.InferRequest(name="digits", inputs=[agent_pb2.Tensor(
            name="image", dtype="float32", shape=[200 * MIB // 4], data=bytes(200 * MIB))]
        ).SerializeToString()  # fmt: skip
        options = [("grpc.max_send_message_length", 256 * MIB)]
        codes: list[str] = []
        with grpc.insecure_channel(agent.address, options=options) as channel:
            call = channel.unary_unary("/edgeopt.v1.Agent/Infer")

            def one() -> None:
                try:
                    call(body, metadata=(auth.bearer("wrong"),), timeout=120)
                    codes.append("OK")
                except grpc.RpcError as exc:
                    codes.append(exc.code().name)

            with Sampler(agent.process.pid) as sampler:
                threads = [threading.Thread(target=one) for _ in range(6)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
        assert agent.process.poll() is None
        answered = ",".join(sorted(set(codes)))
        return {"idle": idle / MIB, "peak": sampler.peak / MIB,
                "over": (sampler.peak - idle) / MIB, "codes": answered}  # fmt: skip
    finally:
        agent.stop()


# --- (b) -------------------------------------------------------------------------------------


def large_inferences(tmp: Path) -> dict[str, float]:
    agent = start_agent(tmp / "b")
    try:
        deploy(agent, add_model(tmp / "add.onnx"), "add")
        x = np.random.default_rng(0).random((4, 3, 640, 640), dtype=np.float32)
        infer(agent, "add", {"x": x[:1]})  # the runner is warm
        time.sleep(0.5)
        before = rss(agent.process.pid)

        async def sixteen() -> bool:
            ok = True
            async with AgentClient(agent.address, token=agent.token) as client:
                for _ in range(16):
                    outputs, _ = await client.infer("add", {"x": x})
                    ok = ok and bool(np.array_equal(outputs["y"], x + 1))
            return ok

        with Sampler(agent.process.pid) as sampler:
            correct = asyncio.run(sixteen())
        time.sleep(0.5)
        after = rss(agent.process.pid)
        return {"before": before / MIB, "peak": sampler.peak / MIB, "after": after / MIB,
                "over": (sampler.peak - before) / MIB, "correct": float(correct)}  # fmt: skip
    finally:
        agent.stop()


# --- (c) -------------------------------------------------------------------------------------

RUNAWAY_ROWS = 4096


def sigterm_during_runaway(tmp: Path, model: Path) -> dict[str, float]:
    agent = start_agent(tmp, "--request-timeout", "600")
    deploy(agent, model, "runaway")
    (runner,) = runners(agent.process.pid)
    x = np.ones((RUNAWAY_ROWS, 1024), np.float32)
    thread, _ = in_thread(lambda: infer(agent, "runaway", {"x": x}, timeout=600))
    wait_busy(runner)
    before = runners(agent.process.pid)
    began = time.monotonic()
    agent.process.send_signal(signal.SIGTERM)
    try:
        agent.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        agent.process.kill()
        agent.process.wait()
        return {"exit_s": float("inf"), "runners_gone": 0.0}
    took = time.monotonic() - began
    time.sleep(0.2)
    gone = all(not alive(pid) for pid in before)
    thread.join(30)
    return {"exit_s": took, "runners_gone": float(gone)}


# --- (d) -------------------------------------------------------------------------------------


def cancel_benchmark(agent: RunningAgent) -> float:
    """Seconds from cancelling a 300 s Benchmark to its runner being gone."""
    serving = set(runners(agent.process.pid))
    channel = grpc.insecure_channel(agent.address)
    stub = agent_pb2_grpc.AgentStub(channel)
    call = stub.Benchmark(agent_pb2.BenchmarkRequest(
        name="runaway", max_seconds=300, target_ci=1e-6,
        input_shapes=[agent_pb2.InputShape(name="x", dims=[64, 1024])]),
        metadata=(auth.bearer(agent.token or ""),), timeout=600)  # fmt: skip
    deadline = time.monotonic() + 60
    heavy: list[int] = []
    while not heavy:
        heavy = [p for p in runners(agent.process.pid) if p not in serving]
        if time.monotonic() > deadline:
            raise RuntimeError("no benchmark runner appeared")
        time.sleep(0.01)
    (pid,) = heavy
    wait_busy(pid)
    began = time.monotonic()
    call.cancel()
    while alive(pid):
        if time.monotonic() - began > 60:
            return float("inf")
        time.sleep(0.005)
    took = time.monotonic() - began
    channel.close()
    return took


def deadline_recovery(agent: RunningAgent) -> tuple[float, float]:
    """Seconds from a client's deadline on a long Infer until a small Infer is answered, and
    whether the serving runner was replaced (1.0) on the way."""
    (runner,) = runners(agent.process.pid)
    x = np.ones((RUNAWAY_ROWS, 1024), np.float32)
    try:
        infer(agent, "runaway", {"x": x}, timeout=3.0)
        raise RuntimeError("the long Infer ended within its deadline")
    except Exception as exc:  # the host's AgentError
        if "DEADLINE_EXCEEDED" not in str(exc):
            raise
    began = time.monotonic()
    small = infer(agent, "runaway", {"x": np.ones((1, 1024), np.float32)}, timeout=120)
    took = time.monotonic() - began
    assert next(iter(small.values())).shape == (1, 1024)
    replaced = runner not in runners(agent.process.pid)
    return took, float(replaced)


# --- (e) -------------------------------------------------------------------------------------


def run_tests(reports: Path) -> dict[str, int]:
    """The load, fuzz and fault tests with modest sizes; their JSON reports go to `reports`."""
    env = {**os.environ, "EDGEOPT_LOAD_REPORT": str(reports / "load.jsonl"),
           "EDGEOPT_FUZZ_REPORT": str(reports / "fuzz.jsonl"),
           "EDGEOPT_FAULT_REPORT": str(reports / "faults.jsonl"),
           "EDGEOPT_LOAD_SECONDS": "4", "EDGEOPT_FUZZ_EXAMPLES": "40",
           "EDGEOPT_FAULT_KILLS": "20"}  # fmt: skip
    codes = {}
    for name, path, report in (
        ("load", "tests/agent/test_load.py", None),
        ("fuzz", "tests/agent/test_fuzz_rpc.py", None),
        ("host fuzz", "tests/cli/test_fuzz_cli.py", reports / "host_fuzz.jsonl"),
        ("faults", "tests/integration/test_kill_faults.py", None),
    ):
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", path]
        extra = {"EDGEOPT_FUZZ_REPORT": str(report)} if report else {}
        done = subprocess.run(command, cwd=ROOT, env={**env, **extra}, capture_output=True,
                              text=True, check=False)  # fmt: skip
        codes[name] = done.returncode
        print(f"{path}: exit {done.returncode}\n{done.stdout[-1500:]}", file=sys.stderr)
    return codes


def last_line(path: Path, test: str) -> dict[str, Any] | None:
    if not path.exists():
        return None
    found = None
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record.get("test") == test:
            found = record
    return found


def host_fuzz_totals(path: Path) -> dict[str, int] | None:
    """The host fuzz tests' counts summed over their report lines (one per test)."""
    if not path.exists():
        return None
    totals = {"cases": 0, "tracebacks": 0, "partial_files": 0, "bad_messages": 0}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        for key in totals:
            totals[key] += int(record.get(key, 0))
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reports", type=Path, help="read the tests' reports from here")
    args = parser.parse_args()
    cpu = cpu_name()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        a = [unauthenticated_memory(tmp / f"a{i}") for i in range(args.repeats)]
        print(f"(a) {a}", file=sys.stderr)
        b = [large_inferences(tmp / f"b{i}") for i in range(args.repeats)]
        print(f"(b) {b}", file=sys.stderr)
        model = runaway_model(tmp / "runaway.onnx")
        c = [sigterm_during_runaway(tmp / f"c{i}", model) for i in range(args.repeats)]
        print(f"(c) {c}", file=sys.stderr)
        agent = start_agent(tmp / "d", "--request-timeout", "600")
        try:
            deploy(agent, model, "runaway")
            d_cancel = [cancel_benchmark(agent) for _ in range(args.repeats)]
            d_deadline = [deadline_recovery(agent) for _ in range(args.repeats)]
        finally:
            agent.stop()
        print(f"(d) {d_cancel} {d_deadline}", file=sys.stderr)
        if args.reports:
            reports, test_codes = args.reports, None
        else:
            reports = tmp / "reports"
            reports.mkdir()
            test_codes = run_tests(reports)
        load = last_line(reports / "load.jsonl", "load")
        fuzz = last_line(reports / "fuzz.jsonl", "fuzz")
        faults = last_line(reports / "faults.jsonl", "sigkill")
        host_fuzz = host_fuzz_totals(reports / "host_fuzz.jsonl")

    def med(rows: list[dict[str, Any]], key: str) -> float:
        return statistics.median(float(r[key]) for r in rows)

    def span(values: list[float]) -> str:
        return f"{min(values):.2f} to {max(values):.2f}"

    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    n = args.repeats
    lines = [
        "## Hardening (`python benchmarks/hardening.py`)",
        "",
        f"Measured {when} on {cpu}, Python {platform.python_version()}; median of {n} runs "
        "(range in brackets), all in the same run. Goals: issue 16.",
        "",
        "| figure | median | goal |",
        "|---|---|---|",
        f"| (a) agent idle RSS | {med(a, 'idle'):.1f} MiB | |",
        f"| (a) agent peak RSS during 6 concurrent 200 MiB wrong-token Infer calls "
        f"(answered {a[0]['codes']}) | {med(a, 'peak'):.1f} MiB, "
        f"+{med(a, 'over'):.1f} MiB ({span([r['over'] for r in a])}) | ≤ +50 MB |",
        f"| (b) agent RSS before 16 InferStream calls of 15 MB (4x3x640x640 float32, Add) "
        f"| {med(b, 'before'):.1f} MiB | |",
        f"| (b) highest during | {med(b, 'peak'):.1f} MiB, +{med(b, 'over'):.1f} MiB "
        f"({span([r['over'] for r in b])}) | ≤ 70 MB (the agent, runner apart) |",
        f"| (b) after | {med(b, 'after'):.1f} MiB | |",
        f"| (b) answers equal to x + 1 | {'all' if all(r['correct'] for r in b) else 'NOT all'} "
        "| all |",
        f"| (c) SIGTERM during a runaway Infer → agent exited | "
        f"{med(c, 'exit_s'):.2f} s ({span([r['exit_s'] for r in c])}) | ≤ 5 s |",
        f"| (c) its runners gone at exit | {sum(int(r['runners_gone']) for r in c)} of {n} | all |",
        f"| (d) Benchmark (max_seconds 300) cancelled → its runner gone | "
        f"{statistics.median(d_cancel):.2f} s ({span(d_cancel)}) | ≤ 2 s |",
        f"| (d) Infer deadline (3 s) hit → a small Infer answered again | "
        f"{statistics.median(t for t, _ in d_deadline):.2f} s "
        f"({span([t for t, _ in d_deadline])}); serving runner replaced in "
        f"{sum(int(r) for _, r in d_deadline)} of {n} | |",
    ]
    if load:
        lines.append(
            f"| (e) load: {load['clients']} clients, --max-concurrent-rpcs "
            f"{load['max_concurrent_rpcs']}, {load['seconds']} s | {load['calls']} calls, "
            f"{load['answered']} answered, refused: "
            + ", ".join(f"{k} {v}" for k, v in sorted(load["by_code"].items()))
            + f"; ListModels p50 {load['list_p50_ms']} ms, p99 {load['list_p99_ms']} ms; "
            f"agent RSS idle {load['idle_rss_mib']} MiB, peak {load['peak_rss_mib']} MiB | "
            "only expected codes |"
        )
    if fuzz:
        codes = {}
        for key, count in fuzz["codes"].items():
            code = key.rsplit(":", 1)[1]
            codes[code] = codes.get(code, 0) + count
        lines.append(
            f"| (e) fuzz: cases, agent deaths | {fuzz['cases']} cases, {fuzz['agent_deaths']} "
            "deaths; codes: "
            + ", ".join(f"{k} {v}" for k, v in sorted(codes.items()))
            + " | no death, no UNKNOWN/INTERNAL |"
        )
    if host_fuzz:
        lines.append(
            f"| (e) host fuzz: mutated models, .npz files, inventories and profiles to the CLI | "
            f"{host_fuzz['cases']} cases, {host_fuzz['tracebacks']} tracebacks, "
            f"{host_fuzz['partial_files']} partial files, {host_fuzz['bad_messages']} messages "
            "not one line | 0, 0, 0 |"
        )
    if faults:
        lines.append(
            f"| (e) faults: SIGKILLs at random points, store consistent after | "
            f"{faults['consistent']} of {faults['kills']} ({faults['uploads_resumed']} "
            "uploads resumed) | all |"
        )
    if test_codes is not None:
        lines += ["", "Tests run for (e) (pytest exit status; 0 passed): "
                  + ", ".join(f"{k} {v}" for k, v in test_codes.items()) + "."]  # fmt: skip
    print(write_section("hardening", "\n".join(lines) + "\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
