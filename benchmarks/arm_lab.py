"""The emulated Raspberry Pi 4 of `make arm-lab`: what the agent costs there, and what it weighs.

Issue 11's figures, each measured in the same run as its native counterpart on this machine:

- start-up to SERVING and idle RSS of the agent under qemu-user (Debian bullseye arm64,
  Python 3.9), against the native agent (this machine's Python): N restarts each, interleaved;
- the agent's wheel set (the agent's wheel and every dependency, as `pip download
  --only-binary=:all:` brings them for a glibc 2.31 board) for aarch64 against x86_64, for the
  Python bullseye ships (3.9) and for 3.11;
- a benchmark of the digits CNN (fp32; 1 and 2 threads) on the emulated board against the native
  agent, in interleaved rounds. EMULATED: that latency says nothing about a real Pi 4.

    python benchmarks/arm_lab.py [--runs 7] [--rounds 5]

Needs root and the lab's Debian packages (`make system-packages`); builds the lab's root if it is
not cached (about 3 minutes). Writes its section of benchmarks/RESULTS.md (arm_lab markers).
"""

from __future__ import annotations

import argparse
import datetime
import json
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

from click.testing import CliRunner
from results import write_section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeopt.host.cli import cli  # noqa: E402
from edgeopt.host.transport.ssh.bootstrap import Inspection, build_wheel, download_wheels  # noqa: E402
from tests import arm_lab  # noqa: E402
from tests.models import train_digits_cnn  # noqa: E402

EMULATED = "arm-bench"
"""The emulated board's device name."""


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def rss_mib(pid: int) -> float:
    """Resident memory of one process (under emulation: the qemu process that runs it)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def native_start(tmp: Path, token: str) -> tuple[subprocess.Popen[bytes], str, float]:
    ready = tmp / "ready"
    ready.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "edgeopt.agent", "serve", "--listen", "127.0.0.1:0",
           "--store", str(tmp / "store"), "--token-file", str(tmp / "token"),
           "--ready-file", str(ready)]  # fmt: skip
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"native agent exited with {proc.returncode}")
        if ready.exists() and ready.read_text().strip():
            address = ready.read_text().strip()
            if arm_lab._serving(address, token):
                return proc, address, time.monotonic() - start
        time.sleep(0.01)


def startup(lab: arm_lab.Lab, runs: int, tmp: Path) -> dict[str, list[float]]:
    token = secrets.token_urlsafe(24)
    (tmp / "token").write_text(token)
    out: dict[str, list[float]] = {"emu_s": [], "emu_rss": [], "nat_s": [], "nat_rss": []}
    for i in range(runs):
        state = lab.restart()
        time.sleep(3.0)  # the agent's background ONNX Runtime probe (a child) finishes
        out["emu_s"].append(state.started_s)
        out["emu_rss"].append(rss_mib(state.pid))
        proc, _, seconds = native_start(tmp, token)
        time.sleep(3.0)
        out["nat_s"].append(seconds)
        out["nat_rss"].append(rss_mib(proc.pid))
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        print(f"start-up run {i + 1}/{runs}: " + ", ".join(f"{k} {v[-1]:.3g}"
              for k, v in out.items()), file=sys.stderr)  # fmt: skip
    return out


def wheel_sets(cache: Path) -> list[tuple[str, str, int, int]]:
    """(python, arch, files, bytes) of the agent's whole wheel set for a glibc 2.31 board."""
    wheel = build_wheel(cache)
    rows = []
    for python in ((3, 9, 2), (3, 11, 2)):
        for arch in ("aarch64", "x86_64"):
            board = Inspection(arch=arch, glibc=(2, 31), python=python, venv=True,
                               free_bytes=None, systemd=False)  # fmt: skip
            folder = download_wheels(wheel, board, cache)
            files = list(folder.glob("*.whl"))
            size = sum(p.stat().st_size for p in files)
            rows.append((f"{python[0]}.{python[1]}", arch, len(files), size))
    return rows


def bench_rounds(inventory: Path, model: Path, rounds: int, tmp: Path) -> list[dict[str, float]]:
    """p50 per (device, threads) in each round, the devices' order alternating."""
    out = []
    for r in range(rounds):
        devices = [EMULATED, "native"] if r % 2 == 0 else ["native", EMULATED]
        row: dict[str, float] = {}
        for device in devices:
            result = CliRunner().invoke(
                cli,
                ["--inventory", str(inventory), "--state", str(tmp / "state.db"), "bench",
                 str(model), "--device", device, "--threads", "1,2",
                 "--json"],
                catch_exceptions=False,
            )  # fmt: skip
            assert result.exit_code == 0, result.output
            for case in json.loads(result.output)["cases"]:
                assert case["status"] == "ok", case
                row[f"{device}/{case['threads']}"] = case["p50_ms"]
                if device == EMULATED:
                    assert case["flags"][0] == "EMULATED", case["flags"]
        print(f"bench round {r + 1}/{rounds}: {row}", file=sys.stderr)
        out.append(row)
    return out


