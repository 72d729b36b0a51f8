"""The agent as a service on a board: its command line, started, waited for, stopped.

Where systemd runs a user instance the agent is a user unit (`UNIT`); elsewhere a detached shell
supervisor restarts it when it dies and keeps a pid file. Every path is quoted for the shell and
written into the unit as systemd reads it (`systemd_word`). The agent says it serves by writing
its loopback HOST:PORT to a ready file, which is checked before anything trusts it.
"""

from __future__ import annotations

import re
import time

from edgeopt.host.errors import BootstrapError
from edgeopt.host.transport.ssh.bootstrap.certificates import TLS_FILES, BoardTls
from edgeopt.host.transport.ssh.connection import Connection, printable, quote

__all__ = [
    "SUPERVISOR",
    "UNIT",
    "check_ready",
    "start_agent",
    "stop_agent",
    "supervisor_text",
    "systemd_word",
    "unit_text",
    "wait_until_ready",
]

UNIT = "edgeopt-agent.service"
"""The agent's systemd user unit (in ~/.config/systemd/user on the board)."""


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


def stop_agent(conn: Connection, folder: str) -> None:
    """Stop the agent in `folder`, whichever way it was started; nothing running is fine."""
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


def start_agent(
    conn: Connection, folder: str, port: int, systemd: bool, tls: BoardTls | None
) -> str:
    """Start the agent in `folder` as a systemd user unit or under the shell supervisor.

    Returns:
        How it runs: "systemd" or "supervisor".
    """
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


def check_ready(conn: Connection, folder: str, text: str, port: int) -> str:
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


def wait_until_ready(conn: Connection, folder: str, manager: str, timeout: float) -> str:
    """The agent's ready file's text once it is written (not yet checked: see `check_ready`).

    Raises:
        BootstrapError: the agent died (the end of its log is in the message), or did not
            serve within `timeout` seconds.
    """
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
