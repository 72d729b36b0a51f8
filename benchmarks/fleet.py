"""Fleet benchmarking: one command over 16 agents, run-to-run spread, and compare's verdicts.

    python benchmarks/fleet.py [--agents 16] [--pairs 20]      (or `make bench`)

- Fan-out: 16 real agents (processes on loopback) benchmarked by one `edgeopt bench` run
  (the library call the command makes), all at once: wall time against the sum of the
  per-device times, and the host's CPU time per device. The boards share this machine's CPUs,
  so their latencies are flagged "loaded" and say nothing about the model: the figure is the
  orchestration's.
- Spread: 5 runs of the same case (YOLOv8n of the corpus, int8-static, 2 threads, one agent):
  (max - min) / median of their p50s (goal <= 3 %).
- compare: 2 x `--pairs` consecutive runs of the same case on the same board, compared in
  pairs with the history so far (as `edgeopt bench compare` does): how many it calls a change
  (goal: none); then as many runs with the board's agent pinned to one CPU (2 threads on 1 CPU,
  a real slowdown), each compared with one of the earlier runs: how many it calls slower
  (goal: all).
Writes its table into benchmarks/RESULTS.md between the fleet markers.
"""

from __future__ import annotations

import argparse
import datetime
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import write_section  # noqa: E402

from edgeopt.host.compress import CompressRequest  # noqa: E402
from edgeopt.host.compress.latency import host_cpu  # noqa: E402
from edgeopt.host.config.inventory import Device  # noqa: E402
from edgeopt.host.report import history  # noqa: E402
from edgeopt.host.store.state import State  # noqa: E402
from edgeopt.host.transport.client import ClientConfig  # noqa: E402
from edgeopt.host.workflows import bench  # noqa: E402
from edgeopt.host.workflows.plans import DeployOptions  # noqa: E402
from tests.conftest import RunningAgent, start_agent  # noqa: E402
from tests.corpus import CORPUS, fetch, write_data  # noqa: E402
from tests.models import train_digits_cnn  # noqa: E402


def device(name: str, agent: RunningAgent) -> Device:
    return Device(name=name, address=agent.address, token_file=agent.token_file)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def fan_out(tmp: Path, count: int, state: State) -> str:
    (tmp / "digits").mkdir()
    digits = train_digits_cnn(tmp / "digits")
    agents = [start_agent(tmp / f"a{i}") for i in range(count)]
    try:
        devices = [device(f"board{i:02d}", a) for i, a in enumerate(agents)]
        options = bench.BenchOptions(
            deploy=DeployOptions(request=CompressRequest(model=digits.onnx, precision="fp32"),
                                 name="digits", parallel=count),
            threads=(1,), max_seconds=1.0,
        )  # fmt: skip
        bench.bench(devices[:1], options, state)  # compression cached, as a fleet run finds it
        cpu0, wall0 = cpu_seconds(), time.monotonic()
        run = bench.bench(devices, options, state, config=ClientConfig(60))
        wall, cpu = time.monotonic() - wall0, cpu_seconds() - cpu0
    finally:
        for a in agents:
            a.stop()
    ok = sum(c.status == "ok" for c in run.cases)
    total = sum(c.seconds for c in run.cases)
    return (f"| {count} agents, digits CNN fp32, 1 thread, --max-seconds 1 | {ok}/{count} "
            f"measured | {wall:.1f} s | {total:.1f} s | {total / wall:.1f}x | "
            f"{cpu / count * 1e3:.0f} ms |")  # fmt: skip


def one_run(agent: RunningAgent, options: bench.BenchOptions, state: State) -> str:
    run = bench.bench([device("pi", agent)], options, state, config=ClientConfig(60))
    (case,) = run.cases
    if case.status != "ok":
        raise RuntimeError(f"benchmark failed: {case.error}")
    return run.id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=16)
    parser.add_argument("--pairs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        os.environ["EDGEOPT_CACHE_DIR"] = str(tmp / "cache")
        with State(str(tmp / "state.db")) as state:
            fan = fan_out(tmp, args.agents, state)
            print(fan, flush=True)
            yolo = next(c for c in CORPUS if c.key == "yolov8n-nudenet")
            request = CompressRequest(model=fetch((yolo,))[yolo.key], precision="int8-static",
                                      calibration=write_data(yolo, tmp, 8, 1))  # fmt: skip
            options = bench.BenchOptions(
                deploy=DeployOptions(request=request, name="yolo"), threads=(2,),
                max_seconds=3.0, inputs=write_data(yolo, tmp, 1, 2),
            )  # fmt: skip
            whole = start_agent(tmp / "whole")
            pinned = start_agent(tmp / "pinned", prefix=("taskset", "-c", "0"))
            try:
                # The board's history first (consecutive runs, nothing changed), then the same
                # board with its agent pinned to one CPU: a real slowdown.
                steady = [one_run(whole, options, state) for _ in range(2 * args.pairs)]
                slowed = [one_run(pinned, options, state) for _ in range(args.pairs)]
            finally:
                whole.stop()
                pinned.stop()
            everything = state.benchmarks("pi", limit=100_000)
            by_run = {r["run"]: r for r in everything}
            p50s = [by_run[r]["result"]["latency"]["p50_ms"] for r in steady]
            first5 = p50s[:5]
            spread = (max(first5) - min(first5)) / statistics.median(first5)
            spread_all = (max(p50s) - min(p50s)) / statistics.median(p50s)
            same = list(zip(steady[::2], steady[1::2], strict=True))
            slow = list(zip(steady[-args.pairs :], slowed, strict=True))

            def verdicts(pairs: list[tuple[str, str]]) -> list[history.Change]:
                out = []
                for x, y in pairs:
                    changes, _ = history.compare(state.benchmarks(run=x), state.benchmarks(run=y),
                                                 history=everything)  # fmt: skip
                    out.append(changes[0])
                return out

            false_calls = [c.verdict for c in verdicts(same) if c.verdict != "no change"]
            slow_changes = verdicts(slow)
            caught = [c for c in slow_changes if c.verdict == "slower"]
            ratios = [c.ratio for c in slow_changes]
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join([
        "## Fleet benchmarking (`python benchmarks/fleet.py`)",
        "",
        f"Measured {when} on {host_cpu()}; every agent is a real process on loopback.",
        "",
        "| fan-out | cases | wall time | sum of per-device times | overlap | host CPU per device |",
        "|---|---|---|---|---|---|",
        fan,
        "",
        f"- Run-to-run spread of p50 over 5 consecutive runs of one case (YOLOv8n int8-static, 2 "
        f"threads, --max-seconds 3): {spread:.1%} (goal <= 3 %: "
        f"{'met' if spread <= 0.03 else 'not met'}); p50s {', '.join(f'{p:.2f}' for p in first5)}"
        f" ms; over all {len(p50s)} runs: {spread_all:.1%} (min {min(p50s):.2f}, median "
        f"{statistics.median(p50s):.2f}, max {max(p50s):.2f} ms).",
        f"- `compare` on {len(same)} pairs of runs of that case on the same board: "
        f"{len(false_calls)} change(s) called (goal: none)"
        + (": " + ", ".join(false_calls) if false_calls else "") + ".",
        f"- `compare` where the second run's agent was pinned to one CPU (2 threads on 1 CPU): "
        f"{len(caught)}/{len(slow)} called slower (goal: all); slowdown "
        f"{min(ratios):.2f}x to {max(ratios):.2f}x.",
    ])  # fmt: skip
    print(write_section("fleet", text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