def bootstrap_seconds(state: arm_lab.State, tmp: Path) -> float:
    """One `ssh bootstrap --offline` of a second agent onto the emulated board, then removed."""
    env = arm_lab.ssh_client_env(state, tmp)
    base = ["--inventory", str(tmp / "ssh.toml"), "--state", str(tmp / "ssh.db")]
    start = time.monotonic()
    done = CliRunner(env=env).invoke(
        cli, [*base, "ssh", "bootstrap", state.ssh_target, "--name", "arm-ssh", "--offline",
              "--port", "50052", "--start-timeout", "180"], catch_exceptions=False)  # fmt: skip
    seconds = time.monotonic() - start
    assert done.exit_code == 0, done.output
    removed = CliRunner(env=env).invoke(cli, [*base, "ssh", "remove", "arm-ssh", "--purge"])
    assert removed.exit_code == 0, removed.output
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    reason = arm_lab.unavailable_reason()
    if reason:
        print(f"cannot run the ARM lab here: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        lab = arm_lab.Lab(name=EMULATED, run_dir=tmp / "lab", subnet=252)
        try:
            state = lab.start(log=lambda t: print(t, file=sys.stderr))
            times = startup(lab, args.runs, tmp)
            sizes = wheel_sets(arm_lab.cache_dir() / "wheels")
            (tmp / "digits").mkdir()
            digits = train_digits_cnn(tmp / "digits")
            agent, address, _ = native_start(tmp, (tmp / "token").read_text())
            try:
                inventory = Path(state.inventory)
                inventory.write_text(
                    inventory.read_text()
                    + f'\n[devices.native]\naddress = "{address}"\ntoken_file = "native.token"\n'
                )
                (inventory.parent / "native.token").write_text((tmp / "token").read_text())
                rounds = bench_rounds(inventory, digits.onnx, args.rounds, tmp)
            finally:
                agent.send_signal(signal.SIGTERM)
                agent.wait(timeout=30)
            bootstrap_s = bootstrap_seconds(state, tmp)
        finally:
            lab.stop(quiet=True)

    def med(values: list[float]) -> float:
        return statistics.median(values)

    start_ratio = med([e / n for e, n in zip(times["emu_s"], times["nat_s"], strict=True)])
    rss_ratio = med([e / n for e, n in zip(times["emu_rss"], times["nat_rss"], strict=True)])
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    flags = Path("/proc/cpuinfo").read_text()
    isa = "AVX-512 VNNI" if "avx512_vnni" in flags else ("AVX2" if "avx2" in flags else "no AVX2")
    qemu = subprocess.run(["qemu-aarch64-static", "--version"], capture_output=True, text=True,
                          check=False).stdout.splitlines()[:1]  # fmt: skip
    lines = [
        "## The emulated Raspberry Pi 4 (`python benchmarks/arm_lab.py`)",
        "",
        f"Measured {when} on {cpu_name()} ({platform.machine()}, {os.cpu_count()} CPUs, {isa});",
        f"the board: Debian bullseye arm64, Python 3.9, under {(qemu or ['qemu-user'])[0]},",
        f"with a captured Pi 4's /proc/cpuinfo and /sys (tests/arm_lab.py). Agent started in "
        f"{state.install_s:.0f} s from the cached root.",
        "",
        f"**Start-up and memory** (median of {args.runs} restarts each, interleaved; RSS of the "
        "agent's process 3 s after SERVING, which under emulation is the qemu process):",
        "",
        "| figure | emulated aarch64 | native | emulated / native (median of ratios) |",
        "|---|---|---|---|",
        f"| spawn → SERVING | {med(times['emu_s']):.2f} s | {med(times['nat_s']):.2f} s | "
        f"{start_ratio:.1f}x |",
        f"| idle RSS | {med(times['emu_rss']):.0f} MiB | {med(times['nat_rss']):.0f} MiB | "
        f"{rss_ratio:.2f}x |",
        "",
        f"`edgeopt ssh bootstrap --offline` of a second agent onto the emulated board over its "
        f"own sshd (a fresh venv and pip install of the wheel set under emulation, host caches "
        f"warm), one run: {bootstrap_s:.0f} s.",
        "",
        "**The agent's wheel set** for a glibc 2.31 board (`pip download --only-binary=:all:`, "
        "the agent's wheel included):",
        "",
        "| Python | arch | wheels | size |",
        "|---|---|---|---|",
    ]
    lines += [f"| {py} | {arch} | {n} | {size / 2**20:.1f} MiB |" for py, arch, n, size in sizes]
    lines += [
        "",
        f"**A benchmark on the EMULATED board**: the digits CNN (fp32, 224 KiB), p50 per round "
        f"from `edgeopt bench`, {args.rounds} interleaved rounds, median shown. This latency is "
        "qemu's and says **nothing** about a real Raspberry Pi 4; `edgeopt bench` flags every "
        "case measured there EMULATED.",
        "",
        "| threads | emulated aarch64 p50 | native p50 | emulated / native (median of ratios) |",
        "|---|---|---|---|",
    ]
    for threads in (1, 2):
        emu = [r[f"{EMULATED}/{threads}"] for r in rounds]
        nat = [r[f"native/{threads}"] for r in rounds]
        ratio = med([e / n for e, n in zip(emu, nat, strict=True)])
        lines.append(f"| {threads} | {med(emu):.3f} ms | {med(nat):.3f} ms | {ratio:.0f}x |")
    print(write_section("arm_lab", "\n".join(lines)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
