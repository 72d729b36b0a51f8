"""A real OCI distribution registry on a loopback port, for tests and benchmarks.

`OciRegistry(folder)` writes a config and an htpasswd file (bcrypt, by Apache's `htpasswd -B`)
into `folder`, starts Debian's `docker-registry serve` (the CNCF distribution registry) on a free
127.0.0.1 port, with TLS when given a certificate and key, waits until `/v2/` answers, and
stops it on close. `credentials_file()` writes a docker-style config.json for the agent. The
Makefile installs Debian's docker-registry and apache2-utils; `unavailable_reason()` says why
no registry can run here.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.ports import free_port

REGISTRY = "docker-registry"


def unavailable_reason() -> str | None:
    """Why a registry cannot be started here, or None."""
    if shutil.which(REGISTRY) is None:
        return "Debian's docker-registry is not installed (make installs it as root)"
    if shutil.which("htpasswd") is None:
        return "htpasswd is not installed (Debian's apache2-utils; make installs it as root)"
    return None


@dataclass
class OciRegistry:
    """docker-registry on 127.0.0.1:`port`; `user`/`password` may push and pull."""

    folder: Path
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None
    user: str = "fleet"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    repository: str = "edgeopt/fleet"
    host: str = "127.0.0.1"
    """The address it listens on (a bridge's, for agents in network namespaces)."""
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> OciRegistry:
        self.folder.mkdir(parents=True, exist_ok=True)
        htpasswd = self.folder / "htpasswd"
        entry = subprocess.run(
            ["htpasswd", "-Bbn", self.user, self.password],
            check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        htpasswd.write_text(entry + "\n")
        self.port = self.port or free_port()
        tls = f", tls: {{certificate: {self.cert}, key: {self.key}}}" if self.cert else ""
        (self.folder / "config.yml").write_text(
            "version: 0.1\n"
            "log: {level: warn, accesslog: {disabled: true}}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.folder / 'data'}}}, "
            "delete: {enabled: true}}\n"
            f"http: {{addr: {self.host}:{self.port}{tls}}}\n"
            f"auth: {{htpasswd: {{realm: edgeopt, path: {htpasswd}}}}}\n"
        )
        with (self.folder / "registry.log").open("ab") as log:  # the child keeps its copy
            self.process = subprocess.Popen(
                [REGISTRY, "serve", str(self.folder / "config.yml")], stdout=log, stderr=log
            )
        deadline = time.monotonic() + 20
        while self._status("/v2/") != 401:
            if self.process.poll() is not None:
                raise RuntimeError(f"docker-registry exited:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"docker-registry did not answer within 20 s:\n{self.log()}")
            time.sleep(0.05)
        return self

    def _status(self, path: str) -> int:
        conn: http.client.HTTPConnection
        if self.cert:
            context = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=2,
                                               context=context)  # fmt: skip
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=2)
        try:
            conn.request("GET", path)
            return conn.getresponse().status
        except OSError:
            return 0
        finally:
            conn.close()

    @property
    def url(self) -> str:
        """The repository as `--pull` and `--registry` take it."""
        scheme = "oci" if self.cert else "oci+http"
        return f"{scheme}://{self.host}:{self.port}/{self.repository}"

    def credentials_file(
        self, path: Path, password: str | None = None, port: int | None = None
    ) -> Path:
        """A docker config.json with this registry's login (or a wrong `password`).

        `port`: file it under another port (the registry reached through a relay).
        """
        pair = f"{self.user}:{password if password is not None else self.password}"
        auth = base64.b64encode(pair.encode()).decode()
        where = f"{self.host}:{port or self.port}"
        path.write_text(json.dumps({"auths": {where: {"auth": auth}}}))
        path.chmod(0o600)
        return path

    def log(self) -> str:
        path = self.folder / "registry.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def restart(self) -> None:
        """Stop and start again on the same port and data (a registry that went away)."""
        self.stop()
        with contextlib.suppress(OSError):
            self.start()


class CuttingLink:
    """A TCP relay to the registry that cuts connections after set numbers of downloaded bytes.

    Connection i (in order of arrival) is closed both ways once more than `cuts[i]` bytes went
    from the registry to the client, as a dropped cellular link would; connections past the
    list pass untouched. `downloaded` counts every byte that reached the client.
    """

    def __init__(self, port: int, cuts: list[int]) -> None:

        self.target = port
        self.cuts = list(cuts)
        self.cut_done = 0
        self.downloaded = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._closing = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:

        while not self._closing:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self._lock:
                limit = self.cuts.pop(0) if self.cuts else None
            threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, limit), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, limit: int | None) -> None:
        down = src.getpeername()[1] == self.target
        carried = 0
        try:
            while data := src.recv(65536):
                if limit is not None and carried + len(data) > limit:
                    data = data[: limit - carried]
                    dst.sendall(data)
                    with self._lock:
                        self.downloaded += len(data)
                        self.cut_done += 1
                    break
                dst.sendall(data)
                carried += len(data)
                if down:
                    with self._lock:
                        self.downloaded += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def close(self) -> None:
        self._closing = True
        self._server.close()
