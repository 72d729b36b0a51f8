"""A channel to one agent: TLS or not, the token, deadlines, retries, errors translated.

Every call has a deadline (`ClientConfig.deadline`, the whole budget including retries). A call
that fails with UNAVAILABLE (agent restarting, connection refused) is retried with exponential
backoff and jitter while the budget lasts. Any `grpc.aio.AioRpcError` leaving the client is
translated once, through `edgeopt.host.errors.STATUS_TO_ERROR`, into an `AgentError` that keeps
the device's name and the status.

TLS (`tls=TlsSettings(...)`, from the inventory): the agent's certificate is checked against the
CA (`ca`) and the address's host (or `server_name`); with a pin (`tls_pin`), the certificate the
agent presents is fetched first and must hash to the pin, and then exactly it is trusted. A
certificate that does not match is refused with an `AgentUnavailable` that says why, at once
(no retries: a wrong certificate does not heal). Without TLS, a token sent beyond loopback is
logged as a warning: it crosses the network in cleartext.

`Channel` is the base of `edgeopt.host.transport.client.AgentClient`; the RPCs live there and in
`edgeopt.host.transport.upload.Uploads`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import grpc
import grpc.aio

from edgeopt.host.config.inventory import TlsSettings
from edgeopt.host.errors import (
    AgentError,
    AgentTimeout,
    AgentUnavailable,
    TlsError,
    error_for_status,
)
from edgeopt.host.transport import tls as certs
from edgeopt.host.transport.ssh import tunnel
from edgeopt.proto import auth
from edgeopt.proto.v1 import agent_pb2_grpc

__all__ = ["MAX_MESSAGE_BYTES", "Channel", "ClientConfig"]

T = TypeVar("T")
C = TypeVar("C", bound="Channel")
log = logging.getLogger("edgeopt.host.transport.client")
"""The client's logger (its name is the one users and tests already filter on)."""
_WARNED_CLEARTEXT: set[str] = set()
"""Addresses already warned about (once per process, not once per call)."""

MAX_MESSAGE_BYTES = 64 << 20
"""Largest message the host accepts from a board (agents send at most 4 MiB; older ones sent
whole Infer results in one message). A board cannot make the host hold more than this."""


@dataclass(frozen=True)
class ClientConfig:
    """How the host talks to agents."""

    deadline: float = 10.0
    """Seconds one call may take in all, retries included."""
    retries: int = 4
    """Extra attempts after an UNAVAILABLE answer, while the deadline allows."""
    backoff_initial: float = 0.1
    """Seconds before the first retry; doubled each time."""
    backoff_max: float = 2.0
    """Longest wait between two attempts."""


