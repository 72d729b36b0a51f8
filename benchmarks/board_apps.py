"""Board applications and metrics: what counting and `--metrics` cost, and `edgeopt top`'s refresh.

    python benchmarks/board_apps.py [--agents 64] [--blocks 60] [--calls 100] [--refreshes 5]

- **RSS**: two agents with the digits CNN active, one with `--metrics` scraped 20 times, both
  after the same 300 inferences: the agent processes' RSS (runners apart), three pairs, medians;
  goal: metrics on within 5 MB of off.
- **Counting on Infer**: every Infer is counted (ListModels' InferStats; `--metrics` reads the same
  counts). Its cost alone (`InferCounts.served`, median of 20 rounds of 100 000 calls) beside the
  p50 of Infer from a client on loopback; and, measured, Infer's p50 on an agent with `--metrics`
  scraped every second against one without, in `--blocks` interleaved blocks of `--calls` calls
  each (paired, the order of each pair random): the ratio of the p50s with a Hodges-Lehmann 95 %
  interval (edgeopt.proto.paired); goal: counting costs at most 2 % of the p50.
- **top**: `--agents` agents on loopback, each with the digits CNN active; `--refreshes` refreshes
  of `edgeopt top`'s snapshot (one ListModels per board, 64 at once): wall time and the host's
  CPU time per refresh, medians.
Writes its tables into benchmarks/RESULTS.md between the board-apps markers.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from results import write_section  # noqa: E402

from edgeopt.agent.metrics import InferCounts  # noqa: E402
from edgeopt.host.compress.latency import host_cpu  # noqa: E402
from edgeopt.host.config.inventory import Device  # noqa: E402
from edgeopt.host.transport.client import AgentClient, ClientConfig  # noqa: E402
from edgeopt.host.workflows import top  # noqa: E402
from edgeopt.proto import paired  # noqa: E402
from tests.conftest import RunningAgent, start_agent  # noqa: E402
from tests.models import train_digits_cnn  # noqa: E402
from tests.ports import free_port  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def deploy(agent: RunningAgent, model: Path) -> None:
    async with AgentClient(agent.address, token=agent.token) as client:
        await client.push(model, "digits", version="v1")
        await client.activate("digits", "v1")


async def infer_times(agent: RunningAgent, x: np.ndarray, calls: int) -> list[float]:
    """Client-side milliseconds of `calls` Infer calls."""
    out = []
    async with AgentClient(agent.address, token=agent.token) as client:
        for _ in range(calls):
            start = time.perf_counter()
            await client.infer("digits", {"image": x})
            out.append((time.perf_counter() - start) * 1000)
    return out


def scrape(port: int) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        answer.read()


def rss_figures(tmp: Path, model: Path, x: np.ndarray) -> dict[str, float]:
    offs, ons = [], []
    for i in range(3):
        port = free_port()
        off = start_agent(tmp / f"rss-off{i}")
        on = start_agent(tmp / f"rss-on{i}", "--metrics", str(port))
        try:
            for agent in (off, on):
                asyncio.run(deploy(agent, model))
                asyncio.run(infer_times(agent, x, 300))
            for _ in range(20):
                scrape(port)
            time.sleep(1.0)
            offs.append(rss_mib(off.process.pid))
            ons.append(rss_mib(on.process.pid))
        finally:
            off.stop()
            on.stop()
    return {"off": statistics.median(offs), "on": statistics.median(ons),
            "diff": statistics.median(b - a for a, b in zip(offs, ons, strict=True))}  # fmt: skip


def counting_figures(tmp: Path, model: Path, x: np.ndarray, blocks: int, calls: int
                     ) -> dict[str, float]:  # fmt: skip
    counts = InferCounts()
    per_call = []
    for _ in range(20):
        start = time.perf_counter()
        for i in range(100_000):
            counts.served("digits", "v1", 0.3 + (i % 7) * 0.1)
        per_call.append((time.perf_counter() - start) / 100_000 * 1e6)
    port = free_port()
    plain = start_agent(tmp / "plain")
    metered = start_agent(tmp / "metered", "--metrics", str(port))
    stop = False

    def scraper() -> None:
        while not stop:
            scrape(port)
            time.sleep(1.0)

    import threading  # noqa: PLC0415

    thread = threading.Thread(target=scraper, daemon=True)
    try:
        for agent in (plain, metered):
            asyncio.run(deploy(agent, model))
            asyncio.run(infer_times(agent, x, 200))  # warm
        thread.start()
        rng = random.Random(3)
        a_ms, b_ms = [], []
        for _ in range(blocks):
            order = [(plain, a_ms), (metered, b_ms)]
            rng.shuffle(order)
            for agent, sink in order:
                sink.append(statistics.median(asyncio.run(infer_times(agent, x, calls))))
        estimate = paired.estimate(a_ms, b_ms)
    finally:
        stop = True
        plain.stop()
        metered.stop()
    p50 = statistics.median(a_ms)
    cost = statistics.median(per_call)
    return {"count_us": cost, "p50_ms": p50, "share": cost / 1000 / p50,
            "ratio": estimate.ratio, "low": estimate.low, "high": estimate.high,
            "blocks": blocks, "calls": calls}  # fmt: skip


def top_figures(tmp: Path, model: Path, count: int, refreshes: int) -> dict[str, float]:
    agents = []
    try:
        for i in range(count):
            agents.append(start_agent(tmp / f"top{i}"))

        async def deploy_all() -> None:
            bound = asyncio.Semaphore(4)

            async def one(agent: RunningAgent) -> None:
                async with bound:
                    await deploy(agent, model)

            await asyncio.gather(*(one(a) for a in agents))

        asyncio.run(deploy_all())
        devices = []
        for i, agent in enumerate(agents):
            devices.append(Device(f"board{i:02d}", agent.address, token_file=agent.token_file))
        walls, cpus, reachable = [], [], 0
        for _ in range(refreshes):
            cpu = time.process_time()
            start = time.perf_counter()
            snap = asyncio.run(top.take(devices, ClientConfig(), 64))
            walls.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
            reachable = sum(b.reachable for b in snap.boards.values())
            time.sleep(1.0)
        rows = top.rows(snap, None)
    finally:
        for agent in agents:
            agent.stop()
    return {"wall": statistics.median(walls), "cpu": statistics.median(cpus),
            "reachable": reachable, "rows": len(rows), "count": count}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=60)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--refreshes", type=int, default=5)
    args = parser.parse_args()
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "digits").mkdir()
        digits = train_digits_cnn(tmp / "digits")
        x = np.load(digits.validation)["image"][:1]
        rss = rss_figures(tmp, Path(digits.onnx), x)
        print("rss", rss, file=sys.stderr)
        counting = counting_figures(tmp, Path(digits.onnx), x, args.blocks, args.calls)
        print("counting", counting, file=sys.stderr)
        fleet = top_figures(tmp, Path(digits.onnx), args.agents, args.refreshes)
        print("top", fleet, file=sys.stderr)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    c = counting
    body = "\n".join([
        "## Board applications and metrics (`python benchmarks/board_apps.py`)",
        "",
        f"Measured {when} on {host_cpu()}; real agents on loopback with the digits CNN "
        "active, the host's client on the same 2 CPUs.",
        "",
        "| figure | measured | goal |",
        "|---|---|---|",
        f"| agent RSS, --metrics on (scraped 20 times) vs off, after 300 inferences, median of "
        f"3 pairs | {rss['on']:.1f} MiB vs {rss['off']:.1f} MiB ({rss['diff']:+.1f} MiB) | "
        "within 5 MB |",
        f"| counting one inference (InferCounts.served) | {c['count_us']:.2f} us, "
        f"{100 * c['share']:.3f} % of Infer's p50 ({c['p50_ms']:.3f} ms from a client) | "
        "<= 2 % |",
        f"| Infer p50, --metrics on and scraped every second vs off, {c['blocks']} "
        f"interleaved blocks of {c['calls']} calls | ratio {c['ratio']:.4f} "
        f"({c['low']:.4f}-{c['high']:.4f}) | <= 1.02 |",
        f"| `edgeopt top`, one refresh of {fleet['count']} agents ({fleet['reachable']} "
        f"reachable, {fleet['rows']} models), median of {args.refreshes} | "
        f"{fleet['wall'] * 1000:.0f} ms wall, {fleet['cpu'] * 1000:.0f} ms host CPU | - |",
        "",
        f"- Whole benchmark: {(time.monotonic() - began) / 60:.0f} min.",
    ])  # fmt: skip
    print(write_section("board-apps", body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
