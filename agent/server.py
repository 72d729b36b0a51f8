"""The agent's gRPC server: the `edgeopt.v1.Agent` service, health, reflection and token auth.

`serve(config)` blocks until SIGTERM or SIGINT, then reports NOT_SERVING on the health service,
lets running calls finish (up to `grace` seconds) and returns. The bound address is printed as
`edgeopt-agent listening on HOST:PORT` and, when asked, written atomically to a ready file once
the health service says SERVING, so a supervisor or test can wait for the file instead of polling.

The service itself (one method per RPC) is service.py's; the interceptors that stand before it
(token auth, request parsing) are interceptors.py's. This module builds the server from them,
with its limits (message sizes, calls in flight, flow-control windows), and runs it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import ipaddress
import logging
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from edgeopt.agent.hooks import ActivationHook
from edgeopt.agent.interceptors import SERVICE_NAME, DecodeGuard, TokenAuthInterceptor
from edgeopt.agent.metrics import serve_metrics
from edgeopt.agent.models import Bounds
from edgeopt.agent.pull import PullConfig, Puller
from edgeopt.agent.service import AgentService
from edgeopt.agent.store import Limits
from edgeopt.agent.tls import ServerTls, TlsFiles, TokenHolder, reload_all
from edgeopt.boardfacts.capabilities import Sources, agent_version, collect
from edgeopt.proto.capabilities import to_dict
from edgeopt.proto.v1 import agent_pb2_grpc

__all__ = [
    "ConfigurationRefused",
    "LocalSocket",
    "ServerConfig",
    "build_local_server",
    "build_server",
    "check_exposure",
    "is_loopback",
    "load_secrets",
    "parse_listen",
    "serve",
    "tame_malloc",
]

log = logging.getLogger("edgeopt.agent")


@dataclass(frozen=True)
class ServerConfig:
    """How to run the agent's server."""

    host: str
    """Address to listen on ("127.0.0.1", "0.0.0.0", "::")."""
    port: int
    """Port to listen on; 0 picks a free one."""
    store: Path
    """Directory of the model store (created if missing)."""
    token: str | None = None
    """Bearer token every Agent call must carry; None disables auth (loopback or --insecure)."""
    ready_file: Path | None = None
    """Where to write "HOST:PORT" once serving."""
    grace: float = 3.0
    """Seconds running calls get to finish on shutdown; then the runners are killed."""
    max_workers: int = 32
    """Threads serving calls concurrently (as many as calls admitted: none waits for a thread,
    so ListModels and Health answer while other calls wait on the runner)."""
    limits: Limits = field(default_factory=Limits)
    """Store quota and per-artifact limit."""
    bounds: Bounds = field(default_factory=Bounds)
    """Time limits and sizes of one request (messages, inference tensors, benchmarks)."""
    max_concurrent_rpcs: int = 32
    """Calls in progress at once, queued ones included; more get RESOURCE_EXHAUSTED at once."""
    token_file: Path | None = None
    """The file `token` came from, read again on SIGHUP (token rotation)."""
    tls: TlsFiles | None = None
    """Certificate and key to serve TLS with (and a client CA for mutual TLS); None: plaintext."""
    listening: bool = True
    """Serve gRPC on host:port; False in pull mode without --listen (the board opens no port)."""
    pull: PullConfig | None = None
    """Poll a registry for this device's desired state (pull mode); None: push only."""
    on_activate: str | None = None
    """A shell command run after every switch (hooks.py); None: none."""
    on_activate_timeout: float = 30.0
    """Seconds the hook may run before it is killed."""
    local_socket: LocalSocket | None = None
    """Serve the Agent service on a Unix socket too, guarded by its file mode (no token)."""
    metrics: tuple[str, int] | None = None
    """Serve Prometheus metrics on (host, port) (metrics.py); None: off."""
    sysfs: Path | None = None
    """Read the board's temperatures and throttle flags from this /sys (a captured one)."""


@dataclass(frozen=True)
class LocalSocket:
    """`--local-socket PATH [--local-socket-group G] [--local-socket-mode 660]`."""

    path: Path
    group: int | None = None
    """The gid that may connect (with mode 0660); None: the agent's own group."""
    mode: int = 0o660


