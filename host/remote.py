"""A board's facts over SSH with no agent on it: the agent's own probes, fed by remote files.

One shell command reads every file the agent's `collect` may read (`CAPTURE_PATTERNS`, expanded
by the board's shell) and a few facts only a command gives (usable CPUs, Python, glibc, free
disk, host name). The files land in a temporary tree on the host and `collect` reads that tree
exactly as it reads a captured board, so the report is the agent's, field for field. ONNX
Runtime is probed by the agent's own `runtime` module, sent to the board's python3 on stdin:
nothing is left on the board.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from edgeopt.agent import capabilities as agent_caps
from edgeopt.agent.probes import runtime, system
from edgeopt.host.ssh import Connection, SshError
from edgeopt.proto.capabilities import Capabilities, OnnxRuntimeInfo

RS, US = "\x1e", "\x1f"
"""Record and unit separators: no /proc or /sys text holds them."""
EXTRA_FILES = ("etc/machine-id", "usr/lib/os-release")
"""Read beside CAPTURE_PATTERNS: the board's identity, and os-release where /etc lacks it."""
COMMANDS = {
    "nproc": "nproc 2>/dev/null || getconf _NPROCESSORS_ONLN",
    "python": "python3 -c 'import platform; print(platform.python_version())' 2>/dev/null",
    "libc": "getconf GNU_LIBC_VERSION 2>/dev/null",
    "hostname": "hostname 2>/dev/null || cat /etc/hostname",
    "df": 'df -Pk "$HOME" 2>/dev/null | tail -n 1',
    "uname": "uname -m",
}


def _script() -> str:
    globs = " ".join("/" + p for p in (*agent_caps.CAPTURE_PATTERNS, *EXTRA_FILES))
    lines = [
        f"for f in {globs}; do",
        '  if [ -e "$f" ]; then printf \'\\036%s\\037\' "$f"; '
        'if [ -f "$f" ] && [ -r "$f" ]; then cat "$f" 2>/dev/null; fi; fi',
        "done",
    ]
    for name, command in COMMANDS.items():
        lines.append(f"printf '\\036={name}\\037'; ( {command} )")
    return "\n".join(lines) + "\nexit 0\n"


def _probe_program() -> bytes:
    """Python for the board: the agent's runtime probe with a stand-in for its one import."""
    fields = [(f.name, f.default if f.default is not dataclasses.MISSING else None)
              for f in dataclasses.fields(OnnxRuntimeInfo)]  # fmt: skip
    source = inspect.getsource(runtime)
    return f"""
import dataclasses, json, sys, types
info = dataclasses.make_dataclass(
    "OnnxRuntimeInfo", [(n, object, dataclasses.field(default=d)) for n, d in {fields!r}],
    frozen=True)
for name in ("edgeopt", "edgeopt.proto"):
    sys.modules.setdefault(name, types.ModuleType(name))
shim = types.ModuleType("edgeopt.proto.capabilities")
shim.OnnxRuntimeInfo = info
sys.modules["edgeopt.proto.capabilities"] = shim
probe = {{"__name__": "edgeopt_runtime_probe"}}
exec(compile({source!r}, "edgeopt/agent/probes/runtime.py", "exec"), probe)
json.dump(dataclasses.asdict(probe["probe_in_process"]()), sys.stdout)
""".encode()


@dataclass(frozen=True)
class Facts:
    """What SSH told about a board."""

    capabilities: Capabilities
    python: str
    """python3's version, "" when there is none."""
    home_free_bytes: int | None


def read_files(conn: Connection) -> dict[str, str]:
    """Every probe file the board has (relative path -> text) and the command facts (=name)."""
    _, out, _ = conn.run(_script(), timeout=60)
    found = {}
    for record in out.split(RS)[1:]:
        name, _, text = record.partition(US)
        found[name.lstrip("/") if not name.startswith("=") else name] = text
    return found


def facts(conn: Connection) -> Facts:
    """The board's capability report, computed by the agent's probes from its files."""
    found = read_files(conn)
    if "proc/cpuinfo" not in found:
        raise SshError(f"{conn.target}: /proc/cpuinfo is not readable: is this a Linux board?")
    with tempfile.TemporaryDirectory(prefix="edgeopt-facts-") as folder:
        root = Path(folder)
        for rel, text in found.items():
            if rel.startswith("="):
                continue
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        caps = agent_caps.collect(agent_caps.Sources.captured(rootfs=root))
    python = found.get("=python", "").strip()
    runtime_info = _runtime(conn) if python else OnnxRuntimeInfo(error="the board has no python3")
    df = found.get("=df", "").split()
    free = int(df[3]) * 1024 if len(df) >= 4 and df[3].isdigit() else None
    nproc = found.get("=nproc", "").strip()
    caps = replace(
        caps,
        arch=caps.arch or found.get("=uname", "").strip(),
        usable_cores=int(nproc) if nproc.isdigit() else None,
        libc=system.libc_from_confstr(found.get("=libc", "")),
        python_version=python,
        hostname=found.get("=hostname", "").strip(),
        onnxruntime=runtime_info,
        agent_version="",
        # uname -m answers for the emulated CPU under qemu-user; the kernel's file cannot lie.
        emulation=system.emulation(
            found.get("proc/sys/kernel/arch"), found.get("=uname", "").strip()
        ),
    )
    caps = replace(caps, fingerprint=agent_caps.fingerprint(caps))
    return Facts(caps, python, free)


def _runtime(conn: Connection) -> OnnxRuntimeInfo:
    status, out, err = conn.run("python3 -", stdin=_probe_program(), timeout=120, check=False)
    if status != 0:
        tail = (err.strip().splitlines() or [f"exit status {status}"])[-1]
        return OnnxRuntimeInfo(error=f"onnxruntime probe failed on the board: {tail}")
    data = json.loads(out)
    data["execution_providers"] = tuple(data["execution_providers"] or ())
    return OnnxRuntimeInfo(**data)
