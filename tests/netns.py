"""Boards with their own addresses: Linux network namespaces joined by a bridge (TESTING.md).

`Lab(n)` creates a bridge `eobr<id>` holding 10.77.<k>.1/24 in the root namespace and `n`
namespaces `eo<id>-<i>`, each reachable at 10.77.<k>.<11+i>. Everything is removed on close.
Only these addresses are ever contacted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    probe = f"eoprobe{uuid.uuid4().hex[:6]}"
    done = subprocess.run(
        ["ip", "netns", "add", probe], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return f"cannot create network namespaces here: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


@dataclass
class Lab:
    """A bridge and `size` namespaces, each with one address on it."""

    size: int
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:5])
    subnet: int = field(default_factory=lambda: 100 + os.getpid() % 100)
    namespaces: list[str] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"eobr{self.tag}"

    def address(self, i: int) -> str:
        return f"10.77.{self.subnet}.{11 + i}"

    def __enter__(self) -> Lab:
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"10.77.{self.subnet}.1/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for i in range(self.size):
                ns = f"eo{self.tag}-{i}"
                host_end, ns_end = f"eo{self.tag}h{i}", f"eo{self.tag}n{i}"
                _ip("netns", "add", ns)
                self.namespaces.append(ns)
                _ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
                _ip("link", "set", host_end, "master", self.bridge, "up")
                _ip("link", "set", ns_end, "netns", ns)
                _ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", ns_end)
                _ip("-n", ns, "link", "set", ns_end, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run_in(self, i: int, cmd: list[str]) -> list[str]:
        """`cmd` prefixed to run inside namespace i."""
        return ["ip", "netns", "exec", self.namespaces[i], *cmd]

    def close(self) -> None:
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self.namespaces.clear()
        # Deleting a namespace deletes its veth ends, and with them their peers.
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)