class ConfigurationRefused(ValueError):
    """The server refuses to start as configured (the message says why and what to do)."""


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_listen(value: str) -> tuple[str, int]:
    """Split "HOST:PORT" ("[::1]:50051" for IPv6) into host and port.

    Raises:
        ValueError: not of that form, or the port is outside 0..65535.
    """
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--listen wants HOST:PORT (port 0 picks a free one), got {value!r}")
    return host.strip("[]"), int(port)


def check_exposure(
    host: str, token: str | None, insecure: bool, tls: TlsFiles | None = None
) -> None:
    """Refuse to serve beyond loopback without authentication or without TLS, unless insecure.

    A client certificate (mutual TLS) authenticates as a token does. Without TLS, a token
    crosses the network in cleartext and anyone on the path can read it and the models.

    Raises:
        ConfigurationRefused: `host` is not loopback, not `insecure`, and either no token nor
            client CA, or no TLS.
    """
    if insecure or is_loopback(host):
        return
    if token is None and (tls is None or tls.client_ca is None):
        raise ConfigurationRefused(
            f"refusing to listen on {host} without authentication: anyone who can reach this "
            "board could push and run models. Give --token-file FILE (or --client-ca FILE), "
            "listen on 127.0.0.1, or pass --insecure if the network is trusted."
        )
    if tls is None:
        raise ConfigurationRefused(
            f"refusing to listen on {host} without TLS: the token and the models would cross "
            "the network in cleartext. Give --tls-cert FILE --tls-key FILE (`edgeopt tls "
            "issue` makes them), listen on 127.0.0.1 (reach it over SSH), or pass --insecure "
            "if the network is trusted."
        )


def _reloaded(token: TokenHolder | None, tls: ServerTls | None) -> None:
    # Runs in the main thread between two of its 0.2 s waits: reading two small files there is
    # quick, and a reload racing another cannot happen.
    done = reload_all(token, tls)
    print(f"edgeopt-agent reloaded: {', '.join(done) or 'nothing'}", file=sys.stderr, flush=True)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _grpc_server(config: ServerConfig, interceptors: list[grpc.ServerInterceptor]) -> grpc.Server:
    """A gRPC server with the agent's limits (messages, windows, calls in progress)."""
    limit = config.bounds.max_message_bytes
    return grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.max_workers, thread_name_prefix="rpc"),
        interceptors=interceptors,
        options=[
            ("grpc.so_reuseport", 0),
            # gRPC's flow control window otherwise grows per stream with its BDP probe, and
            # 64 callers with 5 MiB bodies (wrong tokens, or over the limit) took the agent
            # from 43 to 157 MiB, kept afterwards; a fixed 1 MiB window per stream keeps that
            # at +5 MiB and still allows ~20 MB/s per stream at 50 ms of round trip.
            ("grpc.http2.bdp_probe", 0),
            ("grpc.http2.lookahead_bytes", 1 << 20),
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ],
        # Beyond this many calls in progress gRPC answers RESOURCE_EXHAUSTED at once.
        maximum_concurrent_rpcs=config.max_concurrent_rpcs,
    )


def build_local_server(config: ServerConfig, service: AgentService) -> grpc.Server:
    """The same Agent service on a Unix domain socket, without a token (started by the caller).

    Who may connect is the socket file's mode and group: it is created under a umask that
    leaves it reachable by nobody but root, then given `local_socket_mode` and its group, so
    no one outside the group can connect even for a moment. A stale socket from an earlier run
    is replaced; any other file at the path is refused.

    Raises:
        OSError: the path holds something else, or the socket cannot be bound or given its
            group.
    """
    local = config.local_socket
    assert local is not None
    path = local.path
    if path.is_symlink() or (path.exists() and not stat.S_ISSOCK(path.lstat().st_mode)):
        raise OSError(f"--local-socket {path}: something else is there; not replaced")
    path.unlink(missing_ok=True)
    server = _grpc_server(config, [DecodeGuard()])
    agent_pb2_grpc.add_AgentServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    old = os.umask(0o177)
    try:
        server.add_insecure_port(f"unix:{path}")
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {path}: {exc}") from exc
    finally:
        os.umask(old)
    if local.group is not None:
        os.chown(path, -1, local.group)
    os.chmod(path, local.mode)
    return server


