"""A free loopback port for the real services the tests start (sshd, PostgreSQL, the OCI
registry, Prometheus, the ARM lab's agent)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