class Channel:
    """The channel, credentials and call machinery of one agent's client."""

    def __init__(
        self,
        address: str,
        *,
        token: str | None = None,
        device: str | None = None,
        config: ClientConfig | None = None,
        tls: TlsSettings | None = None,
    ) -> None:
        """Prepare a client; the channel opens lazily on the first call.

        Args:
            address: HOST:PORT of the agent.
            token: bearer token, sent with every call.
            device: inventory name, carried into errors.
            config: deadlines and retries.
            tls: TLS to the agent (`Device.tls`); None: plaintext. With a pin, the pin is
                checked on entering `async with`, which such a client needs.

        Raises:
            TlsError: a CA, client certificate or key file cannot be read.
        """
        self.address = address
        self.device = device
        self.config = config or ClientConfig()
        self.tls = tls
        self._metadata = (auth.bearer(token),) if token else ()
        self._options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = _PinPending(address)
        if tls is None:
            if token and not _is_loopback(address) and address not in _WARNED_CLEARTEXT:
                _WARNED_CLEARTEXT.add(address)
                log.warning(
                    "%sthe agent's token travels in cleartext to %s: anyone on the path can "
                    "read it; turn on TLS (README: TLS and mutual TLS) or reach it over SSH",
                    f"{device}: " if device else "", address,
                )  # fmt: skip
            self._open(None)
        elif tls.pin is None:
            self._open(self._read(tls.ca, "ca"))

    def _open(self, roots: bytes | None, name: str | None = None) -> None:
        """Create the channel: plaintext when `self.tls` is None, else TLS trusting `roots`."""
        if self.tls is None:
            self._channel = grpc.aio.insecure_channel(self.address, options=self._options)
        else:
            key = self._read(self.tls.client_key, "client_key")
            chain = self._read(self.tls.client_cert, "client_cert")
            credentials = grpc.ssl_channel_credentials(roots, key, chain)
            options = list(self._options)
            target = self.tls.server_name or name
            if target:
                options.append(("grpc.ssl_target_name_override", target))
            self._channel = grpc.aio.secure_channel(self.address, credentials, options=options)
        # The generated gRPC module has no annotations (grpcio-tools writes none for it).
        self._stub = agent_pb2_grpc.AgentStub(self._channel)  # type: ignore[no-untyped-call]

    def _read(self, path: Path | None, key: str) -> bytes | None:
        if path is None:
            return None
        try:
            return path.read_bytes()
        except OSError as exc:
            who = f" of device {self.device!r}" if self.device else ""
            raise TlsError(
                f"cannot read the TLS {key} file{who}, {path}: {exc.strerror or exc}"
            ) from exc

    async def _check_pin(self, tls: TlsSettings) -> None:
        """Fetch the agent's certificate, hold it against the pin, then trust exactly it."""
        # A client certificate that cannot be read is said as such, not as a failed handshake.
        self._read(tls.client_cert, "client_cert")
        self._read(tls.client_key, "client_key")
        host, _, port = self.address.rpartition(":")
        try:
            pem = await asyncio.wait_for(
                asyncio.to_thread(
                    certs.fetch_certificate, host.strip("[]"), int(port),
                    server_name=tls.server_name, client_cert=tls.client_cert,
                    client_key=tls.client_key, timeout=self.config.deadline,
                ),
                self.config.deadline + 1,
            )  # fmt: skip
        except (OSError, asyncio.TimeoutError) as exc:  # ssl.SSLError is an OSError
            what = "TLS handshake failed" if isinstance(exc, ssl.SSLError) else "no connection"
            raise AgentUnavailable(
                f"cannot check the certificate pin of the agent at {self.address}: {what}: "
                f"{exc or 'timed out'}",
                device=self.device, status="UNAVAILABLE",
            ) from exc  # fmt: skip
        presented = certs.fingerprint(pem)
        if presented != tls.pin:
            raise AgentUnavailable(
                f"the agent at {self.address} presents a certificate with {presented}, but the "
                f"inventory pins {tls.pin}: refusing to talk to it (if the board's certificate "
                "was renewed on purpose, update its tls_pin)",
                device=self.device, status="UNAVAILABLE",
            )  # fmt: skip
        if tls.ca is not None:
            self._open(self._read(tls.ca, "ca"))
            return
        if not certs.is_self_signed(pem):
            raise AgentUnavailable(
                f"the pinned certificate of the agent at {self.address} was issued by a CA: "
                "gRPC cannot trust it alone; give the device's `ca` too",
                device=self.device, status="UNAVAILABLE",
            )  # fmt: skip
        # The pin already proved who it is: the name to check is one the certificate carries.
        names = certs.names_in(pem)
        self._open(pem, names[0] if names else None)

    async def __aenter__(self: C) -> C:
        if self._channel is None and self.tls is not None:
            await self._check_pin(self.tls)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel."""
        if self._channel is not None:
            await self._channel.close()

    async def _call(
        self,
        what: str,
        attempt: Callable[[float], Awaitable[T]],
        deadline: float | None = None,
        *,
        idempotent: bool = True,
    ) -> T:
        """Run `attempt(timeout)` until it succeeds, fails for good, or the deadline passes.

        `deadline` overrides `config.deadline` for calls that do real work (activation loads a
        model, inference runs it).
        """
        cfg = self.config
        budget = deadline if deadline is not None else cfg.deadline
        end = time.monotonic() + budget
        delay = cfg.backoff_initial
        tries = 0
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise AgentTimeout(
                    f"{what}: no answer from {self.address} within {budget:g} s",
                    device=self.device,
                    status="DEADLINE_EXCEEDED",
                )
            try:
                return await attempt(remaining)
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                # A call that changes state differently when repeated (a rollback steps back
                # once more) is not retried: its first attempt may have been carried out.
                retry = code == grpc.StatusCode.UNAVAILABLE and tries < cfg.retries and idempotent
                retry = retry and not _tls_refusal(exc.details() or "")  # it will not heal
                wait = min(delay, cfg.backoff_max) * random.uniform(0.5, 1.0)
                if not retry or time.monotonic() + wait >= end:
                    raise self._translate(what, exc) from None
                tries += 1
                await asyncio.sleep(wait)
                delay *= 2

    def _translate(self, what: str, exc: grpc.aio.AioRpcError) -> AgentError:
        code = exc.code()
        details = exc.details() or code.name
        refusal = _tls_refusal(details) if code == grpc.StatusCode.UNAVAILABLE else ""
        if refusal:
            details = (
                f"{what}: refusing the agent at {self.address}: {refusal} (check the device's "
                f"ca, server_name and tls_pin in the inventory; gRPC said: {details})"
            )
        elif code == grpc.StatusCode.UNAVAILABLE:
            why = tunnel.explain(self.address)
            details = f"{what}: cannot reach the agent at {self.address}: {why or details}"
            if "Socket closed" in details:
                details += (
                    " (the agent may want TLS, or a client certificate: see the inventory's "
                    "ca, client_cert and client_key)"
                )
        elif code == grpc.StatusCode.DEADLINE_EXCEEDED and details == "Deadline Exceeded":
            # gRPC's own words for the client's deadline; an agent's time limit says more.
            details = f"{what}: no answer from {self.address} within {self.config.deadline:g} s"
        else:
            details = f"{what}: {details}"
        return error_for_status(code.name, details, device=self.device)


class _PinPending:
    """The stub of a pinned client until `async with` has checked the pin."""

    def __init__(self, address: str) -> None:
        self.address = address

    def __getattr__(self, name: str) -> Any:
        raise AgentUnavailable(
            f"the agent at {self.address} has a tls_pin: use `async with AgentClient(...)`, "
            "which checks the pin before the first call"
        )


def _is_loopback(address: str) -> bool:
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tls_refusal(details: str) -> str:
    """Why gRPC's TLS layer refused the agent's certificate, in words; "" when it did not."""
    if "Hostname Verification" in details or "No match found for server name" in details:
        return "its certificate does not carry the name dialled (set server_name to one it does)"
    if "CERTIFICATE_VERIFY_FAILED" in details:
        return "its certificate is not signed by the CA the inventory trusts"
    if "WRONG_VERSION_NUMBER" in details or "handshake failed" in details.lower():
        return "the TLS handshake failed (does the agent serve TLS, with --tls-cert?)"
    return ""