def build_server(
    config: ServerConfig,
    secrets: tuple[TokenHolder | None, ServerTls | None] | None = None,
) -> tuple[grpc.Server, int, health.HealthServicer, AgentService]:
    """Create (not start) the server with every service, and bind it.

    Args:
        config: how to serve.
        secrets: the token holder and TLS material to serve with (what SIGHUP reloads);
            None: made from `config`.

    Returns:
        The server, the bound port, its health servicer (still NOT_SERVING), and the service.

    Raises:
        OSError: the address cannot be bound.
        ValueError: the TLS files are unreadable or wrong.
    """
    token, tls = secrets if secrets is not None else load_secrets(config)
    # Auth first: a refused call never reaches the parsing (nor its body the agent's memory).
    interceptors: list[grpc.ServerInterceptor] = [TokenAuthInterceptor(token)] if token else []
    interceptors.append(DecodeGuard())
    server = _grpc_server(config, interceptors)
    service = AgentService(config.store, config.limits, config.bounds, _hook(config))
    # The generated gRPC module has no annotations (grpcio-tools writes none for it).
    agent_pb2_grpc.add_AgentServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = (
        f"[{config.host}]:{config.port}" if ":" in config.host else f"{config.host}:{config.port}"
    )
    try:
        if tls is not None:
            port = server.add_secure_port(address, tls.credentials())
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpcio raises RuntimeError when it cannot bind
        raise OSError(f"cannot listen on {address}: {exc}") from exc
    # Measure ONNX Runtime in the background so the first GetCapabilities is fast.
    threading.Thread(target=service.runtime, name="ort-probe", daemon=True).start()
    return server, port, health_servicer, service


def tame_malloc() -> None:
    """Make glibc give large freed buffers back to the board at once.

    glibc raises its mmap threshold each time a large block is freed, so after a few
    inferences their tensors come from the heap, whose freed pages stay with the process: the
    agent grew from 49 MB to 148 MB over 16 calls of 15 MB and stayed there. A fixed threshold
    (1 MiB) keeps every tensor buffer in its own mapping, unmapped when freed; two arenas
    stop gRPC's threads from each keeping one. Nothing happens on a C library without mallopt.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is None or not hasattr(libc, "mallopt"):
            return
    except OSError:
        return
    m_mmap_threshold, m_arena_max = -3, -8
    libc.mallopt(m_mmap_threshold, 1 << 20)
    libc.mallopt(m_arena_max, 2)


def load_secrets(config: ServerConfig) -> tuple[TokenHolder | None, ServerTls | None]:
    """The token holder and TLS material `config` names, ready to be reloaded on SIGHUP.

    Raises:
        ValueError: the TLS files are unreadable or wrong.
    """
    token = TokenHolder(config.token, config.token_file) if config.token else None
    return token, ServerTls(config.tls) if config.tls is not None else None


def _start_metrics(config: ServerConfig, service: AgentService) -> None:
    if config.sysfs is not None:
        service.sources = Sources(sysfs=config.sysfs)
    if config.metrics is None:
        return
    _, bound = serve_metrics(config.metrics, service.models, service.counts, service.sources)
    host = config.metrics[0]
    shown = f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"
    print(f"edgeopt-agent metrics on http://{shown}/metrics", flush=True)


def _start_local(config: ServerConfig, service: AgentService) -> grpc.Server | None:
    if config.local_socket is None:
        return None
    local = build_local_server(config, service)
    local.start()
    print(f"edgeopt-agent listening on unix:{config.local_socket.path}", flush=True)
    return local


def _stop_local(config: ServerConfig, local: grpc.Server | None) -> None:
    if local is None or config.local_socket is None:
        return
    local.stop(config.grace).wait(config.grace)
    config.local_socket.path.unlink(missing_ok=True)


def _hook(config: ServerConfig) -> ActivationHook | None:
    if config.on_activate is None:
        return None
    return ActivationHook(config.on_activate, config.on_activate_timeout)


def _capabilities_every(service: AgentService, seconds: float) -> Callable[[], dict[str, Any]]:
    """The board's capabilities as a dict, read again at most every `seconds`."""
    cache: list[Any] = [0.0, {}]

    def read() -> dict[str, Any]:
        if not cache[1] or time.monotonic() - cache[0] > seconds:
            caps = collect(Sources.live_system(), service.models.store.root, service.runtime())
            cache[:] = [time.monotonic(), to_dict(caps)]
        return cache[1]  # type: ignore[no-any-return]

    return read


