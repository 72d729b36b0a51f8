"""`edgeopt-agent`: the on-device agent's command line (argparse: the board has no click).

    edgeopt-agent serve --listen 127.0.0.1:50051 --store DIR [--token-file F] [--ready-file F]
                        [--max-store-bytes N] [--upload-expiry 24h]
                        [--tls-cert F --tls-key F [--client-ca F]] [--insecure]
    edgeopt-agent serve --pull oci://HOST:PORT/REPO --device-name NAME [--pull-interval 30s]
                        [--registry-credentials F] [--registry-ca F] [--listen ...]
    edgeopt-agent capabilities [--json] [--procfs DIR] [--sysfs DIR] [--rootfs DIR]
    edgeopt-agent path NAME [--store DIR] [--plan] [--resolve]

Beyond loopback the agent wants authentication (a token, or client certificates) and TLS, unless
`--insecure`. SIGHUP re-reads the token file and the TLS files (rotation without a restart).

Exit status: 0 on success, 2 for a usage or configuration error (the message says which option
and what to do), 1 when the server fails at run time.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edgeopt.agent.models import Bounds
from edgeopt.agent.store import UPLOAD_EXPIRY_SECONDS, Limits
from edgeopt.boardfacts.capabilities import Sources, agent_version, collect
from edgeopt.proto import auth
from edgeopt.proto.capabilities import format_summary, to_dict

__all__ = ["default_store", "main"]

if TYPE_CHECKING:  # grpc is imported only when serving
    from edgeopt.agent.pull import PullConfig
    from edgeopt.agent.server import LocalSocket
    from edgeopt.agent.tls import TlsFiles


def default_store() -> Path:
    """$XDG_DATA_HOME/edgeopt-agent, i.e. ~/.local/share/edgeopt-agent by default."""
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "edgeopt-agent"


def _size(text: str) -> int:
    """Bytes from "1048576", "500M", "2G" (binary units)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = text.strip().upper()
    for suffix in ("B", "I"):  # str.removesuffix is Python 3.9+; the agent runs on 3.8
        if text.endswith(suffix):
            text = text[: -len(suffix)]
    factor = units.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in units else text
    try:
        value = int(float(number) * factor)
    except ValueError:
        raise argparse.ArgumentTypeError(f"want a size like 500M or 2G, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"a size must be positive, got {text!r}")
    return value


def _duration(text: str) -> float:
    """Seconds from "3600", "90s", "30m", "24h", "7d"."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    factor = units.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in units else text
    try:
        value = float(number) * factor
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"want a duration like 30m, 24h or 7d, got {text!r}"
        ) from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"a duration must be positive and finite, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeopt-agent", description="The edgeopt on-device agent."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {agent_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the edgeopt.v1.Agent gRPC service")
    serve.add_argument(
        "--listen",
        default=None,
        help="HOST:PORT to listen on; port 0 picks a free one (default: 127.0.0.1:50051, and "
        "none with --pull)",
    )
    serve.add_argument(
        "--pull",
        metavar="oci://HOST:PORT/REPO",
        help="pull mode: poll this OCI registry repository for the device's desired state, "
        "pull and activate what it names, push status back (oci+http:// without TLS)",
    )
    serve.add_argument("--device-name", help="this board's name in the registry (with --pull)")
    serve.add_argument(
        "--pull-interval",
        type=_duration,
        default=30.0,
        help="seconds between polls, ± 20 %% jitter (default: 30s)",
    )
    serve.add_argument(
        "--registry-credentials",
        type=Path,
        metavar="FILE",
        help='registry login: a docker config.json or {"username", "password"} JSON',
    )
    serve.add_argument(
        "--registry-ca",
        type=Path,
        metavar="FILE",
        help="CA (PEM) the registry's TLS is checked with",
    )
    serve.add_argument("--store", type=Path, default=None, help="model store directory")
    serve.add_argument("--token-file", type=Path, help="file whose first line is the bearer token")
    serve.add_argument("--ready-file", type=Path, help="write HOST:PORT here once serving")
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="allow listening beyond loopback without a token or without TLS "
        "(trusted networks only)",
    )
    serve.add_argument(
        "--tls-cert", type=Path, metavar="FILE", help="serve TLS with this certificate (PEM)"
    )
    serve.add_argument("--tls-key", type=Path, metavar="FILE", help="the certificate's key (PEM)")
    serve.add_argument(
        "--client-ca",
        type=Path,
        metavar="FILE",
        help="mutual TLS: clients must present a certificate this CA (PEM) signed",
    )
    serve.add_argument("--grace", type=float, default=3.0, help="shutdown grace in seconds")
    serve.add_argument(
        "--max-store-bytes",
        type=_size,
        help="quota on the model store (artifacts and partial uploads), e.g. 2G, 500M",
    )
    serve.add_argument(
        "--max-artifact-bytes",
        type=_size,
        default=4 << 30,
        help="largest single artifact (default: 4G)",
    )
    serve.add_argument(
        "--upload-expiry",
        type=_duration,
        default=UPLOAD_EXPIRY_SECONDS,
        help="drop an interrupted upload untouched this long, e.g. 30m, 24h, 7d (default: 24h)",
    )
    serve.add_argument(
        "--request-timeout",
        type=_duration,
        default=Bounds.request_timeout,
        help="longest one call into ONNX Runtime may run (load, smoke test, inference); the "
        "runner is killed and restarted past it (default: 120s)",
    )
    serve.add_argument(
        "--max-benchmark-seconds",
        type=_duration,
        default=Bounds.max_benchmark_seconds,
        help="longest timed phase a Benchmark may ask for (default: 600s)",
    )
    serve.add_argument(
        "--max-infer-bytes",
        type=_size,
        default=Bounds.max_infer_bytes,
        help="largest sum of tensor bytes one inference takes in or gives out; the host splits "
        "larger batches (default: 64M)",
    )
    serve.add_argument(
        "--max-concurrent-rpcs",
        type=int,
        default=32,
        help="calls in progress at once; more are refused with RESOURCE_EXHAUSTED (default: 32)",
    )
    serve.add_argument(
        "--local-socket",
        type=Path,
        metavar="PATH",
        help="also serve on this Unix socket, for the board's own applications: no token, "
        "its file mode and group decide who may connect",
    )
    serve.add_argument(
        "--local-socket-group",
        metavar="GROUP",
        help="the group whose members may use --local-socket (default: the agent's own)",
    )
    serve.add_argument(
        "--local-socket-mode",
        default="660",
        help="the socket's file mode, in octal (default: 660: owner and group)",
    )
    serve.add_argument(
        "--metrics",
        metavar="ADDRESS",
        help="serve Prometheus metrics at http://ADDRESS/metrics: PORT (on loopback) or "
        "HOST:PORT (off by default)",
    )
    serve.add_argument(
        "--sysfs",
        type=Path,
        metavar="DIR",
        help="read temperatures and throttle flags from this /sys (node_exporter's --path.sysfs)",
    )
    serve.add_argument(
        "--on-activate",
        metavar="CMD",
        help="shell command run after every switch of a model, with EDGEOPT_MODEL_NAME, "
        "_VERSION, _PATH, _PLAN, _LINK, _SHA256 and EDGEOPT_PREVIOUS_VERSION set; a failure is "
        "logged and shown by `models`, never undoes the switch",
    )
    serve.add_argument(
        "--on-activate-timeout",
        type=_duration,
        default=30.0,
        help="the hook's time limit (default: 30s)",
    )
    serve.add_argument("--log-level", default="WARNING", help="logging level (default: WARNING)")

    caps = sub.add_parser("capabilities", help="print what this board (or a captured tree) is")
    caps.add_argument("--json", action="store_true", help="machine-readable output")
    caps.add_argument("--procfs", type=Path, help="read /proc from this directory")
    caps.add_argument("--sysfs", type=Path, help="read /sys from this directory")
    caps.add_argument("--rootfs", type=Path, help="a captured root holding proc/ sys/ etc/ dev/")
    caps.add_argument("--store", type=Path, default=None, help="report free space here")
    caps.add_argument(
        "--no-runtime", action="store_true", help="skip measuring ONNX Runtime (faster)"
    )
    path = sub.add_parser(
        "path", help="print where the board's applications find NAME's active model"
    )
    path.add_argument("name", help="the model's name")
    path.add_argument("--store", type=Path, default=None, help="model store directory")
    path.add_argument("--plan", action="store_true", help="print the plan.json beside it")
    path.add_argument(
        "--resolve",
        action="store_true",
        help="print the active version's own folder (stable while it stays active or is the "
        "one before): read the model and its plan from there to get one version's pair",
    )
    cap = sub.add_parser(
        "capture", help="copy the /proc, /sys and /etc files the probes read into DIR"
    )
    cap.add_argument("dest", type=Path, help="directory to create (must not exist)")
    return parser


def _capture(args: argparse.Namespace) -> int:
    from edgeopt.boardfacts.capabilities import capture  # noqa: PLC0415

    if args.dest.exists():
        print(f"edgeopt-agent: {args.dest} already exists", file=sys.stderr)
        return 2
    written = capture(Sources.live_system(), args.dest)
    print(
        f"captured {len(written)} files into {args.dest}; read it back with "
        f"`edgeopt-agent capabilities --rootfs {args.dest}`"
    )
    return 0


def _capabilities(args: argparse.Namespace) -> int:
    from edgeopt.boardfacts.runtime import probe_in_process  # noqa: PLC0415

    captured = any(x is not None for x in (args.procfs, args.sysfs, args.rootfs))
    sources = (
        Sources.captured(procfs=args.procfs, sysfs=args.sysfs, rootfs=args.rootfs)
        if captured
        else Sources.live_system()
    )
    for name in ("procfs", "sysfs", "rootfs"):
        value = getattr(args, name)
        if value is not None and not value.is_dir():
            print(f"edgeopt-agent: --{name} {value}: not a directory", file=sys.stderr)
            return 2
    runtime = None if captured or args.no_runtime else probe_in_process()
    caps = collect(sources, args.store or default_store(), runtime)
    text = json.dumps(to_dict(caps), indent=2) if args.json else format_summary(caps)
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # `capabilities | head`: the reader left; say nothing more (Python docs' recipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _serve(args: argparse.Namespace) -> int:
    # Before grpc is imported: the agent forks only to exec its runner, and gRPC's fork
    # handlers, run in that child on Pythons that fork() rather than vfork() (3.8, 3.9: the
    # boards'), aborted it now and then ("epoll_wait error: Bad file descriptor", SIGABRT:
    # 7 in 30 runner starts under load on 3.9; 0 in 30 with this).
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
    from edgeopt.agent.metrics import parse_address  # noqa: PLC0415
    from edgeopt.agent.server import (  # noqa: PLC0415  (grpc only when serving)
        ServerConfig,
        check_exposure,
        parse_listen,
        serve,
    )
    from edgeopt.agent.tls import ServerTls  # noqa: PLC0415

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    try:
        pull = _pull_config(args)
        local = _local_socket(args)
        metrics = parse_address(args.metrics) if args.metrics is not None else None
        host, port = parse_listen(args.listen or "127.0.0.1:50051")
        token = auth.read_token_file(str(args.token_file)) if args.token_file else None
        tls = _tls_files(args)
        check_exposure(host, token, args.insecure, tls)
        if tls is not None:
            ServerTls(tls)  # read and check the files now: a bad one is a usage error
    except (ValueError, OSError) as exc:
        reason = exc if not isinstance(exc, OSError) else f"--token-file: {exc}"
        print(f"edgeopt-agent: {reason}", file=sys.stderr)
        return 2
    if args.token_file and args.token_file.stat().st_mode & 0o077:
        print(
            f"edgeopt-agent: warning: {args.token_file} is readable by other users; chmod 600 it",
            file=sys.stderr,
        )
    config = ServerConfig(
        host=host,
        port=port,
        store=args.store or default_store(),
        token=token,
        ready_file=args.ready_file,
        grace=args.grace,
        limits=Limits(args.max_store_bytes, args.max_artifact_bytes, args.upload_expiry),
        bounds=Bounds(
            request_timeout=args.request_timeout,
            max_benchmark_seconds=args.max_benchmark_seconds,
            max_infer_bytes=args.max_infer_bytes,
        ),
        max_concurrent_rpcs=max(1, args.max_concurrent_rpcs),
        max_workers=max(1, args.max_concurrent_rpcs),
        token_file=args.token_file,
        tls=tls,
        listening=pull is None or args.listen is not None,
        pull=pull,
        on_activate=args.on_activate,
        on_activate_timeout=args.on_activate_timeout,
        local_socket=local,
        metrics=metrics,
        sysfs=args.sysfs,
    )
    try:
        serve(config)
    except OSError as exc:
        print(f"edgeopt-agent: {exc}", file=sys.stderr)
        return 1
    return 0


def _local_socket(args: argparse.Namespace) -> LocalSocket | None:
    """The --local-socket options, checked; None without it.

    Raises:
        ValueError: an unknown group, a mode that is not octal or lets others in.
    """
    import grp  # noqa: PLC0415

    from edgeopt.agent.server import LocalSocket  # noqa: PLC0415

    if args.local_socket is None:
        if args.local_socket_group is not None:
            raise ValueError("--local-socket-group goes with --local-socket PATH")
        return None
    try:
        mode = int(args.local_socket_mode, 8)
    except ValueError:
        raise ValueError(f"--local-socket-mode wants octal, like 660; got "
                         f"{args.local_socket_mode!r}") from None  # fmt: skip
    if mode & ~0o770 or not mode & 0o600 == 0o600:
        raise ValueError(
            f"--local-socket-mode {args.local_socket_mode}: give the owner rw and no one but the "
            "group more (660 or 600): others would reach the agent without a token"
        )
    group = None
    if args.local_socket_group is not None:
        name = args.local_socket_group
        try:
            group = int(name) if name.isdigit() else grp.getgrnam(name).gr_gid
        except KeyError:
            raise ValueError(f"--local-socket-group: no group {name!r} on this board") from None
    if not args.local_socket.parent.is_dir():
        raise ValueError(f"--local-socket {args.local_socket}: its folder does not exist")
    return LocalSocket(args.local_socket, group, mode)


def _pull_config(args: argparse.Namespace) -> PullConfig | None:
    """The pull options, checked; None without --pull.

    Raises:
        ValueError: a malformed registry, a missing device name, unreadable credentials.
    """
    from edgeopt.agent.pull import PullConfig  # noqa: PLC0415
    from edgeopt.proto.fleetstate import check_device  # noqa: PLC0415
    from edgeopt.proto.oci import Credentials, RegistryRef  # noqa: PLC0415

    if args.pull is None:
        for name in ("device_name", "registry_credentials", "registry_ca"):
            if getattr(args, name) is not None:
                raise ValueError(f"--{name.replace('_', '-')} goes with --pull oci://...")
        return None
    ref = RegistryRef.parse(args.pull)
    if not args.device_name:
        raise ValueError("--pull needs --device-name NAME: the tags desired-NAME and status-NAME")
    device = check_device(args.device_name)
    credentials = None
    if args.registry_credentials is not None:
        credentials = Credentials.from_file(args.registry_credentials, ref.registry)
        if credentials is None:
            raise ValueError(f"--registry-credentials has nothing for {ref.registry}")
    if args.registry_ca is not None and not args.registry_ca.is_file():
        raise ValueError(f"--registry-ca {args.registry_ca}: no such file")
    longest = max(900.0, args.pull_interval)
    return PullConfig(ref, device, interval=args.pull_interval, credentials=credentials,
                      ca_file=args.registry_ca, max_backoff=longest)  # fmt: skip


def _tls_files(args: argparse.Namespace) -> TlsFiles | None:
    """The TLS files the options name; None without --tls-cert.

    Raises:
        ValueError: --tls-cert without --tls-key (or the reverse), or --client-ca alone.
    """
    from edgeopt.agent.tls import TlsFiles  # noqa: PLC0415

    if (args.tls_cert is None) != (args.tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together: give both, or neither")
    if args.tls_cert is None:
        if args.client_ca is not None:
            raise ValueError("--client-ca needs TLS: give --tls-cert FILE --tls-key FILE too")
        return None
    return TlsFiles(args.tls_cert, args.tls_key, args.client_ca)


def _path(args: argparse.Namespace) -> int:
    from edgeopt.agent.active import model_path  # noqa: PLC0415
    from edgeopt.agent.manifest import NAME_PATTERN  # noqa: PLC0415

    if not NAME_PATTERN.fullmatch(args.name):
        print(f"edgeopt-agent: {args.name!r} is not a model name", file=sys.stderr)
        return 2
    store = args.store or default_store()
    stable = model_path(store, args.name)
    if not stable.parent.is_symlink():
        print(f"edgeopt-agent: {args.name} has no active version in {store}", file=sys.stderr)
        return 1
    found = Path(os.path.realpath(stable.parent)) / stable.name if args.resolve else stable
    print(found.with_name("plan.json") if args.plan else found)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "path":
        return _path(args)
    if args.command == "capture":
        return _capture(args)
    return _capabilities(args)
