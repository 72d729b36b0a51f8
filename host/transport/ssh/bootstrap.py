"""Install, start, upgrade and remove the agent on a board over SSH.

`bootstrap` builds the agent's wheel on the host (edgeopt's own wheel: the base install is
the agent's, see pyproject.toml), checks the board (architecture, glibc, python3 and its venv
module, free disk), uploads the wheel by SFTP into the agent's folder on the board (`~/.edgeopt`
by default), makes a venv there and installs the agent with its minimal dependencies, either
from the board's package index or offline, from wheels the host downloads for the board's
platform (`pip download --platform ... --only-binary=:all:`). It keeps or makes the board's
token, starts the agent on the board's loopback port (a systemd user unit where systemd runs,
else a detached shell supervisor that restarts it when it dies, with a pid file), waits until
it serves, and returns what the inventory needs; the host reaches the agent through an SSH
tunnel, so it never listens on the network. Running it again upgrades in place: same folder,
same token, same store.

`remove` stops the agent and deletes its unit, venv, wheels and token; the store only with
`purge`.

What the board answers is checked before it is used: its home folder, the agent's ready file
(the loopback HOST:PORT the agent was told to listen on) and its token; the inventory is edited
with a TOML writer (tomlkit, which keeps the user's comments and layout), so no name or answer
can add a table of its own. The agent's folder is quoted for the shell and for systemd, and made
with mode 0700 (an existing one is tightened): the store, logs and token are the user's alone.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions

from edgeopt.host.errors import BootstrapError, InventoryError
from edgeopt.host.transport.ssh.connection import Connection, printable, quote

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MIN_PYTHON = (3, 8)
"""The oldest Python the agent's wheel installs on (pyproject's requires-python)."""
MIN_FREE_BYTES = 400 << 20
"""Room the venv needs: onnxruntime, numpy, grpcio and protobuf take about 250 MiB."""
ARCHES = ("aarch64", "x86_64")
"""What `uname -m` says on boards ONNX Runtime publishes Linux wheels for."""
UNIT = "edgeopt-agent.service"
ROOT = Path(__file__).resolve().parents[3]
"""The source tree (host/transport/ssh/ is three folders down), whose agent the wheel holds."""
NAME_RULE = r"[^\W_][\w.-]{0,63}"
"""A device name bootstrap writes: a letter or digit, then up to 63 letters, digits, `_`, `.`,
`-` (Unicode letters too). No quote, space or `/`: it names the token's file as well."""
_TOKEN_RULE = r"[!-~]{16,4096}"
"""The board's token as the host keeps it: one line of printable ASCII, no spaces."""


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


@dataclass(frozen=True)
class BoardTls:
    """TLS for a bootstrapped agent: its certificate and key, and a client CA for mutual TLS."""

    cert_pem: bytes
    """The board's server certificate (PEM), for the loopback address the tunnel dials."""
    key_pem: bytes
    """Its private key (PEM); written 0600 on the board."""
    client_ca_pem: bytes | None = None
    """The CA whose client certificates the agent accepts (mutual TLS); None: server TLS only."""


TLS_FILES = ("tls/agent.pem", "tls/agent.key", "tls/client-ca.pem")
"""Where the board keeps its TLS files, under the agent's folder."""


@dataclass(frozen=True)
class Installed:
    """What the inventory needs about a bootstrapped agent."""

    folder: str
    """The agent's folder on the board, absolute."""
    address: str
    """The agent's address as seen from the board (loopback)."""
    token: str
    manager: str
    """"systemd" or "supervisor" (a shell loop that restarts it, with a pid file)."""
    upgraded: bool
    """An agent was installed there before (the store was kept)."""


def check_name(name: str) -> None:
    """Refuse a device name outside `NAME_RULE`, saying the rule.

    Raises:
        BootstrapError: the name is not allowed.
    """
    if not re.fullmatch(NAME_RULE, name):
        raise BootstrapError(
            f"--name {printable(name)!r}: a device name is a letter or digit, then up to 63 "
            "letters, digits, '_', '.' or '-' (no quotes, spaces or '/')"
        )


