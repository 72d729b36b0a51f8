"""How fast the agent starts and how small it stays: the figures issue 2 asks for.

For each of N runs: spawn `python -m edgeopt.agent serve` on a free loopback port, time until
its ready file appears (written right after the health service turns SERVING), confirm SERVING
with a real health check, read its RSS while idle, call GetCapabilities once and read the RSS
again, then stop it with SIGTERM. A bare `python -c pass` is timed in the same runs, so the
start-up can also be read as a ratio that does not depend on how loaded the machine is.

    python benchmarks/agent_startup.py [--runs 15]

Writes its table into benchmarks/RESULTS.md (between the agent_startup markers).
Goals (issue 2): idle RSS <= 70 MB, start-up <= 1 s to SERVING on this machine.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from results import write_section

from edgeopt.proto import auth
from edgeopt.proto.v1 import agent_pb2, agent_pb2_grpc


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def one_run(tmp: Path) -> dict[str, float]:
    token = secrets.token_urlsafe(24)
    (tmp / "token").write_text(token)
    ready = tmp / "ready"
    ready.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "edgeopt.agent", "serve", "--listen", "127.0.0.1:0",
           "--store", str(tmp / "store"), "--token-file", str(tmp / "token"),
           "--ready-file", str(ready)]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not ready.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"agent exited with {proc.returncode}")
        time.sleep(0.002)
    startup = time.perf_counter() - start
    address = ready.read_text().strip()
    with grpc.insecure_channel(address) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        time.sleep(1.0)  # let the background ORT probe (a child process) finish
        idle = rss_mib(proc.pid)
        t0 = time.perf_counter()
        agent_pb2_grpc.AgentStub(channel).GetCapabilities(
            agent_pb2.GetCapabilitiesRequest(), metadata=(auth.bearer(token),), timeout=60
        )
        first_call = time.perf_counter() - t0
        after = rss_mib(proc.pid)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    bare = time.perf_counter() - t0
    return {"startup": startup, "idle": idle, "after": after, "call": first_call, "bare": bare}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            runs.append(one_run(Path(tmp)))
            print(f"run {i + 1}/{args.runs}: {runs[-1]}", file=sys.stderr)

    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    def spread(key: str) -> str:
        values = sorted(r[key] for r in runs)
        return f"{values[0]:.3g} to {values[-1]:.3g}"

    ratio = statistics.median(r["startup"] / r["bare"] for r in runs)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    table = f"""## Agent start-up and memory (`python benchmarks/agent_startup.py`)

Measured {when} on {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()};
median of {len(runs)} runs, with the range over all runs.
Goals (issue 2): ≤ 1 s to SERVING, ≤ 70 MB idle.

| figure | median | range |
|---|---|---|
| spawn → SERVING (ready file written) | {med("startup") * 1000:.0f} ms | {spread("startup")} s |
| the same, as a multiple of a bare `python -c pass` in the same run | {ratio:.1f} x | |
| idle RSS after start (ONNX Runtime not loaded in the agent) | {med("idle"):.1f} MiB \
| {spread("idle")} MiB |
| RSS after the first GetCapabilities | {med("after"):.1f} MiB | {spread("after")} MiB |
| first GetCapabilities round trip (probes re-read every call) | {med("call") * 1000:.1f} ms \
| {spread("call")} s |
"""
    print(write_section("agent_startup", table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
