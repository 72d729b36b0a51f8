"""Boards over SSH: bootstrap wall time, profiling overhead, tunnel throughput.

    python benchmarks/ssh.py [--rounds 3]      (or `make bench`)

A real OpenSSH sshd on loopback is the board (tests/sshd.py; make installs openssh-server).
- Bootstrap (`edgeopt ssh bootstrap --offline`, the library call the command makes): cold with
  an empty host cache (the host builds the wheel and fetches the board's wheels from the
  package index), cold on the board with the host cache warm, and warm (a re-run: an upgrade
  in place).
- Profiling overhead: the agent's Profile (mean wall time of a profiled run) against its
  Benchmark (mean of unprofiled runs), same model, threads and input, interleaved rounds.
- Tunnel: a 100 MiB push straight to the agent and through an SSH tunnel to it, interleaved.
Writes its table into benchmarks/RESULTS.md between the ssh markers.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import write_section  # noqa: E402

from edgeopt.host.compress.latency import host_cpu  # noqa: E402
from edgeopt.host.transport.client import AgentClient, ClientConfig, to_tensors  # noqa: E402
from edgeopt.host.transport.ssh import bootstrap  # noqa: E402
from edgeopt.host.transport.ssh import connection as ssh  # noqa: E402
from edgeopt.host.transport.ssh.tunnel import Tunnel  # noqa: E402
from edgeopt.proto.v1 import agent_pb2  # noqa: E402
from tests import sshd  # noqa: E402
from tests.conftest import RunningAgent, start_agent  # noqa: E402
from tests.corpus import CORPUS, fetch, make_inputs  # noqa: E402
from tests.models import train_digits_cnn  # noqa: E402
from tests.ports import free_port  # noqa: E402


def bootstrap_times(server: sshd.Sshd, tmp: Path) -> list[str]:
    rows = []
    spec = f"root@127.0.0.1:{server.port}"
    cases = (("cold: empty host cache (wheel built, board's wheels downloaded)", "c1", "x1"),
             ("cold board, host cache warm", "c1", "x2"),
             ("warm: the same board again (upgrade in place)", "c1", "x2"))  # fmt: skip
    for label, cache, folder in cases:
        port = free_port()
        start = time.monotonic()
        with ssh.connect(spec, key_file=server.client_key) as conn:
            done = bootstrap.bootstrap(conn, folder=str(tmp / folder), port=port, offline=True,
                                       cache=tmp / cache)  # fmt: skip
        seconds = time.monotonic() - start
        rows.append(f"| {label} | {seconds:.1f} s | {'upgraded' if done.upgraded else 'new'} |")
        print(rows[-1], flush=True)
    with ssh.connect(spec, key_file=server.client_key) as conn:
        for folder in ("x1", "x2"):
            bootstrap.remove(conn, folder=str(tmp / folder), purge=True)
    return rows


async def _profile_vs_bench(agent: RunningAgent, path: Path, feed: dict, threads: int,
                            rounds: int) -> tuple[float, float]:  # fmt: skip
    plan = agent_pb2.Plan(intra_op_threads=threads, inter_op_threads=1)
    profiled, plain = [], []
    async with AgentClient(agent.address, token=agent.token, config=ClientConfig(300)) as client:
        sha = (await client.push(path, "")).sha256
        for _ in range(rounds):
            bench = await client.benchmark(agent_pb2.BenchmarkRequest(
                sha256=sha, plan=plan, inputs=to_tensors(feed), min_repeats=50, max_repeats=50,
                max_seconds=60))  # fmt: skip
            prof = await client.profile(agent_pb2.ProfileRequest(
                sha256=sha, plan=plan, inputs=to_tensors(feed), runs=50, warmup=5))  # fmt: skip
            plain.append(bench.latency.mean_ms)
            profiled.append(prof.run_ms)
    return statistics.median(profiled), statistics.median(plain)


async def _push(address: str, token: str, blob: Path) -> float:
    async with AgentClient(address, token=token, config=ClientConfig(600)) as client:
        start = time.monotonic()
        await client.push(blob, "")
        return time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    reason = sshd.unavailable_reason()
    if reason:
        print(f"skipped: {reason}")
        return 1
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        home = tmp / "home"
        (home / ".ssh").mkdir(parents=True)
        os.environ["HOME"] = str(home)
        with sshd.Sshd(tmp / "sshd") as server:
            kind, blob = (server.folder / "host_ed25519.pub").read_text().split()[:2]
            (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{server.port} {kind} {blob}\n")
            (home / ".ssh" / "config").write_text(f"Host *\n  IdentityFile {server.client_key}\n")
            boot = bootstrap_times(server, tmp)
            agent = start_agent(tmp / "agent")
            try:
                (tmp / "digits").mkdir()
                digits = train_digits_cnn(tmp / "digits")
                yolo = next(c for c in CORPUS if c.key == "yolov8n-nudenet")
                image = np.load(digits.validation)["image"][:1]
                photo = {k: v[:1] for k, v in make_inputs(yolo, 1, seed=1).items()}
                models = [("digits CNN", digits.onnx, {"image": image}),
                          ("YOLOv8n 320", fetch((yolo,))[yolo.key], photo)]  # fmt: skip
                prof_rows = []
                for label, path, feed in models:
                    for threads in (1, 2):
                        profiled, plain = asyncio.run(
                            _profile_vs_bench(agent, path, feed, threads, args.rounds)
                        )
                        ratio = profiled / plain
                        prof_rows.append(f"| {label} | {threads} | {plain:.3g} ms | "
                                         f"{profiled:.3g} ms | {ratio:.2f} |")  # fmt: skip
                        print(prof_rows[-1], flush=True)
                tunnel = Tunnel(f"root@127.0.0.1:{server.port}", agent.address)
                if tunnel.wait(30):
                    raise RuntimeError(tunnel.error)
                direct, tunneled = [], []
                size = 100 << 20
                for i in range(args.rounds):
                    for kind_, address, out in (("direct", agent.address, direct),
                                                ("tunnel", tunnel.address, tunneled)):  # fmt: skip
                        blob_path = tmp / f"blob-{kind_}-{i}.bin"
                        blob_path.write_bytes(os.urandom(size))
                        out.append(size / 2**20 / asyncio.run(_push(address, agent.token or "",
                                                                     blob_path)))  # fmt: skip
                        blob_path.unlink()
                tunnel.close()
            finally:
                agent.stop()
    d, t = statistics.median(direct), statistics.median(tunneled)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join([
        "## Boards over SSH (`python benchmarks/ssh.py`)",
        "",
        f"Measured {when} on {host_cpu()}; the board is this machine behind a real OpenSSH sshd "
        "on loopback.",
        "",
        "| bootstrap (`--offline`) | wall time | agent |",
        "|---|---|---|",
        *boot,
        "",
        f"Profiling overhead (the agent's Profile, 50 profiled runs, against its Benchmark, 50 "
        f"runs; median of {args.rounds} interleaved rounds):",
        "",
        "| model | threads | mean, unprofiled | mean, profiled | ratio |",
        "|---|---|---|---|---|",
        *prof_rows,
        "",
        f"Tunnel: a 100 MiB push straight to the agent {d:.0f} MiB/s, through the SSH tunnel "
        f"{t:.0f} MiB/s ({t / d:.2f}x; median of {args.rounds} interleaved pushes each).",
    ])  # fmt: skip
    print(write_section("ssh", text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