def _check_folder(target: object, folder: str, what: str) -> None:
    if not folder.startswith("/") or not folder.isprintable():
        raise BootstrapError(f"{target}: {what} {printable(folder)!r} is not an absolute path "
                             "of printable characters")  # fmt: skip


def _absolute(conn: Connection, folder: str) -> str:
    """`folder` with a leading ~ replaced by the board user's home (checked: a plain path)."""
    if not folder.isprintable():
        raise BootstrapError(f"--folder {printable(folder)!r}: control characters (a newline, "
                             "a tab) cannot be written into the agent's unit")  # fmt: skip
    if folder.startswith("~"):
        _, home, _ = conn.run("cd && pwd", timeout=30)
        home = home.rstrip("\n")
        _check_folder(conn.target, home, "the board's home folder")
        folder = folder.replace("~", home, 1)
    _check_folder(conn.target, folder, "--folder")
    return folder


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


def _source_digest() -> str:
    files = sorted(p for d in ("agent", "boardfacts", "proto") for p in (ROOT / d).rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts)  # fmt: skip
    h = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    for path in files:
        h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def build_wheel(cache: Path) -> Path:
    """Edgeopt's wheel built from this source tree (cached by the agent's sources' digest).

    Raises:
        BootstrapError: no source tree here (edgeopt installed from a wheel: pass --wheel).
    """
    if not (ROOT / "pyproject.toml").is_file():
        raise BootstrapError("no edgeopt source tree next to this install: pass --wheel FILE")
    out = cache / f"wheel-{_source_digest()}"
    found = sorted(out.glob("edgeopt-*.whl"))
    if found:
        return found[0]
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-w", str(out), str(ROOT)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    found = sorted(out.glob("edgeopt-*.whl"))
    if done.returncode != 0 or not found:
        raise BootstrapError(f"building the agent's wheel failed: {done.stderr.strip()[-500:]}")
    return found[0]


# The legacy manylinux names and the glibc each stands for (PEP 600).
_LEGACY_MANYLINUX = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}


def platform_tags(arch: str, glibc: tuple[int, int]) -> list[str]:
    """Every platform tag pip on the board accepts, best first, to pass as pip's --platform.

    What `packaging.tags` derives on a glibc board: manylinux_2_N for each N from the board's
    glibc down to the first of its architecture (2.5 on x86, 2.17 elsewhere), each legacy alias
    (manylinux2014, 2010, 1) beside its equivalent, then linux_ARCH. pip given --platform tries
    exactly the tags listed: one left out and a wheel that carries only it is not found.
    """
    major, minor = glibc
    oldest = 5 if arch in ("x86_64", "i686") else 17
    tags = []
    for m in range(minor, oldest - 1, -1):
        tags.append(f"manylinux_{major}_{m}_{arch}")
        legacy = _LEGACY_MANYLINUX.get((major, m))
        if legacy:
            tags.append(f"{legacy}_{arch}")
    return [*tags, f"linux_{arch}"]


def _requirements_digest(wheel: Path) -> str:
    """A short hash of what the wheel requires (its METADATA's Requires-Dist and -Python)."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(name).decode("utf-8", "replace").splitlines()
    wanted = sorted(x for x in lines if x.startswith(("Requires-Dist:", "Requires-Python:")))
    return hashlib.sha256("\n".join(wanted).encode()).hexdigest()[:12]


def download_wheels(wheel: Path, board: Inspection, cache: Path) -> Path:
    """The agent's dependencies as wheels for the board's platform, fetched on the host."""
    assert board.python is not None and board.glibc is not None  # check() refused the others
    py = f"{board.python[0]}{board.python[1]}"
    # One folder per requirement set: a wheel whose dependencies changed never meets the old set
    # (the wheel's name stays edgeopt-0.1.0 across edits, so it cannot be the key).
    glibc = f"{board.glibc[0]}.{board.glibc[1]}"
    out = cache / f"deps-{board.arch}-glibc{glibc}-py{py}-{_requirements_digest(wheel)}"
    stamp = out / ".done"
    if stamp.exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
           "--only-binary=:all:", "--python-version", py, "--implementation", "cp",
           "--dest", str(out), str(wheel)]  # fmt: skip
    for tag in platform_tags(board.arch, board.glibc):
        cmd += ["--platform", tag]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BootstrapError(
            f"downloading the agent's wheels for {board.arch}, Python {py}: "
            f"{done.stderr.strip()[-800:]}"
        )
    stamp.touch()
    return out


_DIGESTS = b"""
import hashlib, sys
for path in sys.argv[1:]:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        print("-")
    else:
        print(h.hexdigest())