def _start_pull(pull: PullConfig, service: AgentService, stop: threading.Event) -> threading.Thread:
    """The pull loop in a thread of its own (it stops with the agent)."""
    puller = Puller(service.models, pull, _capabilities_every(service, pull.heartbeat),
                    agent_version())  # fmt: skip
    print(f"edgeopt-agent pulling {pull.registry} as {pull.device}", flush=True)
    thread = threading.Thread(target=puller.run, args=(stop,), name="pull", daemon=True)
    thread.start()
    return thread


def serve(config: ServerConfig, stop: threading.Event | None = None) -> None:
    """Run the agent until SIGTERM/SIGINT (or `stop` is set), then shut down cleanly.

    Shutdown takes at most `grace` seconds and a little: calls get that long to finish, the
    runners are killed at its end (a runaway inference cannot be waited for), and the calls
    still waiting on them fail at once. SIGHUP re-reads the token file and the TLS files
    (rotation without a restart).
    """
    config.store.mkdir(parents=True, exist_ok=True, mode=0o700)
    tame_malloc()
    token, tls = load_secrets(config)
    if config.listening:
        server, port, health_servicer, service = build_server(config, (token, tls))
    else:
        service = AgentService(config.store, config.limits, config.bounds, _hook(config))
        threading.Thread(target=service.runtime, name="ort-probe", daemon=True).start()
    for removed in service.models.store.recover():
        log.warning("store recovery removed %s", removed)
    service.models.store.sync_active()
    # The active models load again in the background: the agent serves at once, and a call
    # that needs a model before it is back loads it on demand.
    threading.Thread(target=service.models.restore, name="restore", daemon=True).start()
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        signal.signal(signal.SIGHUP, lambda *_: _reloaded(token, tls))
    shown = "pull"
    if config.listening:
        server.start()
        for name in ("", SERVICE_NAME):
            health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        shown = f"[{config.host}]:{port}" if ":" in config.host else f"{config.host}:{port}"
        print(f"edgeopt-agent listening on {shown}", flush=True)
    local = _start_local(config, service)
    _start_metrics(config, service)
    pulling = _start_pull(config.pull, service, stop) if config.pull is not None else None
    if config.ready_file is not None:
        _write_atomically(config.ready_file, f"{shown}\n")
    # Wait in short slices: SIGTERM may be delivered to one of grpc's threads, and Python runs
    # the handler only when the main thread next executes bytecode; an unbounded wait could
    # then sleep through it (seen here: 1 shutdown in ~30 hung under CPU load).
    while not stop.wait(0.2):
        pass
    log.info("shutting down")
    stopped = threading.Event()
    if config.listening:
        health_servicer.enter_graceful_shutdown()
        stopped = server.stop(config.grace)
    else:
        stopped.set()
    _stop_local(config, local)
    _shut_down(config, service, stopped, pulling)


def _shut_down(
    config: ServerConfig,
    service: AgentService,
    stopped: threading.Event,
    pulling: threading.Thread | None,
) -> None:
    """Let the calls (and the pull loop) end within the grace, then stop the runners."""
    if pulling is not None:
        pulling.join(config.grace)
    deadline = time.monotonic() + config.grace
    while not stopped.wait(0.1):
        if time.monotonic() >= deadline:
            service.models.kill()  # a call stuck in the runner now fails, and its thread ends
            stopped.wait(2.0)
            break
    service.models.close()
    print("edgeopt-agent stopped", file=sys.stderr, flush=True)
