"""A board's facts over SSH with no agent on it: the agent's own probes, fed by remote files.

One shell command reads every file the agent's `collect` may read (`CAPTURE_PATTERNS`, expanded
by the board's shell) and a few facts only a command gives (usable CPUs, Python, glibc, free
disk, host name). The files land in a temporary tree on the host and `collect` reads that tree
exactly as it reads a captured board, so the report is the agent's, field for field. ONNX
Runtime is probed by the agent's own `runtime` module, sent to the board's python3 on stdin:
nothing is left on the board.

Nothing the board prints is trusted: a record is written only when its name is one of the
expected files (each path segment matched against the patterns, no `..`, and the resolved path
checked to stay inside the temporary tree); others are dropped with a warning. The whole answer
is capped (`MAX_FACTS_BYTES`, `MAX_RECORDS`), command facts and the probe's JSON are checked
field by field, and text shown to the operator loses terminal escapes and control characters.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import inspect
import json
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgeopt.boardfacts import capabilities as board_caps
from edgeopt.boardfacts import runtime, system
from edgeopt.host.errors import SshError
from edgeopt.host.transport.ssh.connection import Connection, printable
from edgeopt.proto.capabilities import Capabilities, OnnxRuntimeInfo

__all__ = [
    "COMMANDS",
    "EXTRA_FILES",
    "MAX_FACTS_BYTES",
    "MAX_PROBE_BYTES",
    "MAX_RECORDS",
    "RS",
    "US",
    "Facts",
    "expected",
    "facts",
    "facts_script",
    "probe_program",
    "read_files",
]

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
MAX_FACTS_BYTES = 16 << 20
"""Most the board's answer may hold: /proc and /sys text of a 256-core server is under 2 MiB."""
MAX_RECORDS = 20_000
"""Most files it may name (a 256-core board has about 1,100 of the expected ones)."""
MAX_PROBE_BYTES = 1 << 20
"""Most the ONNX Runtime probe's JSON may hold."""
_PATTERNS = tuple(p.split("/") for p in (*board_caps.CAPTURE_PATTERNS, *EXTRA_FILES))


def facts_script() -> str:
    """The shell command that prints every expected file and command fact, one record each.

    Each record is RS, its name (a path, or `=` and a `COMMANDS` key), US, then its text.
    """
    globs = " ".join("/" + p for p in (*board_caps.CAPTURE_PATTERNS, *EXTRA_FILES))
    lines = [
        f"for f in {globs}; do",
        '  if [ -e "$f" ]; then printf \'\\036%s\\037\' "$f"; '
        'if [ -f "$f" ] && [ -r "$f" ]; then cat "$f" 2>/dev/null; fi; fi',
        "done",
    ]
    for name, command in COMMANDS.items():
        lines.append(f"printf '\\036={name}\\037'; ( {command} )")
    return "\n".join(lines) + "\nexit 0\n"


def probe_program() -> bytes:
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
exec(compile({source!r}, "edgeopt/boardfacts/runtime.py", "exec"), probe)
json.dump(dataclasses.asdict(probe["probe_in_process"]()), sys.stdout)
""".encode()


@dataclass(frozen=True)
class Facts:
    """What SSH told about a board."""

    capabilities: Capabilities
    python: str
    """python3's version, "" when there is none."""
    home_free_bytes: int | None
    warnings: tuple[str, ...] = ()
    """What the board printed that was dropped or not understood, one line each."""


def expected(name: str) -> bool:
    """Whether `name` (relative, as `CAPTURE_PATTERNS` are) is a file the probes read.

    Matched segment by segment, as the board's shell expands the globs: a `*` never spans a
    `/`, and no segment may be empty, `.` or `..`.
    """
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts) or not name.isprintable():
        return False
    return any(
        len(parts) == len(pattern) and all(map(fnmatch.fnmatchcase, parts, pattern))
        for pattern in _PATTERNS
    )


def read_files(conn: Connection, warnings: list[str] | None = None) -> dict[str, str]:
    """Every probe file the board has (relative path -> text) and the command facts (=name).

    Records the probes would not read are dropped, each with a line appended to `warnings`.

    Raises:
        SshError: the board printed more than `MAX_FACTS_BYTES` or named more than
            `MAX_RECORDS` files.
    """
    warnings = [] if warnings is None else warnings
    _, out, _ = conn.run(facts_script(), timeout=60, limit=MAX_FACTS_BYTES)
    records = out.split(RS)[1:]
    if len(records) > MAX_RECORDS:
        raise SshError(f"{conn.target}: the board named {len(records)} files; refused (the "
                       f"probes read at most {MAX_RECORDS})")  # fmt: skip
    found: dict[str, str] = {}
    for record in records:
        name, _, text = record.partition(US)
        key = name if name.startswith("=") else name[1:] if name.startswith("/") else ""
        if not (key in {f"={c}" for c in COMMANDS} or expected(key)):
            warnings.append(f"dropped a record the facts do not read: {printable(name)[:200]!r}")
        elif key in found:
            warnings.append(f"dropped a second record named {printable(name)[:200]!r}")
        else:
            found[key] = text
    return found


def _inside(root: Path, rel: str) -> Path:
    """`root / rel`, refused unless it resolves inside `root` (symlinks followed)."""
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()):
        raise SshError(f"refused to write {rel!r}: it resolves outside {root}")
    return path