"""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _upload(conn: Connection, files: list[Path], folder: str) -> None:
    remotes = [f"{folder}/wheels/{path.name}" for path in files]
    # Compared by content: an upgrade rebuilds edgeopt's wheel under the same name, often with
    # the same size, and a size check would keep the stale one.
    _, out, _ = conn.run("python3 - " + " ".join(quote(r) for r in remotes), stdin=_DIGESTS,
                         timeout=300, check=False)  # fmt: skip
    there = out.split()
    if len(there) != len(files):
        there = ["-"] * len(files)  # an answer we cannot read: upload everything
    with conn.sftp() as sftp:
        for path, remote, digest in zip(files, remotes, there, strict=True):
            if digest == _sha256(path):
                continue  # there from an earlier run (or an interrupted one that got this far)
            sftp.put(str(path), remote + ".part")
            sftp.posix_rename(remote + ".part", remote)


SUPERVISOR = """#!/bin/sh
# edgeopt's agent, supervised: restarted when it dies, given up after {tries} deaths within
# {quick} s of starting (a crash loop: the log says why); stopped by SIGTERM to this script.
umask 077
trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 0' TERM INT
fails=0
while :; do
  started=$(date +%s)
  {serve} >> {log} 2>&1 < /dev/null &
  child=$!
  echo "$child" > {folder}/agent.child
  wait "$child"
  code=$?
  [ "$code" -eq 0 ] && exit 0
  if [ $(( $(date +%s) - started )) -lt {quick} ]; then fails=$((fails + 1)); else fails=1; fi
  echo "supervisor: the agent exited with status $code ($fails quick exit(s))" >> {log}
  [ "$fails" -ge {tries} ] && exit "$code"
  sleep 1
