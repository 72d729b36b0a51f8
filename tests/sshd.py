"""A real OpenSSH server on a loopback port, for tests and benchmarks (shared/TESTING.md).

`Sshd(folder)` writes host and client keys and a config into `folder`, starts
`/usr/sbin/sshd -D -e` on a free 127.0.0.1 port with key-only authentication for root, waits
until it accepts connections, and stops it on close. The Makefile installs Debian's
openssh-server when it is missing; `unavailable_reason()` says why none can run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.ports import free_port

SSHD = Path("/usr/sbin/sshd")


def unavailable_reason() -> str | None:
    """Why an sshd cannot be started here, or None."""
    if not SSHD.exists():
        return "OpenSSH's sshd is not installed (make installs Debian's openssh-server)"
    if shutil.which("ssh-keygen") is None:
        return "ssh-keygen is not installed"
    return None


@dataclass
class Sshd:
    """sshd on 127.0.0.1:`port`, accepting `client_key` for `user`."""

    folder: Path
    user: str = "root"
    port: int = 0
    extra: str = ""
    """More sshd_config lines (e.g. SetEnv PATH=... for a board without a usable python3)."""
    listen: str = "127.0.0.1"
    """The address to listen on (a network namespace's own address for a "board")."""
    prefix: tuple[str, ...] = ()
    """A command sshd runs under, such as ("ip", "netns", "exec", NS)."""
    process: subprocess.Popen[bytes] | None = None

    @property
    def client_key(self) -> Path:
        """The private key that logs in."""
        return self.folder / "client_ed25519"

    def __enter__(self) -> Sshd:
        self.folder.mkdir(parents=True, exist_ok=True)
        for name in ("host_ed25519", "client_ed25519"):
            key = self.folder / name
            if not key.exists():
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                               check=True)  # fmt: skip
        keys = self.folder / "authorized_keys"
        keys.mkdir(exist_ok=True)
        shutil.copyfile(self.folder / "client_ed25519.pub", keys / self.user)
        self.port = self.port or free_port()
        config = self.folder / "sshd_config"
        config.write_text(
            f"ListenAddress {self.listen}\nPort {self.port}\n"
            f"HostKey {self.folder / 'host_ed25519'}\nPidFile {self.folder / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {keys}/%u\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n"
            "Subsystem sftp internal-sftp\nStrictModes no\n"
            # A session whose client vanished (its namespace deleted) ends within ~15 s.
            "ClientAliveInterval 5\nClientAliveCountMax 3\n" + self.extra
        )
        Path("/run/sshd").mkdir(exist_ok=True)
        log = (self.folder / "sshd.log").open("wb")
        self.process = subprocess.Popen([*self.prefix, str(SSHD), "-D", "-e", "-f", str(config)],
                                        stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError((self.folder / "sshd.log").read_text())
            try:
                with socket.create_connection((self.listen, self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        self.close()
        raise RuntimeError("sshd did not accept connections within 20 s")

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the server and the sessions it forked.

        A session's process runs on after the listener stops, and one whose client vanished
        with its network namespace would wait forever: they are stopped too.
        """
        sessions = _children(self.process.pid) if self.process is not None else []
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        for pid in sessions:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


UNPRIVILEGED = "edgeopt-ssh"
"""A plain user for tests that log in as somebody other than root."""


def ensure_user(name: str = UNPRIVILEGED) -> str | None:
    """Make sure `name` exists and may log in with a key; None, or why it cannot be done."""
    import os
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        if os.geteuid() != 0:
            return f"no user {name} and not root to create it"
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
    if os.geteuid() == 0:
        # useradd leaves the account locked ("!"), which sshd refuses without PAM; "*" means
        # no password: keys only.
        subprocess.run(["usermod", "-p", "*", name], check=True)
    return None


def known_hosts_line(server: Sshd) -> str:
    """The known_hosts line OpenSSH would record for `server`."""
    kind, blob = (server.folder / "host_ed25519.pub").read_text().split()[:2]
    name = server.listen if server.port == 22 else f"[{server.listen}]:{server.port}"
    return f"{name} {kind} {blob}\n"


def client_home(folder: Path, server: Sshd | None = None, config: str | None = None) -> Path:
    """A $HOME whose ~/.ssh knows `server`'s host key and offers its client key to every host.

    `config` replaces the default ~/.ssh/config ("Host *" with the server's client key).
    """
    home = folder / "home"
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    if server is not None:
        with (home / ".ssh" / "known_hosts").open("a") as known:
            known.write(known_hosts_line(server))
    if config is None and server is not None:
        config = f"Host *\n  IdentityFile {server.client_key}\n"
    (home / ".ssh" / "config").write_text(config or "")
    return home
