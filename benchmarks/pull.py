"""Pull mode's figures: a fleet converging through a registry, cut downloads, the agent's cost.

    python benchmarks/pull.py [--agents 64] [--interval 10] [--cuts 10] [--idle 60]

- **Fleet**: Debian's docker-registry (TLS, with a certificate the fleet CA issued, and an
  htpasswd login) and `--agents` agents in pull mode. Where network namespaces can be made, each
  agent runs in a namespace of its own on a bridge, and the registry listens on the bridge's
  address: the boards reach the registry; the host never dials a board (they listen on no port,
  which is checked). Elsewhere the agents run on loopback with no listening port. `edgeopt
  publish --fleet` (the real command: plan from each board's status, compress, upload, write 64
  desired states) of the digits CNN (fp32), twice: the first publish meets runners that have
  not loaded ONNX Runtime yet, the second a running fleet. For each: the publish command's own
  time, then the time from its end to all boards converged (their statuses in the registry),
  beside the goal (2 x the poll interval + the download time); bytes the host uploaded (goal:
  the artifact once, not once per board) and bytes the registry sent the boards.
- **Cuts**: one agent pulls the corpus's YOLOv8n (fp32, 12 MB) through a relay that cuts the
  connection `--cuts` times, each after a random number of bytes; the bytes that crossed the
  relay beyond an uncut pull's, per cut (goal: at most one Range request's worth: the chunk in
  flight and the headers, never a restart).
- **Cost**: agent RSS in pull mode once converged (the agent process, its runner apart; goal
  <= 70 MB) beside an agent in push mode with the same model; registry requests per poll and
  per hour at the default 30 s interval, and the agent's CPU seconds over `--idle` seconds.
Writes its tables into benchmarks/RESULTS.md between the pull markers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import write_section  # noqa: E402

from edgeopt.host.compress.latency import host_cpu  # noqa: E402
from edgeopt.host.transport import tls  # noqa: E402
from edgeopt.host.transport.registry import FleetRegistry, registry_for  # noqa: E402
from edgeopt.proto import fleetstate as fs  # noqa: E402
from edgeopt.proto.plan import RunPlan  # noqa: E402
from tests import netns, registry  # noqa: E402
from tests.corpus import CORPUS, fetch  # noqa: E402
from tests.models import train_digits_cnn  # noqa: E402
from tests.registry import CuttingLink, OciRegistry  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_pull_agent(
    folder: Path, url: str, device: str, interval: float, creds: Path, ca: Path | None,
    prefix: list[str] | None = None,
) -> subprocess.Popen[bytes]:  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [*(prefix or []), sys.executable, "-m", "edgeopt.agent", "serve", "--pull", url,
           "--device-name", device, "--pull-interval", f"{interval}s",
           "--registry-credentials", str(creds), "--store", str(folder / "store"),
           "--ready-file", str(folder / "ready")]  # fmt: skip
    if ca is not None:
        cmd += ["--registry-ca", str(ca)]
    log = (folder / "agent.log").open("wb")
    try:
        return subprocess.Popen(cmd, stdout=log, stderr=log)
    finally:
        log.close()


def wait_all(fleet: FleetRegistry, names: list[str], done: Any, limit: float) -> dict[str, float]:
    """Seconds until `done(view)` held for each device (or `limit`), read every 0.25 s."""
    start = time.monotonic()
    reached: dict[str, float] = {}
    while len(reached) < len(names) and time.monotonic() - start < limit:
        for name in names:
            if name not in reached and done(fleet.view(name)):
                reached[name] = time.monotonic() - start
        time.sleep(0.25)
    return reached


def publish(inventory: Path, state: Path, model: Path, version: str, url: str, creds: Path,
            ca: Path | None) -> tuple[float, dict[str, Any]]:  # fmt: skip
    cmd = [str(Path(sys.executable).parent / "edgeopt"), "--inventory", str(inventory), "--state",
           str(state), "publish", str(model), "--fleet", "--registry", url,
           "--registry-credentials", str(creds), "--precision", "fp32", "--name", "digits",
           "--version", version, "--json"]  # fmt: skip
    if ca is not None:
        cmd += ["--registry-ca", str(ca)]
    start = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    took = time.monotonic() - start
    if done.returncode:
        raise RuntimeError(f"publish failed:\n{done.stdout}\n{done.stderr[-3000:]}")
    return took, json.loads(done.stdout)


def fleet_figures(tmp: Path, count: int, interval: float) -> dict[str, Any]:
    (tmp / "digits").mkdir()
    digits = train_digits_cnn(tmp / "digits")
    second = tmp / "digits-v2.onnx"
    import onnx  # noqa: PLC0415

    model = onnx.load(str(digits.onnx))
    model.doc_string = "v2"
    onnx.save(model, str(second))
    reason = netns.unavailable_reason()
    lab = netns.Lab(count) if reason is None else None
    out: dict[str, Any] = {"namespaces": reason is None, "why_not": reason or ""}
    agents: list[subprocess.Popen[bytes]] = []
    reg: OciRegistry | None = None
    try:
        if lab is not None:
            lab.__enter__()
        host = f"10.77.{lab.subnet}.1" if lab is not None else "127.0.0.1"
        tls.init_ca(tmp / "ca")
        cert, key = tls.write_issued(tls.issue(tmp / "ca", "registry", [host]), tmp / "reg-tls")
        ca = tmp / "ca" / "ca.pem"
        reg = OciRegistry(tmp / "registry", cert=cert, key=key, ca=ca, host=host).start()
        creds = reg.credentials_file(tmp / "creds.json")
        names = [f"board{i:02d}" for i in range(count)]
        for i, name in enumerate(names):
            prefix = ["ip", "netns", "exec", lab.namespaces[i]] if lab is not None else None
            agents.append(start_pull_agent(tmp / name, reg.url, name, interval, creds, ca, prefix))
        fleet = registry_for(reg.url, creds, ca)
        started = wait_all(fleet, names, lambda v: v.status is not None, 300)
        out["started"] = len(started)
        out["start_s"] = max(started.values()) if started else None
        if lab is not None:  # the host cannot dial a board: nothing listens in the namespaces
            refused = 0
            for i in range(count):
                with socket.socket() as s:
                    s.settimeout(2)
                    refused += s.connect_ex((lab.address(i), 50051)) != 0
            out["dial_refused"] = refused
        inventory = tmp / "edgeopt.toml"
        inventory.write_text("".join(f'[devices.{n}]\nregistry = "{reg.url}"\n' for n in names))
        for label, path, version in (("first", digits.onnx, "v1"), ("second", second, "v2")):
            before = sum(_bytes_in(fleet.view(n)) for n in names)
            took, report = publish(inventory, tmp / "state.db", Path(path), version, reg.url,
                                   creds, ca)  # fmt: skip
            reached = wait_all(fleet, names, lambda v: v.state == "converged", 600)
            after = sum(_bytes_in(fleet.view(n)) for n in names)
            out[label] = {
                "publish_s": took, "converged": len(reached),
                "all_s": max(reached.values()) if len(reached) == count else None,
                "median_s": statistics.median(reached.values()) if reached else None,
                "uploaded": report["bytes_uploaded"], "egress": after - before,
                "artifact": Path(path).stat().st_size,
                "ok": sum(d["outcome"] == "ok" for d in report["devices"]),
                "download_s": statistics.median(
                    v.status.timings.get("download_s", 0.0) for n in names
                    if (v := fleet.view(n)).status is not None
                ),
            }  # fmt: skip
        rss = [rss_mib(a.pid) for a in agents if a.poll() is None]
        out["rss_median"], out["rss_max"] = statistics.median(rss), max(rss)
        fleet.close()
    finally:
        for agent in agents:
            if agent.poll() is None:
                agent.send_signal(signal.SIGTERM)
        for agent in agents:
            try:
                agent.wait(timeout=30)
            except subprocess.TimeoutExpired:
                agent.kill()
        if reg is not None:
            reg.stop()
        if lab is not None:
            lab.close()
    return out


def _bytes_in(view: Any) -> float:
    return float(view.status.timings.get("bytes_in", 0.0)) if view.status is not None else 0.0


def cut_figures(tmp: Path, cuts: int, seed: int = 7) -> dict[str, Any]:
    yolo = next(c for c in CORPUS if c.key == "yolov8n-nudenet")
    model = fetch((yolo,))[yolo.key]
    reg = OciRegistry(tmp / "cut-registry").start()
    creds_host = reg.credentials_file(tmp / "cut-host.json")
    fleet = registry_for(reg.url, creds_host)
    published = fleet.publish_artifact(model, RunPlan(precision="fp32", intra_op_threads=1),
                                       "yolo", "v1")  # fmt: skip
    size = published.size
    rng = random.Random(seed)
    totals = {}
    try:
        for label, points in (("uncut", []),
                              ("cut", [rng.randint(64 << 10, size // (cuts + 2))
                                       for _ in range(cuts)])):  # fmt: skip
            device = f"cut-{label}"
            fleet.set_desired(device, [fs.DesiredModel("yolo", "v1", published.artifact, "fp32")])
            link = CuttingLink(reg.port, points)
            creds = reg.credentials_file(tmp / f"{label}.json", port=link.port)
            url = f"oci+http://127.0.0.1:{link.port}/{reg.repository}"
            agent = start_pull_agent(tmp / device, url, device, 0.2, creds, None)
            try:
                reached = wait_all(fleet, [device], lambda v: v.state == "converged", 300)
                if not reached:
                    raise RuntimeError(f"{device} did not converge")
                time.sleep(1.0)  # its status push done
                totals[label] = (link.downloaded, link.cut_done)
            finally:
                agent.send_signal(signal.SIGTERM)
                agent.wait(timeout=30)
                link.close()
    finally:
        fleet.close()
        reg.stop()
    extra = totals["cut"][0] - totals["uncut"][0]
    return {"size": size, "cuts": totals["cut"][1], "extra": extra,
            "per_cut": extra / max(1, totals["cut"][1])}  # fmt: skip


def cost_figures(tmp: Path, idle: float) -> dict[str, Any]:
    (tmp / "cost-digits").mkdir()
    digits = train_digits_cnn(tmp / "cost-digits", epochs=3)
    reg = OciRegistry(tmp / "cost-registry").start()
    fleet = registry_for(reg.url, reg.credentials_file(tmp / "cost-host.json"))
    published = fleet.publish_artifact(Path(digits.onnx), RunPlan(precision="fp32"), "digits",
                                       "v1")  # fmt: skip
    fleet.set_desired("idle", [fs.DesiredModel("digits", "v1", published.artifact, "fp32")])
    interval = 2.0
    agent = start_pull_agent(tmp / "idle", reg.url, "idle", interval,
                             reg.credentials_file(tmp / "idle.json"), None)  # fmt: skip
    try:
        if not wait_all(fleet, ["idle"], lambda v: v.state == "converged", 120):
            raise RuntimeError("the idle agent did not converge")
        time.sleep(2 * interval)
        status_file = tmp / "idle" / "store" / "pull-status.json"
        first = json.loads(status_file.read_text())["timings"]
        cpu0 = cpu_seconds(agent.pid)
        time.sleep(idle)
        last = json.loads(status_file.read_text())["timings"]
        cpu = cpu_seconds(agent.pid) - cpu0
        rss_pull = rss_mib(agent.pid)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
        fleet.close()
        reg.stop()
    polls = last["polls"] - first["polls"]
    requests = last["requests"] - first["requests"]
    per_poll = requests / max(1.0, polls)
    push = push_rss(tmp, digits)
    return {"polls": polls, "requests": requests, "per_poll": per_poll,
            "per_hour_30s": per_poll * 3600 / 30 + 6 * 4, "cpu_s": cpu, "idle_s": idle,
            "interval": interval, "rss_pull": rss_pull, "rss_push": push}  # fmt: skip


def push_rss(tmp: Path, digits: Any) -> float:
    """RSS of a push-mode agent with the same model active, for comparison."""
    import asyncio  # noqa: PLC0415

    from edgeopt.host.transport.client import AgentClient  # noqa: PLC0415
    from tests.conftest import start_agent  # noqa: PLC0415

    agent = start_agent(tmp / "push-agent")
    try:

        async def go() -> None:
            async with AgentClient(agent.address, token=agent.token) as client:
                await client.push(digits.onnx, "digits")
                await client.activate("digits")

        asyncio.run(go())
        time.sleep(1.0)
        return rss_mib(agent.process.pid)
    finally:
        agent.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=64)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--cuts", type=int, default=10)
    parser.add_argument("--idle", type=float, default=60.0)
    args = parser.parse_args()
    reason = registry.unavailable_reason()
    if reason:
        print(f"skipped: {reason}", file=sys.stderr)
        return 2
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        cost = cost_figures(tmp, args.idle)
        print("cost", cost, file=sys.stderr)
        cut = cut_figures(tmp, args.cuts)
        print("cut", cut, file=sys.stderr)
        fleet = fleet_figures(tmp, args.agents, args.interval)
        print("fleet", fleet, file=sys.stderr)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(write_section("pull", render(args, fleet, cut, cost, when, time.monotonic() - began)))
    return 0


def render(args: argparse.Namespace, fleet: dict[str, Any], cut: dict[str, Any],
           cost: dict[str, Any], when: str, seconds: float) -> str:  # fmt: skip
    n = args.agents
    where = (
        (
            "each agent in a network namespace of its own on a bridge, the registry on the "
            "bridge's address; no agent listens on any port (dialing each board's address "
            f"was refused {fleet.get('dial_refused', 0)} of {n} times)"
        )
        if fleet["namespaces"]
        else f"agents on loopback with no listening port (no namespaces: {fleet['why_not']})"
    )
    lines = [
        "## Pull mode through an OCI registry (`python benchmarks/pull.py`)",
        "",
        f"Measured {when} on {host_cpu()}; Debian's docker-registry (TLS from the fleet CA, "
        f"htpasswd login) and {n} agents in pull mode, {where}, polling every "
        f"{args.interval:.0f} s (± 20 %). The host runs `edgeopt publish --fleet` of the digits "
        "CNN (fp32), planned from each board's status; all on the same 2 CPUs.",
        "",
        "| publish | publish command | then all converged | median board | goal (2 x interval "
        "+ download) | boards ok | host uploaded | artifact | registry sent the boards |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, text in (("first", "first (runners cold)"), ("second", "second (fleet running)")):
        f = fleet[label]
        goal = 2 * args.interval + f["download_s"]
        done = (
            f"{f['all_s']:.1f} s" if f["all_s"] is not None else f"{f['converged']} of {n} in 600 s"
        )
        lines.append(
            f"| {text} | {f['publish_s']:.1f} s | {done} | {f['median_s']:.1f} s | "
            f"{goal:.1f} s | {f['ok']} | {f['uploaded'] / 1024:.0f} KiB | "
            f"{f['artifact'] / 1024:.0f} KiB | {f['egress'] / 1024:.0f} KiB |"
        )  # fmt: skip
    lines += [
        "",
        f"- Agents started and reported in {fleet['start_s']:.1f} s ({fleet['started']} of {n}); "
        f"agent RSS once converged (runner apart): median {fleet['rss_median']:.1f} MiB, "
        f"max {fleet['rss_max']:.1f} MiB (goal <= 70 MB).",
        f"- Cut downloads: YOLOv8n fp32 ({cut['size'] / 2**20:.1f} MiB) pulled through a relay "
        f"that cut the connection {cut['cuts']} times at random points: "
        f"{cut['extra'] / 1024:.0f} KiB crossed the relay beyond an uncut pull's, "
        f"{cut['per_cut'] / 1024:.1f} KiB per cut (one Range request's worth is the 64 KiB "
        "chunk in flight and the headers: each cut resumed where the store's part ended).",
        f"- Idle: {cost['requests']:.0f} registry requests in {cost['polls']:.0f} polls over "
        f"{cost['idle_s']:.0f} s at a {cost['interval']:.0f} s interval, "
        f"{cost['per_poll']:.2f} per poll (a HEAD of the desired state); at the default 30 s "
        f"that is {cost['per_hour_30s']:.0f} requests an hour with the status heartbeat "
        f"(4 requests every 10 min); agent CPU {cost['cpu_s']:.2f} s over those "
        f"{cost['idle_s']:.0f} s.",
        f"- Agent RSS with the digits CNN active, runner apart: pull mode "
        f"{cost['rss_pull']:.1f} MiB, push mode {cost['rss_push']:.1f} MiB.",
        f"- Whole benchmark: {seconds / 60:.0f} min.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