def _number(text: str, low: int, high: int) -> int | None:
    """An ASCII decimal within [low, high], else None (`str.isdigit` also takes "²")."""
    text = text.strip()
    if not re.fullmatch(r"[0-9]{1,20}", text) or not low <= int(text) <= high:
        return None
    return int(text)


def _word(found: dict[str, str], key: str, pattern: str, warnings: list[str]) -> str:
    """A command fact's first line when it matches `pattern`, else "" with a warning."""
    value = found.get(key, "").strip()
    if value and not re.fullmatch(pattern, value):
        warnings.append(f"ignored the board's {key[1:]} answer {printable(value)[:80]!r}")
        return ""
    return value


def facts(conn: Connection) -> Facts:
    """The board's capability report, computed by the agent's probes from its files."""
    warnings: list[str] = []
    found = read_files(conn, warnings)
    if "proc/cpuinfo" not in found:
        raise SshError(f"{conn.target}: /proc/cpuinfo is not readable: is this a Linux board?")
    with tempfile.TemporaryDirectory(prefix="edgeopt-facts-") as folder:
        root = Path(folder)
        for rel, text in found.items():
            if rel.startswith("="):
                continue
            path = _inside(root, rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        caps = board_caps.collect(board_caps.Sources.captured(rootfs=root))
    python = _word(found, "=python", r"3\.[0-9]{1,3}\.[0-9]{1,3}[A-Za-z0-9+.]{0,16}", warnings)
    runtime_info = _runtime(conn) if python else OnnxRuntimeInfo(error="the board has no python3")
    df = found.get("=df", "").split()
    blocks = _number(df[3], 0, 1 << 50) if len(df) >= 4 else None
    nproc_text = found.get("=nproc", "")
    nproc = _number(nproc_text, 1, 1 << 20)
    if nproc is None and nproc_text.strip():
        warnings.append(f"ignored the board's nproc answer {printable(nproc_text.strip())[:80]!r}")
    uname = _word(found, "=uname", r"[A-Za-z0-9_.-]{1,32}", warnings)
    libc = _word(found, "=libc", r"[A-Za-z]{1,16} [0-9][0-9.]{0,15}", warnings)
    caps = replace(
        caps,
        arch=caps.arch or uname,
        usable_cores=nproc,
        libc=system.libc_from_confstr(libc),
        python_version=python,
        hostname=_word(found, "=hostname", r"[A-Za-z0-9][A-Za-z0-9_.-]{0,252}", warnings),
        onnxruntime=runtime_info,
        agent_version="",
        # uname -m answers for the emulated CPU under qemu-user; the kernel's file cannot lie.
        emulation=system.emulation(found.get("proc/sys/kernel/arch"), uname),
    )
    caps = _printable(caps)
    caps = replace(caps, fingerprint=board_caps.fingerprint(caps))
    return Facts(caps, python, blocks * 1024 if blocks is not None else None, tuple(warnings))


def _printable(value: Any) -> Any:
    """`value` with every string in it made safe for a terminal (dataclasses, tuples, lists)."""
    if isinstance(value, str):
        return printable(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return replace(value, **{f.name: _printable(getattr(value, f.name))
                                 for f in dataclasses.fields(value)})  # fmt: skip
    if isinstance(value, (tuple, list)):
        return type(value)(_printable(v) for v in value)
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    return value


def _runtime(conn: Connection) -> OnnxRuntimeInfo:
    status, out, err = conn.run("python3 -", stdin=probe_program(), timeout=120, check=False,
                                limit=MAX_PROBE_BYTES)  # fmt: skip
    if status != 0:
        tail = (err.strip().splitlines() or [f"exit status {status}"])[-1]
        return OnnxRuntimeInfo(error=f"onnxruntime probe failed on the board: {printable(tail)}")
    problem = _probe_problem(out)
    if problem:
        return OnnxRuntimeInfo(error=f"the board's onnxruntime probe printed {problem}")
    data = json.loads(out)
    data["execution_providers"] = tuple(data["execution_providers"] or ())
    return OnnxRuntimeInfo(**data)


_PROBE_FIELDS: dict[str, tuple[type, ...]] = {
    "version": (str,),
    "max_ir_version": (int, type(None)),
    "max_opset": (int, type(None)),
    "execution_providers": (list, type(None)),
    "error": (str,),
}


def _probe_problem(out: str) -> str:
    """What is wrong with the probe's JSON, or "" when every field has its type and size."""
    try:
        data = json.loads(out)
    except ValueError:
        return f"something that is not JSON: {printable(out.strip())[:80]!r}"
    if not isinstance(data, dict):
        return f"{type(data).__name__} JSON, not an object"
    if set(data) != set(_PROBE_FIELDS):
        shown = sorted(printable(str(k))[:40] for k in data)
        return f"the fields {shown}, not {sorted(_PROBE_FIELDS)}"
    for key, kinds in _PROBE_FIELDS.items():
        value = data[key]
        wanted = " or ".join(k.__name__ for k in kinds)
        wrong = (
            (not isinstance(value, kinds) or isinstance(value, bool))
            or (isinstance(value, int) and not 0 <= value <= 1000)
            or (isinstance(value, str) and len(value) > 4096)
            or (isinstance(value, list) and (len(value) > 64 or not all(
                isinstance(v, str) and 0 < len(v) <= 128 for v in value)))
        )  # fmt: skip
        if wrong:
            return f"{key} = {printable(repr(value))[:80]} (wanted: a small {wanted})"
    return ""