done
"""


def _stop(conn: Connection, folder: str) -> None:
    f = quote(folder)
    conn.run(
        f"systemctl --user stop {UNIT} >/dev/null 2>&1; "
        f"if [ -f {f}/agent.pid ]; then pid=$(cat {f}/agent.pid); kill $pid 2>/dev/null; "
        "for i in $(seq 100); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done; "
        # The supervisor leads its own process group (setsid): whatever is left goes with it.
        f"kill -9 -- -$pid 2>/dev/null; rm -f {f}/agent.pid {f}/agent.child; fi; true",
        timeout=30,
    )


def systemd_word(word: str, *, program: bool = False) -> str:
    """`word` as one argument of a systemd ExecStart= line (systemd.service(5), "Command lines").

    systemd splits on spaces, reads C-style escapes inside double quotes, expands `%` specifiers
    everywhere and `$NAME` in the arguments (not in the program's path): quoted, with
    backslashes and double quotes escaped, `%` as `%%`, and `$` as `$$` unless `program`.
    """
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return '"' + (escaped if program else escaped.replace("$", "$$")) + '"'


def _serve(folder: str, port: int, tls: BoardTls | None = None) -> list[str]:
    """The agent's command line, one word each.

    The venv's python runs the agent's module: pip's `edgeopt-agent` launcher, for a folder with
    a space, is a shell script naming python in double quotes, which expands a `$` in the path.
    """
    words = [f"{folder}/venv/bin/python", "-m", "edgeopt.agent", "serve",
             "--listen", f"127.0.0.1:{port}", "--store", f"{folder}/store",
             "--token-file", f"{folder}/token", "--ready-file", f"{folder}/ready"]  # fmt: skip
    if tls is not None:
        cert, key, client_ca = (f"{folder}/{name}" for name in TLS_FILES)
        words += ["--tls-cert", cert, "--tls-key", key]
        if tls.client_ca_pem is not None:
            words += ["--client-ca", client_ca]
    return words


def unit_text(folder: str, port: int, tls: BoardTls | None = None) -> str:
    """The systemd user unit that runs the agent in `folder`."""
    # append: takes the rest of the line as the path, % specifiers expanded (so doubled).
    log = f"{folder}/agent.log".replace("%", "%%")
    words = _serve(folder, port, tls)
    return (
        "[Unit]\nDescription=edgeopt agent\n\n[Service]\n"
        f"ExecStart={' '.join(systemd_word(w, program=not i) for i, w in enumerate(words))}\n"
        "Restart=on-failure\nUMask=0077\n"
        f"StandardOutput=append:{log}\nStandardError=append:{log}\n"
        "\n[Install]\nWantedBy=default.target\n"
    )


def supervisor_text(folder: str, port: int, tls: BoardTls | None = None) -> str:
    """The shell supervisor that runs the agent in `folder` (every path quoted for sh)."""
    return SUPERVISOR.format(serve=" ".join(quote(w) for w in _serve(folder, port, tls)),
                             log=quote(f"{folder}/agent.log"), folder=quote(folder),
                             tries=3, quick=10)  # fmt: skip


def _start(conn: Connection, folder: str, port: int, systemd: bool, tls: BoardTls | None) -> str:
    f = quote(folder)
    conn.run(f"rm -f {f}/ready", timeout=30)
    if systemd:
        unit = unit_text(folder, port, tls)
        conn.run(
            f"mkdir -p ~/.config/systemd/user && cat > ~/.config/systemd/user/{UNIT} && "
            f"systemctl --user daemon-reload && systemctl --user enable --now {UNIT}",
            stdin=unit.encode(), timeout=60,
        )  # fmt: skip
        return "systemd"
    script = supervisor_text(folder, port, tls)
    conn.run(f"cat > {f}/supervise.sh && chmod 755 {f}/supervise.sh", stdin=script.encode(),
             timeout=30)  # fmt: skip
    conn.run(
        f"cd {f} && (setsid nohup {f}/supervise.sh > /dev/null 2>&1 < /dev/null & "
        f"echo $! > {f}/agent.pid)",
        timeout=30,
    )
    return "supervisor"


def _check_ready(conn: Connection, folder: str, text: str, port: int) -> str:
    """The agent's ready file's HOST:PORT, refused unless the loopback port it was given."""
    found = re.fullmatch(r"127\.0\.0\.1:([0-9]{1,5})", text)
    number = int(found.group(1)) if found else 0
    if not found or not 0 < number < 65536 or (port and number != port):
        wanted = f"127.0.0.1:{port}" if port else "127.0.0.1:PORT"
        raise BootstrapError(
            f"{conn.target}: the agent's ready file ({folder}/ready) holds "
            f"{printable(text)[:120]!r}, not {wanted}: refused, nothing was added to the inventory"
        )
    return text


def _wait_ready(conn: Connection, folder: str, manager: str, timeout: float) -> str:
    f = quote(folder)
    alive = (f"systemctl --user is-active --quiet {UNIT}" if manager == "systemd"
             else f"kill -0 $(cat {f}/agent.pid) 2>/dev/null")  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, out, _ = conn.run(
            f"if [ -s {f}/ready ]; then echo READY; cat {f}/ready; "
            f"elif {alive}; then echo STARTING; else echo DEAD; fi",
            timeout=30,
        )
        state, _, rest = out.partition("\n")
        if state == "READY":
            return rest.strip()
        if state == "DEAD":
            _, log, _ = conn.run(f"tail -n 15 {f}/agent.log 2>/dev/null", check=False)
            log = printable(log.rstrip()[-4000:], keep_newlines=True)
            raise BootstrapError(f"{conn.target}: the agent did not start; the end of its log "
                                 f"({folder}/agent.log):\n{log}")  # fmt: skip
        time.sleep(0.3)
    raise BootstrapError(f"{conn.target}: the agent did not serve within {timeout:g} s "
                         f"(see {folder}/agent.log on the board)")  # fmt: skip


def bootstrap(
    conn: Connection,
    *,
    folder: str = "~/.edgeopt",
    port: int = 50051,
    offline: bool = False,
    wheel: Path | None = None,
    cache: Path,
    start_timeout: float = 60.0,
    say: Callable[[str], None] = lambda _: None,
    tls: BoardTls | None = None,
) -> Installed:
    """Install or upgrade the agent on the board and start it; see the module docstring.

    With `tls` the agent serves TLS (and, with a client CA, mutual TLS) with the files given,
    written under the agent's folder, key 0600.

    Raises:
        BootstrapError: the board cannot take the agent, the agent did not start, or the board
            answered something that is not what the agent writes (ready file, token).
    """
    if not 0 <= port < 65536:
        raise BootstrapError(f"--port {port}: a TCP port is 1 to 65535 (0: any free one)")
    folder = _absolute(conn, folder)
    f = quote(folder)
    say("checking the board")
    board = probe(conn, f)
    check(board, conn.target, folder)
    say("building the agent's wheel")
    built = wheel or build_wheel(cache)
    files = [built]
    if offline:
        say("downloading the agent's dependencies for the board")
        deps = download_wheels(built, board, cache)
        files += sorted(p for p in deps.glob("*.whl") if p.name != built.name)
    # Mode 0700 for the folder and the store, also when an older bootstrap made them 0755: the
    # manifest, the models and the log are the board user's alone.
    conn.run(f"umask 077 && mkdir -p {f}/wheels {f}/store && chmod 700 {f} {f}/store && "
             f"(chmod 600 {f}/agent.log 2>/dev/null; true)", timeout=30)  # fmt: skip
    say(f"uploading {len(files)} wheel(s)")
    _upload(conn, files, folder)
    _, before, _ = conn.run(f"test -x {f}/venv/bin/edgeopt-agent && echo yes || echo no",
                            timeout=30)  # fmt: skip
    upgraded = before.strip() == "yes"
    say("installing" if not upgraded else "upgrading in place")
    pip = f"{f}/venv/bin/python -m pip --disable-pip-version-check --quiet"
    index = f"--no-index --find-links {f}/wheels" if offline else ""
    remote_wheel = f"{f}/wheels/{quote(built.name)}"
    conn.run(
        f"(test -x {f}/venv/bin/python || python3 -m venv {f}/venv) && "
        f"{pip} install {index} {remote_wheel} && "
        f"{pip} install --force-reinstall --no-deps {index} {remote_wheel}",
        timeout=1800,
    )
    conn.run(
        f"test -s {f}/token || (umask 077 && python3 -c "
        f"'import secrets; print(secrets.token_urlsafe(32))' > {f}/token)",
        timeout=30,
    )
    _, token, _ = conn.run(f"cat {f}/token", timeout=30)
    token = token.strip()
    if not re.fullmatch(_TOKEN_RULE, token):
        raise BootstrapError(
            f"{conn.target}: the board's token file ({folder}/token) is not one line of 16 to "
            "4096 printable ASCII characters without spaces: refused (remove it and bootstrap "
            "again to make a new one)"
        )
    say("starting the agent")
    _stop(conn, folder)
    if tls is not None:
        say("installing the agent's certificate")
        _install_tls(conn, folder, tls)
    manager = _start(conn, folder, port, board.systemd, tls)
    address = _check_ready(conn, folder, _wait_ready(conn, folder, manager, start_timeout), port)
    return Installed(folder, address, token, manager, upgraded)


def _install_tls(conn: Connection, folder: str, tls: BoardTls) -> None:
    """Write the board's certificate, key and client CA (0600 in a 0700 folder)."""
    f = quote(folder)
    conn.run(f"umask 077 && mkdir -p {f}/tls && chmod 700 {f}/tls", timeout=30)
    files = [tls.cert_pem, tls.key_pem, tls.client_ca_pem]
    for name, data in zip(TLS_FILES, files, strict=True):
        if data is None:
            conn.run(f"rm -f {f}/{name}", timeout=30)
            continue
        conn.run(f"umask 077 && cat > {f}/{name}.part && mv {f}/{name}.part {f}/{name}",
                 stdin=data, timeout=30)  # fmt: skip


def remove(conn: Connection, *, folder: str = "~/.edgeopt", purge: bool = False) -> list[str]:
    """Stop the agent and delete what bootstrap made; the store too with `purge`."""
    folder = _absolute(conn, folder)
    f = quote(folder)
    _stop(conn, folder)
    conn.run(
        f"systemctl --user disable {UNIT} >/dev/null 2>&1; "
        f"rm -f ~/.config/systemd/user/{UNIT}; systemctl --user daemon-reload >/dev/null 2>&1; "
        "true",
        timeout=30,
    )
    gone = ["venv", "wheels", "token", "ready", "agent.log", "supervise.sh"]
    _, tls_folder, _ = conn.run(f"test -d {f}/tls && echo yes || echo no", timeout=30)
    if tls_folder.strip() == "yes":  # bootstrapped with --tls: its certificate and key go too
        gone.append("tls")
    if purge:
        gone.append("store")
    conn.run(f"cd {f} 2>/dev/null && rm -rf {' '.join(gone)}; "
             f"{'rmdir ' + f + ' 2>/dev/null; ' if purge else ''}true", timeout=120)  # fmt: skip
    return [f"{folder}/{g}" for g in gone]


TOKENS_DIR = ".edgeopt-tokens"
"""Folder beside the inventory that holds the tokens of bootstrapped agents (mode 0700)."""


def _load_document(inventory: Path) -> tomlkit.TOMLDocument:
    if not inventory.exists():
        return tomlkit.document()
    try:
        return tomlkit.parse(inventory.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomlkit.exceptions.ParseError) as exc:
        raise InventoryError(str(inventory), f"cannot edit: {exc}") from exc


def _write_document(inventory: Path, text: str) -> None:
    """Replace the inventory at once: a crash leaves the old file or the new one, never half."""
    fd, part = tempfile.mkstemp(dir=inventory.parent, prefix=f".{inventory.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        if inventory.exists():
            os.chmod(part, inventory.stat().st_mode & 0o7777)
        os.replace(part, inventory)
    except BaseException:
        Path(part).unlink(missing_ok=True)
        raise


def add_to_inventory(
    inventory: Path,
    name: str,
    target: str,
    installed: Installed,
    tls: dict[str, str] | None = None,
) -> Path:
    """Write (or replace) the device's table; its token goes into a 0600 file beside it.

    `tls` adds the device's TLS keys (`ca`, `client_cert`, `client_key`: paths) to its table.

    Raises:
        BootstrapError: `name` breaks `NAME_RULE`.
        InventoryError: the inventory is not TOML, or its `devices` is not a table.
    """
    check_name(name)
    doc = _load_document(inventory)
    devices: Any = doc.get("devices")
    if devices is None:
        devices = tomlkit.table(is_super_table=True)
        doc["devices"] = devices
    elif not isinstance(devices, dict):
        raise InventoryError(str(inventory), "must be a table", "devices")
    table = tomlkit.table()
    table["ssh"] = target
    table["address"] = installed.address
    table["token_file"] = f"{TOKENS_DIR}/{name}.token"
    table["agent_folder"] = installed.folder
    for key, value in (tls or {}).items():
        table[key] = value
    table.add(tomlkit.nl())  # a blank line before whatever table follows
    devices[name] = table
    text = tomlkit.dumps(doc).rstrip("\n") + "\n"
    # What a reader will see: exactly this table under exactly this name (nothing else added).
    written = tomllib.loads(text)["devices"][name]
    assert written == {k: str(v) for k, v in table.items()}, written
    tokens = inventory.parent / TOKENS_DIR
    tokens.mkdir(mode=0o700, parents=True, exist_ok=True)
    token_file = tokens / f"{name}.token"
    token_file.touch(mode=0o600)
    token_file.chmod(0o600)
    token_file.write_text(installed.token + "\n")
    _write_document(inventory, text)
    return token_file


def drop_from_inventory(inventory: Path, name: str) -> None:
    """Remove the device's table and its token file (groups naming it are left to the user)."""
    doc = _load_document(inventory)
    devices: Any = doc.get("devices")
    if isinstance(devices, dict) and name in devices:
        del devices[name]
        _write_document(inventory, tomlkit.dumps(doc))
    (inventory.parent / TOKENS_DIR / f"{name}.token").unlink(missing_ok=True)
