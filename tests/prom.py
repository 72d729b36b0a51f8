"""A real Prometheus server on a loopback port, scraping given targets every second.

`Prometheus(folder, targets)` writes a config into `folder`, starts Debian's `prometheus` on a
free 127.0.0.1 port with its TSDB in the folder, waits until it is ready, and stops it on
close; `query(expr)` asks its HTTP API. The Makefile installs Debian's prometheus package;
`unavailable_reason()` says why none can run here.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.ports import free_port

PROMETHEUS = "prometheus"


def unavailable_reason() -> str | None:
    """Why a Prometheus server cannot be started here, or None."""
    if shutil.which(PROMETHEUS) is None:
        return "Debian's prometheus is not installed (make installs it as root)"
    return None


@dataclass
class Prometheus:
    """prometheus on 127.0.0.1:`port`, scraping `targets` (HOST:PORT) every second."""

    folder: Path
    targets: list[str]
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Prometheus:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        listed = ", ".join(f'"{t}"' for t in self.targets)
        (self.folder / "prom.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: edgeopt\n    static_configs: [{{targets: [{listed}]}}]\n"
        )
        with (self.folder / "prometheus.log").open("ab") as log:
            self.process = subprocess.Popen(
                [PROMETHEUS, f"--config.file={self.folder / 'prom.yml'}",
                 f"--storage.tsdb.path={self.folder / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=log,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"prometheus did not start:\n{self.log()}")
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector `expr` gives now (Prometheus's /api/v1/query)."""
        q = urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{q}", timeout=10) as answer:
            body = json.loads(answer.read())
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def value(self, expr: str) -> float | None:
        """The single sample `expr` gives now, or None when it gives none."""
        found = self.query(expr)
        return float(found[0]["value"][1]) if found else None

    def wait_for(self, expr: str, expected: float, timeout: float = 30.0) -> float | None:
        """Poll until `expr` equals `expected` (or `timeout`); the last value seen."""
        deadline = time.monotonic() + timeout
        seen = self.value(expr)
        while seen != expected and time.monotonic() < deadline:
            time.sleep(0.25)
            seen = self.value(expr)
        return seen

    def log(self) -> str:
        path = self.folder / "prometheus.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __exit__(self, *_: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
