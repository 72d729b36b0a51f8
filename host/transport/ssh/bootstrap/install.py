"""Install, start, upgrade and remove the agent on a board: the steps, in order.

`bootstrap` checks the board, uploads the wheels (compared by content: an upgrade rebuilds
edgeopt's wheel under the same name), makes the venv and installs, keeps or makes the token,
starts the agent and waits until it serves. `remove` undoes it. See the package's docstring.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgeopt.host.errors import BootstrapError
from edgeopt.host.transport.ssh.bootstrap.certificates import BoardTls, install_tls
from edgeopt.host.transport.ssh.bootstrap.inspection import check, probe
from edgeopt.host.transport.ssh.bootstrap.service import (
    UNIT,
    check_ready,
    start_agent,
    stop_agent,
    wait_until_ready,
)
from edgeopt.host.transport.ssh.bootstrap.wheels import build_wheel, download_wheels
from edgeopt.host.transport.ssh.connection import Connection, printable, quote

__all__ = ["Installed", "bootstrap", "remove"]

_TOKEN_RULE = r"[!-~]{16,4096}"
"""The board's token as the host keeps it: one line of printable ASCII, no spaces."""


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
    stop_agent(conn, folder)
    if tls is not None:
        say("installing the agent's certificate")
        install_tls(conn, folder, tls)
    manager = start_agent(conn, folder, port, board.systemd, tls)
    address = check_ready(
        conn, folder, wait_until_ready(conn, folder, manager, start_timeout), port
    )
    return Installed(folder, address, token, manager, upgraded)


def remove(conn: Connection, *, folder: str = "~/.edgeopt", purge: bool = False) -> list[str]:
    """Stop the agent and delete what bootstrap made; the store too with `purge`."""
    folder = _absolute(conn, folder)
    f = quote(folder)
    stop_agent(conn, folder)
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
