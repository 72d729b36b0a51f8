"""What deploying costs: push throughput, resume, a slow link, a fleet, the agent's memory.

    python benchmarks/deploy.py [--rounds 5]      (or `make bench`)

- Push: a 100 MiB artifact to a real agent on loopback (gRPC, 1 MiB chunks, digest verified),
  against paramiko SFTP of the same file to a real OpenSSH sshd on loopback, interleaved round
  by round; medians and their ratio.
- Resume: a TCP proxy between host and agent drops the connection once, after a random number
  of bytes; the client resumes from the offset the agent holds. Re-sent = bytes the client
  handed to gRPC over all attempts minus the file size. Re-deploying an artifact the agent has
  sends 0 payload bytes.
- A rate-limited link: the agent in a network namespace behind a veth pair with a `tc tbf`
  10 mbit qdisc on both ends; goodput of a 10 MiB push as a share of the link rate.
- A fleet: 16 agent processes on loopback, one deploy of a real CNN in static int8: wall time
  against the sum of the devices' phase times, compressions run, host CPU seconds per device.
- Memory: the agent's RSS with 0, 1 and 3 models active (ONNX Runtime lives in the runner
  process, whose RSS is beside it).
Writes its tables into benchmarks/RESULTS.md between the deploy markers.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import random
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import paramiko
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import write_section  # noqa: E402

from edgeopt.host.compress import CompressRequest  # noqa: E402
from edgeopt.host.compress.latency import host_cpu  # noqa: E402
from edgeopt.host.config.inventory import Device  # noqa: E402
from edgeopt.host.store.state import State  # noqa: E402
from edgeopt.host.transport.client import CHUNK_SIZE, AgentClient  # noqa: E402
from edgeopt.host.workflows.deploy import Deployer  # noqa: E402
from edgeopt.host.workflows.plans import DeployOptions  # noqa: E402
from tests import netns, sshd  # noqa: E402
from tests.conftest import RunningAgent, start_agent  # noqa: E402
from tests.models import train_digits_cnn  # noqa: E402
from tests.proxy import CuttingProxy  # noqa: E402

MIB = 1 << 20
NOTES = """Notes on the goals not met here. Push vs SFTP: SFTP ran at 100-120 MiB/s on this
machine, 2-4x what shared/TESTING.md measured (25-58 MiB/s) when the goal was set; the push also
hashes the file on both sides and fsyncs it before answering, SFTP does neither. Resume: the
re-sent bytes are those gRPC had taken from the client but the agent never received (the HTTP/2
flow-control window and the socket buffers, up to ~5 MiB on loopback); the agent keeps every
whole chunk that reached it. Bounding the loss to one chunk takes an acknowledgement per chunk
(a bidirectional push with a one-chunk window), which would cap throughput at one chunk per
round trip on high-latency links; not done."""


def client(agent: RunningAgent) -> AgentClient:
    return AgentClient(agent.address, token=agent.token, device="bench")


async def _push(address: str, token: str | None, path: Path, name: str) -> tuple[float, Any]:
    async with AgentClient(address, token=token, device="bench") as c:
        start = time.perf_counter()
        result = await c.push(path, name)
        return time.perf_counter() - start, result


async def _drop(agent: RunningAgent, name: str) -> None:
    async with client(agent) as c:
        await c.delete(name, force=True)


def push_vs_sftp(agent: RunningAgent, server: sshd.Sshd, path: Path, rounds: int) -> dict[str, Any]:
    size = path.stat().st_size
    key = paramiko.Ed25519Key.from_private_key_file(str(server.client_key))
    grpc_s, sftp_s = [], []
    for _ in range(rounds):
        seconds, result = asyncio.run(_push(agent.address, agent.token, path, "big"))
        assert result.bytes_received == size
        grpc_s.append(seconds)
        asyncio.run(_drop(agent, "big"))
        ssh = paramiko.SSHClient()
        ssh.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        ssh.connect("127.0.0.1", port=server.port, username="root", pkey=key,
                    allow_agent=False, look_for_keys=False, timeout=30)  # fmt: skip
        sftp = ssh.open_sftp()
        start = time.perf_counter()
        sftp.put(str(path), "/tmp/edgeopt-bench-sftp.bin")
        sftp_s.append(time.perf_counter() - start)
        sftp.remove("/tmp/edgeopt-bench-sftp.bin")
        ssh.close()
    g, s = statistics.median(grpc_s), statistics.median(sftp_s)
    return {
        "grpc_mib_s": size / MIB / g, "sftp_mib_s": size / MIB / s, "ratio": s / g,
        "grpc_range": (min(grpc_s), max(grpc_s)), "sftp_range": (min(sftp_s), max(sftp_s)),
    }  # fmt: skip


async def _resume_once(agent: RunningAgent, path: Path, cut: int) -> dict[str, int]:
    proxy = CuttingProxy(agent.address, cut)
    await proxy.start()
    handed = 0

    def progress(done: int, total: int) -> None:
        nonlocal handed
        handed += CHUNK_SIZE if done % CHUNK_SIZE == 0 else done % CHUNK_SIZE

    try:
        async with AgentClient(f"127.0.0.1:{proxy.port}", token=agent.token, device="bench") as c:
            result = await c.push(path, "resume", progress=progress)
    finally:
        await proxy.close()
    size = path.stat().st_size
    return {"cut": cut, "held": size - result.bytes_received, "resent": handed - size}


def resume(agent: RunningAgent, path: Path, trials: int) -> dict[str, Any]:
    size = path.stat().st_size
    rng = random.Random(7)
    rows = []
    for _ in range(trials):
        rows.append(
            asyncio.run(_resume_once(agent, path, rng.randrange(size // 10, size * 9 // 10)))
        )
        asyncio.run(_drop(agent, "resume"))
    asyncio.run(_push(agent.address, agent.token, path, "again"))
    _, again = asyncio.run(_push(agent.address, agent.token, path, "again"))
    return {"rows": rows, "again_bytes": again.bytes_received}


def slow_link(path: Path, tmp: Path) -> dict[str, Any] | str:
    reason = netns.unavailable_reason()
    if reason is not None:
        return reason
    token = secrets.token_urlsafe(16)
    (tmp / "ns-token").write_text(token)
    with netns.Lab(1) as lab:
        host_end, ns_end = f"eo{lab.tag}h0", f"eo{lab.tag}n0"
        shape = ["root", "tbf", "rate", "10mbit", "burst", "32kbit", "latency", "400ms"]
        subprocess.run(["tc", "qdisc", "replace", "dev", host_end, *shape], check=True)
        subprocess.run(lab.run_in(0, ["tc", "qdisc", "replace", "dev", ns_end, *shape]),
                       check=True)  # fmt: skip
        ready = tmp / "ns-ready"
        cmd = lab.run_in(0, [sys.executable, "-m", "edgeopt.agent", "serve", "--listen",
                             "0.0.0.0:50051", "--store", str(tmp / "ns-store"), "--token-file",
                             str(tmp / "ns-token"), "--ready-file", str(ready),
                             "--insecure"])  # fmt: skip
        agent = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while not ready.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            seconds, result = asyncio.run(_push(f"{lab.address(0)}:50051", token, path, "slow"))
        finally:
            agent.terminate()
            agent.wait(timeout=15)
    rate = result.bytes_received * 8 / seconds
    return {"seconds": seconds, "mbit_s": rate / 1e6, "share": rate / 10e6}


def fleet(tmp: Path, count: int) -> dict[str, Any]:
    (tmp / "digits").mkdir()
    digits = train_digits_cnn(tmp / "digits")
    agents = [start_agent(tmp / f"fleet{i}") for i in range(count)]
    try:
        devices = [Device(name=f"board{i:02d}", address=a.address, token_file=a.token_file)
                   for i, a in enumerate(agents)]  # fmt: skip
        options = DeployOptions(
            request=CompressRequest(model=digits.onnx, precision="int8-static",
                                    calibration=digits.calibration),
            name="digits", parallel=8,
        )  # fmt: skip
        os.environ["EDGEOPT_CACHE_DIR"] = str(tmp / "fleet-cache")
        with State(str(tmp / "fleet-state.db")) as state:
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            start = time.perf_counter()
            report = Deployer(devices, options, state).run("fleet")
            wall = time.perf_counter() - start
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        compress_s = max(r.phases.get("compress", 0.0) for r in report.results)
        phase_sum = sum(sum(v for k, v in r.phases.items() if k != "compress")
                        for r in report.results)  # fmt: skip
        return {"ok": sum(r.outcome == "ok" for r in report.results), "count": count,
                "wall": wall, "phase_sum": phase_sum, "compressions": report.compressions,
                "cpu_per_device": cpu / count, "compress_s": compress_s}  # fmt: skip
    finally:
        for agent in agents:
            agent.stop()


def _small_model(path: Path, width: int) -> Path:
    weights = np.random.default_rng(width).standard_normal((width, width)).astype(np.float32)
    w = numpy_helper.from_array(weights, "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "m",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", width])],
        initializer=[w],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def memory(tmp: Path) -> list[tuple[int, int, int]]:
    agent = start_agent(tmp / "memory")
    rows = []
    try:
        models = [_small_model(tmp / f"m{i}.onnx", 512 * (i + 1)) for i in range(3)]

        async def go() -> None:
            async with client(agent) as c:
                for count in (0, 1, 3):
                    for i in range((len(rows) and rows[-1][0]) or 0, count):
                        pushed = await c.push(models[i], f"m{i}")
                        await c.activate(f"m{i}", pushed.version)
                    await asyncio.sleep(1.0)
                    listing = await c.list_models()
                    rows.append((count, listing.agent_rss_bytes, listing.runner_rss_bytes))

        asyncio.run(go())
    finally:
        agent.stop()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fleet", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        big = tmp / "big.bin"
        big.write_bytes(os.urandom(100 * MIB))
        ten = tmp / "ten.bin"
        ten.write_bytes(os.urandom(10 * MIB))
        agent = start_agent(tmp / "agent")
        try:
            reason = sshd.unavailable_reason()
            if reason is None:
                with sshd.Sshd(tmp / "sshd") as server:
                    throughput: dict[str, Any] | str = push_vs_sftp(agent, server, big, args.rounds)
            else:
                throughput = reason
            resumed = resume(agent, big, 5)
        finally:
            agent.stop()
        link = slow_link(ten, tmp)
        fleet_figures = fleet(tmp, args.fleet)
        rss = memory(tmp)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## Deploy (`python benchmarks/deploy.py`)",
        "",
        f"Measured {when} on {host_cpu()}; the agent and the host on this machine (loopback "
        "unless said).",
        "",
        "| figure | value | goal (issue 7) |",
        "|---|---|---|",
    ]
    if isinstance(throughput, str):
        lines.append(f"| push vs SFTP | not measured: {throughput} | ≥ 5x |")
    else:
        t = throughput
        lines += [
            f"| push of 100 MiB over gRPC (median of {args.rounds}) | {t['grpc_mib_s']:.0f} MiB/s "
            f"({t['grpc_range'][0]:.2f} to {t['grpc_range'][1]:.2f} s) | |",
            f"| paramiko SFTP of the same file to OpenSSH sshd | {t['sftp_mib_s']:.0f} MiB/s "
            f"({t['sftp_range'][0]:.2f} to {t['sftp_range'][1]:.2f} s) | |",
            f"| push ÷ SFTP throughput, same run | {t['ratio']:.1f}x | ≥ 5x: "
            f"{'met' if t['ratio'] >= 5 else 'not met'} |",
        ]
    worst = max(r["resent"] for r in resumed["rows"])
    cuts = "; ".join(f"cut at {r['cut'] / MIB:.1f} MiB, agent held {r['held'] / MIB:.1f} MiB, "
                     f"re-sent {r['resent'] / MIB:.2f} MiB" for r in resumed["rows"])  # fmt: skip
    lines += [
        f"| resume after a dropped connection (5 random cuts of a 100 MiB push) | worst re-sent "
        f"{worst / MIB:.2f} MiB = {worst / CHUNK_SIZE:.2f} chunks of {CHUNK_SIZE // MIB} MiB | "
        f"≤ 1 chunk: {'met' if worst <= CHUNK_SIZE else 'not met'} |",
        f"| re-deploying an artifact the agent has | {resumed['again_bytes']} payload bytes | "
        f"0: {'met' if resumed['again_bytes'] == 0 else 'not met'} |",
    ]
    if isinstance(link, str):
        lines.append(f"| 10 MiB push through a 10 mbit tbf link | not measured: {link} | ≥ 90 % |")
    else:
        lines.append(
            f"| 10 MiB push through a 10 mbit `tc tbf` link (network namespace) | "
            f"{link['mbit_s']:.2f} Mbit/s in {link['seconds']:.1f} s = {link['share']:.0%} of "
            f"the link | ≥ 90 %: {'met' if link['share'] >= 0.9 else 'not met'} |"
        )
    f = fleet_figures
    lines += [
        f"| fleet: {f['count']} agents, one `deploy` of the digits CNN (static int8) | "
        f"{f['ok']}/{f['count']} ok in {f['wall']:.1f} s wall (compression {f['compress_s']:.1f} s "
        f"once) against {f['phase_sum']:.1f} s of per-device connect+push+activate | |",
        f"| compressions for the fleet | {f['compressions']} | 1: "
        f"{'met' if f['compressions'] == 1 else 'not met'} |",
        f"| host CPU per device (compression included) | {f['cpu_per_device']:.2f} s | |",
    ]
    for count, agent_rss, runner_rss in rss:
        lines.append(
            f"| agent RSS with {count} model(s) active (runner beside it) | "
            f"{agent_rss / MIB:.1f} MiB (runner {runner_rss / MIB:.1f} MiB) | ≤ 70 MB: "
            f"{'met' if agent_rss <= 70e6 else 'not met'} |"
        )
    lines += ["", f"Resume trials: {cuts}.", "", NOTES]
    print(write_section("deploy", "\n".join(lines)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
