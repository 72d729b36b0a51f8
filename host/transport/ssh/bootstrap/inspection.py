"""What a board's system offers the agent, read over SSH before anything is installed.

`probe` asks the board in one shell command (architecture, glibc, python3 and its bits, the venv
module, free disk in the agent's folder, a systemd user instance); `check` refuses a board the
agent cannot run on, saying what to fix.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeopt.host.errors import BootstrapError
from edgeopt.host.transport.ssh.connection import Connection

__all__ = ["ARCHES", "MIN_FREE_BYTES", "MIN_PYTHON", "Inspection", "check", "probe"]

MIN_PYTHON = (3, 8)
"""The oldest Python the agent's wheel installs on (pyproject's requires-python)."""
MIN_FREE_BYTES = 400 << 20
"""Room the venv needs: onnxruntime, numpy, grpcio and protobuf take about 250 MiB."""
ARCHES = ("aarch64", "x86_64")
"""What `uname -m` says on boards ONNX Runtime publishes Linux wheels for."""


@dataclass(frozen=True)
class Inspection:
    """What bootstrap learned about the board's system: what installing the agent needs.

    Not the planner's `Board` (its view of a board's cores, memory and features): this is read
    over SSH before any agent is there, and says whether one can be installed and how.
    """

    arch: str
    glibc: tuple[int, int] | None
    python: tuple[int, int, int] | None
    venv: bool
    free_bytes: int | None
    systemd: bool
    python_bits: int | None = None
    """32 for a 32-bit python3 (an armhf userland, even on a 64-bit kernel), else 64."""


def probe(conn: Connection, folder: str) -> Inspection:
    """Architecture, glibc, python3, venv, free disk and systemd of the board."""
    script = (
        "uname -m; (getconf GNU_LIBC_VERSION 2>/dev/null || echo none); "
        "(command -v python3 >/dev/null 2>&1 && python3 -c "
        '\'import struct, sys; print("%d.%d.%d %d" % (sys.version_info[:3] '
        '+ (struct.calcsize("P") * 8,)))\' || echo none); '
        "(python3 -c 'import venv, ensurepip' >/dev/null 2>&1 && echo venv || echo novenv); "
        f"(umask 077 && mkdir -p {folder}) && (df -Pk {folder} | tail -n 1); "
        "(systemctl --user show-environment >/dev/null 2>&1 && echo systemd || echo nosystemd)"
    )
    _, out, _ = conn.run(script, timeout=60)
    lines = out.splitlines()
    if len(lines) < 6:
        raise BootstrapError(f"{conn.target}: unexpected answer to the board check: {out!r}")
    arch, libc, python, venv, df, systemd = lines[:6]
    glibc = None
    if libc.startswith("glibc "):
        major, _, minor = libc.split()[1].partition(".")
        glibc = (int(major), int(minor.split(".")[0] or 0))
    words = python.split()
    version = tuple(int(p) for p in words[0].split(".")) if words and python != "none" else None
    bits = int(words[1]) if len(words) > 1 and words[1].isdigit() else None
    fields = df.split()
    free = int(fields[3]) * 1024 if len(fields) >= 4 and fields[3].isdigit() else None
    py = (version[0], version[1], version[2]) if version and len(version) == 3 else None
    return Inspection(arch.strip(), glibc, py, venv.strip() == "venv", free,
                 systemd.strip() == "systemd", bits)  # fmt: skip


def check(board: Inspection, target: object, folder: str) -> None:
    """Refuse a board the agent cannot run on, saying what to fix."""
    if board.arch not in ARCHES:
        what = "a 32-bit ARM userland" if board.arch.startswith("arm") else "an architecture"
        raise BootstrapError(
            f"{target}: the board runs {what} ({board.arch}) that ONNX Runtime publishes no "
            f"wheels for; the agent runs on {' and '.join(ARCHES)}"
            + (": install a 64-bit OS (Raspberry Pi OS 64-bit, for one)"
               if board.arch.startswith("arm") else "")
        )  # fmt: skip
    if board.arch in ARCHES and board.python_bits == 32:
        raise BootstrapError(
            f"{target}: the board's python3 is 32-bit (an armhf userland on its {board.arch} "
            "kernel, as the 32-bit Raspberry Pi OS has) and ONNX Runtime publishes no wheels "
            "for it: install a 64-bit OS (Raspberry Pi OS 64-bit, for one)"
        )
    if board.python is None:
        need = f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]}"
        raise BootstrapError(f"{target}: the board has no python3 on the PATH: install Python "
                             f">= {need} (e.g. apt install python3)")  # fmt: skip
    if board.python[:2] < MIN_PYTHON:
        shown = ".".join(map(str, board.python))
        raise BootstrapError(f"{target}: python3 on the board is {shown}; the agent needs "
                             f"Python >= {MIN_PYTHON[0]}.{MIN_PYTHON[1]}")  # fmt: skip
    if not board.venv:
        raise BootstrapError(f"{target}: the board's python3 has no venv module: install it "
                             "(e.g. apt install python3-venv)")  # fmt: skip
    if board.glibc is None:
        raise BootstrapError(f"{target}: no glibc on the board (musl?): ONNX Runtime's wheels "
                             "need glibc")  # fmt: skip
    if board.free_bytes is not None and board.free_bytes < MIN_FREE_BYTES:
        raise BootstrapError(
            f"{target}: only {board.free_bytes / 2**20:.0f} MiB free in {folder}; the agent "
            f"needs about {MIN_FREE_BYTES / 2**20:.0f} MiB"
        )
