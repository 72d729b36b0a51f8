"""Reach an agent through SSH: a local port forwarded to the agent's loopback port on the board.

A device with `ssh = "user@host"` in the inventory keeps its agent listening on the board's
loopback only (`address`, default 127.0.0.1:50051, is as seen from the board). `Tunnel` listens
on 127.0.0.1:<free port> here at once and logs in over SSH in the background; every connection
it accepts becomes a `direct-tcpip` channel to the agent, as `ssh -L` does. A board whose SSH
login fails does not hold up the others: its tunnel refuses connections, and the client's
"cannot reach the agent" error carries the SSH reason (`explain`).
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from typing import Any

import paramiko

from edgeopt.host.errors import SshError
from edgeopt.host.transport.ssh import connection as ssh

__all__ = ["Tunnel", "explain"]

_OPEN: dict[str, Tunnel] = {}
"""Open tunnels by their local address, for `explain`."""


def explain(address: str) -> str:
    """Why the tunnel behind a local address cannot carry connections ("" when it can)."""
    tunnel = _OPEN.get(address)
    if tunnel is None or not tunnel.ready.is_set() or not tunnel.error:
        return ""
    return f"the SSH tunnel through {tunnel.spec} failed: {tunnel.error}"


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class Tunnel:
    """A local port forwarded to `remote` on the board behind `spec` (see the module docstring)."""

    def __init__(
        self,
        spec: str,
        remote: str,
        *,
        accept_new_host_key: bool = False,
        timeout: float = ssh.DEFAULT_TIMEOUT,
    ) -> None:
        self.spec = spec
        self.remote = _split(remote)
        self.error = ""
        self.ready = threading.Event()
        self.conn: ssh.Connection | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        _OPEN[self.address] = self
        self._options = (accept_new_host_key, timeout)
        self._threads = [threading.Thread(target=self._serve, name=f"tunnel {spec}", daemon=True)]
        self._threads[0].start()

    def wait(self, timeout: float | None = None) -> str:
        """Wait until the login finished; the error ("" when the tunnel works)."""
        self.ready.wait(timeout)
        return self.error

    def _serve(self) -> None:
        accept_new, timeout = self._options
        try:
            self.conn = ssh.connect(self.spec, accept_new_host_key=accept_new, timeout=timeout)
        except SshError as exc:
            self.error = str(exc)
        finally:
            self.ready.set()
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.conn is None:
                client.close()
                continue
            pump = threading.Thread(target=self._pump, args=(client,), daemon=True)
            self._threads.append(pump)
            pump.start()

    def _transport(self) -> paramiko.Transport:
        """The live SSH transport, logging in again if the connection dropped."""
        with self._lock:
            assert self.conn is not None
            transport = self.conn.client.get_transport()
            if transport is not None and transport.is_active():
                return transport
            if self._closed:
                raise paramiko.SSHException("the tunnel is closed")
            self.conn.close()
            accept_new, timeout = self._options
            try:
                self.conn = ssh.connect(self.spec, accept_new_host_key=accept_new,
                                        timeout=timeout)  # fmt: skip
            except SshError as exc:
                raise paramiko.SSHException(f"the SSH connection dropped: {exc}") from exc
            transport = self.conn.client.get_transport()
            assert transport is not None
            return transport

    def _pump(self, client: socket.socket) -> None:
        try:
            transport = self._transport()
            channel = transport.open_channel("direct-tcpip", self.remote,
                                             client.getpeername())  # fmt: skip
        except (paramiko.SSHException, OSError) as exc:
            self.error = f"cannot open a channel to {self.remote[0]}:{self.remote[1]}: {exc}"
            client.close()
            return
        # Either end closing (or the tunnel) ends the copy; an error here is a closed socket.
        # The suppress comes first so that it also covers the closes: closing a channel sends a
        # message and raises EOFError when the SSH connection went first.
        with (
            contextlib.suppress(OSError, ValueError, EOFError, paramiko.SSHException),
            contextlib.closing(client),
            contextlib.closing(channel),
        ):
            while not self._closed:
                ends: list[Any] = [client, channel]
                readable, _, _ = select.select(ends, [], [], 1.0)
                if client in readable:
                    data = client.recv(1 << 16)
                    if not data:
                        return
                    channel.sendall(data)
                if channel in readable:
                    data = channel.recv(1 << 16)
                    if not data:
                        return
                    client.sendall(data)

    def close(self) -> None:
        """Stop forwarding and log out."""
        self._closed = True
        _OPEN.pop(self.address, None)
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() of _serve
        with contextlib.suppress(OSError):
            self._listener.close()
        for thread in self._threads:  # each notices within a second and closes its sockets
            thread.join(timeout=5)
        if self.conn is not None:
            self.conn.close()
