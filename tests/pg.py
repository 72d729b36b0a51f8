"""A real PostgreSQL server on a loopback port, for tests (shared/TESTING.md).

`Postgres()` makes a temporary folder, runs Debian's `initdb` there with one superuser that
logs in by password (scram-sha-256), starts the server with `pg_ctl -w` on a free 127.0.0.1
port (its unix socket in the folder, never in /var/run), creates a database and gives its
`url`; on close it stops the server and removes the folder. PostgreSQL refuses to run as root,
so as root every server command runs as Debian's `postgres` user, who then owns the folder.
The Makefile installs Debian's postgresql package; `unavailable_reason()` says why no server
can be started here.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from tests.ports import free_port

VERSIONS = Path("/usr/lib/postgresql")
SERVER_USER = "postgres"
"""Who runs the server when the tests run as root (the Debian package creates it)."""
START_TIMEOUT = 30


def bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin folder (holding initdb and pg_ctl), or None."""
    found = sorted(
        (p for p in VERSIONS.glob("*/bin") if (p / "initdb").exists() and (p / "pg_ctl").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return found[-1] if found else None


def unavailable_reason() -> str | None:
    """Why a PostgreSQL server cannot be started here, or None."""
    if bin_dir() is None:
        return (
            f"Debian's postgresql package is not installed (no initdb under {VERSIONS}/*/bin): "
            "run `make system-packages` as root"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root and there is no `{SERVER_USER}` user to run PostgreSQL as"
    return None


@dataclass
class Postgres:
    """PostgreSQL on 127.0.0.1:`port`; `user` logs in with `password` and owns `database`."""

    user: str = "edgeopt"
    database: str = "edgeopt"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    port: int = 0
    folder: Path | None = None

    def url(self, database: str | None = None) -> str:
        """The URL of `database` (default: the one created at start)."""
        return (
            f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/"
            f"{database or self.database}"
        )

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its URL."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        binary = bin_dir()
        assert binary is not None, unavailable_reason()
        command = [str(binary / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        # cwd: the server user may not be allowed into the tests' working directory.
        return subprocess.run(command, cwd=self.folder, capture_output=True, text=True,
                              timeout=timeout, check=False)  # fmt: skip

    def _log_tail(self, lines: int = 30) -> str:
        assert self.folder is not None
        log = self.folder / "server.log"
        text = log.read_text(errors="replace") if log.exists() else "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Postgres:
        # Not pytest's tmp_path: its parents are private to root, so `postgres` could not reach it.
        self.folder = Path(tempfile.mkdtemp(prefix="edgeopt-pg-"))
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        assert self.folder is not None
        password_file = self.folder / "password"
        password_file.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.folder, SERVER_USER)
            shutil.chown(password_file, SERVER_USER)
        done = self._run(
            "initdb", "-D", str(self.folder / "data"), "-U", self.user,
            f"--pwfile={password_file}", "--auth=scram-sha-256", "--encoding=UTF8",
            "--locale=C", "--no-sync",
        )  # fmt: skip
        password_file.unlink()
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        self.port = self.port or free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.folder} -c fsync=off"
        )
        done = self._run(
            "pg_ctl", "start", "-D", str(self.folder / "data"), "-o", options,
            "-l", str(self.folder / "server.log"), "-w", "-t", str(START_TIMEOUT),
            timeout=START_TIMEOUT + 10,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(
                f"PostgreSQL did not start on 127.0.0.1:{self.port} (pg_ctl start -w, "
                f"{START_TIMEOUT} s: {done.stdout.strip()} {done.stderr.strip()}); server log:\n"
                + self._log_tail()
            )
        self.create_database(self.database)

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the server (fast: open sessions are cut) and remove the folder."""
        if self.folder is None:
            return
        if (self.folder / "data" / "postmaster.pid").exists():
            done = self._run("pg_ctl", "stop", "-D", str(self.folder / "data"), "-m", "fast", "-w")
            if done.returncode != 0:
                self._run("pg_ctl", "stop", "-D", str(self.folder / "data"), "-m", "immediate")
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None
