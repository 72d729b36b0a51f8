"""SSH to boards with paramiko, the way OpenSSH would connect.

`connect("pi@raspberrypi.local")` reads ~/.ssh/config (Host aliases, HostName, User, Port,
IdentityFile, ProxyJump, UserKnownHostsFile), offers ssh-agent keys and the key files, and
checks the server's host key against known_hosts: an unknown host is refused unless
`accept_new_host_key` (which records its key, as OpenSSH's `accept-new` does); a changed key is
always refused, with both fingerprints shown. Timeouts bound connecting, the banner and
authentication; a keepalive notices a board that went away.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shlex
import socket
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from edgeopt.host.errors import SshError

__all__ = [
    "DEFAULT_TIMEOUT",
    "KEEPALIVE_S",
    "MAX_ANSWER_BYTES",
    "Connection",
    "Target",
    "connect",
    "fingerprint",
    "printable",
    "quote",
    "resolve",
]

DEFAULT_TIMEOUT = 15.0
KEEPALIVE_S = 15
MAX_ANSWER_BYTES = 4 << 20
"""Most a command's stdout (and, apart, its stderr) may hold unless the caller allows more: a
board that prints without end must not fill the host's memory."""


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint: "SHA256:base64-without-padding"."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class Target:
    """Where and as whom to log in, after ~/.ssh/config was applied."""

    alias: str
    """What the user typed (user@ stripped): a Host alias or a host name."""
    hostname: str
    user: str
    port: int = 22
    identity_files: tuple[str, ...] = ()
    proxy_jump: str | None = None
    known_hosts: tuple[str, ...] = ()
    """Files to check the host key against; the first is where a new key is recorded."""

    @property
    def key_name(self) -> str:
        """The host's name in known_hosts: "host", or "[host]:port" off port 22."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"

    def __str__(self) -> str:
        port = f":{self.port}" if self.port != 22 else ""
        return f"{self.user}@{self.hostname}{port}"


def _home() -> Path:
    return Path(os.path.expanduser("~"))


def resolve(spec: str, config_file: Path | None = None, port: int | None = None) -> Target:
    """`[user@]host[:port]` with ~/.ssh/config applied (the command line wins over the file)."""
    user, _, rest = spec.rpartition("@")
    host, _, port_text = rest.partition(":")
    if not host:
        raise SshError(f"{spec}: say which board, as [user@]host[:port]")
    path = config_file or _home() / ".ssh" / "config"
    config = paramiko.SSHConfig.from_path(str(path)) if path.is_file() else paramiko.SSHConfig()
    found = config.lookup(host)
    listed: str | list[str] = found.get("identityfile") or []
    files = [listed] if isinstance(listed, str) else list(listed)
    known = found.get("userknownhostsfile")
    known_files = (
        tuple(os.path.expanduser(k) for k in str(known).split())
        if known
        else (str(_home() / ".ssh" / "known_hosts"),)
    )
    try:
        number = int(port_text) if port_text else port or int(found.get("port", 22))
    except ValueError as exc:
        raise SshError(f"{spec}: the port must be a number") from exc
    return Target(
        alias=host,
        hostname=found.get("hostname", host),
        user=user or found.get("user") or _local_user(),
        port=number,
        identity_files=tuple(os.path.expanduser(f) for f in files),
        proxy_jump=found.get("proxyjump"),
        known_hosts=known_files,
    )


def _local_user() -> str:
    import getpass  # noqa: PLC0415

    return getpass.getuser()


class _Policy(paramiko.MissingHostKeyPolicy):
    """Unknown host: refuse, or record the key when the user said so."""

    def __init__(self, target: Target, accept_new: bool) -> None:
        self.target = target
        self.accept_new = accept_new

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        if not self.accept_new:
            raise SshError(
                f"{self.target}: unknown host key {key.get_name()} {fingerprint(key)} (not in "
                f"{self.target.known_hosts[0]}); check it, then connect again with "
                "--accept-new-host-key to record it"
            )
        where = Path(self.target.known_hosts[0])
        where.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with where.open("a") as out:
            out.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)


@dataclass
class Connection:
    """A logged-in SSH session to one board (and the jump hosts on the way)."""

    target: Target
    client: paramiko.SSHClient
    jumps: list[paramiko.SSHClient] = field(default_factory=list)

    def run(self, command: str, *, timeout: float = 120.0, stdin: bytes | None = None,
            check: bool = True, limit: int = MAX_ANSWER_BYTES) -> tuple[int, str, str]:  # fmt: skip
        """Run `command` in the board's shell; (exit status, stdout, stderr).

        Raises:
            SshError: the connection dropped, the command failed (with `check`), or it printed
                more than `limit` bytes on stdout or on stderr (the command is then cut off).
        """
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise SshError(f"{self.target}: the connection dropped (run it again: what was "
                           "done so far is kept)")  # fmt: skip
        try:
            chan_in, out, err = self.client.exec_command(command, timeout=timeout)
            if stdin is not None:
                chan_in.write(stdin)
            chan_in.channel.shutdown_write()
            # Read one byte past the limit: that is how a board that prints too much is told
            # from one that printed exactly the limit. Unread stderr holds at most the channel's
            # window (paramiko stops the board sending), so memory stays bounded meanwhile.
            raw = out.read(limit + 1)
            raw_err = err.read(limit + 1) if len(raw) <= limit else b""
            if len(raw) > limit or len(raw_err) > limit:
                out.channel.close()
                which = "stdout" if len(raw) > limit else "stderr"
                raise SshError(f"{self.target}: `{printable(command[:80])}` printed more than "
                               f"{limit} bytes on {which}: cut off (a board's answer is capped "
                               "so that it cannot fill this machine's memory)")  # fmt: skip
            text, errors = raw.decode(errors="replace"), raw_err.decode(errors="replace")
            status = out.channel.recv_exit_status()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SshError(f"{self.target}: the connection dropped running "
                           f"{shlex.split(command)[0] if command.strip() else command!r}: "
                           f"{exc or type(exc).__name__}") from exc  # fmt: skip
        if check and status != 0:
            tail = printable(errors.strip() or text.strip(), keep_newlines=True).splitlines()[-5:]
            raise SshError(f"{self.target}: `{printable(command[:80])}` exited with {status}: "
                           + " / ".join(tail))  # fmt: skip
        return status, text, errors

    @contextmanager
    def sftp(self) -> Iterator[paramiko.SFTPClient]:
        """An SFTP session on this connection."""
        try:
            client = self.client.open_sftp()
        except (paramiko.SSHException, OSError) as exc:
            raise SshError(f"{self.target}: no SFTP: {exc}") from exc
        try:
            yield client
        finally:
            client.close()

    def close(self) -> None:
        """Log out (the jump hosts too)."""
        self.client.close()
        for jump in reversed(self.jumps):
            jump.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def connect(
    spec: str | Target,
    *,
    accept_new_host_key: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    key_file: Path | None = None,
    config_file: Path | None = None,
) -> Connection:
    """Log in to a board; see the module docstring.

    Raises:
        SshError: unreachable, refused host key, no key accepted, or a jump host failed.
    """
    target = spec if isinstance(spec, Target) else resolve(spec, config_file)
    jumps: list[paramiko.SSHClient] = []
    sock = None
    try:
        if target.proxy_jump:
            for hop in target.proxy_jump.split(","):
                previous = jumps[-1] if jumps else None
                hop_target = resolve(hop.strip(), config_file)
                via = _channel(previous, hop_target) if previous else None
                jumps.append(_login(hop_target, via, accept_new_host_key, timeout, None))
            sock = _channel(jumps[-1], target)
        client = _login(target, sock, accept_new_host_key, timeout, key_file)
    except BaseException:
        for jump in jumps:
            jump.close()
        raise
    return Connection(target, client, jumps)


def _channel(through: paramiko.SSHClient, target: Target) -> paramiko.Channel:
    transport = through.get_transport()
    assert transport is not None
    try:
        return transport.open_channel("direct-tcpip", (target.hostname, target.port),
                                      ("127.0.0.1", 0))  # fmt: skip
    except paramiko.SSHException as exc:
        raise SshError(f"{target}: the jump host could not reach it: {exc}") from exc


def _login(
    target: Target,
    sock: paramiko.Channel | None,
    accept_new: bool,
    timeout: float,
    key_file: Path | None,
) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    for path in target.known_hosts:
        if Path(path).is_file():
            try:
                client.get_host_keys().load(path)
            except (OSError, paramiko.SSHException) as exc:
                raise SshError(f"{path}: unreadable known_hosts file: {exc}") from exc
    client.set_missing_host_key_policy(_Policy(target, accept_new))
    files = [str(key_file)] if key_file else list(target.identity_files)
    try:
        client.connect(
            target.hostname, port=target.port, username=target.user,
            key_filename=files or None,  # type: ignore[arg-type]  # a list is documented
            timeout=timeout, banner_timeout=timeout,
            auth_timeout=timeout, sock=sock,
            allow_agent=key_file is None and bool(os.environ.get("SSH_AUTH_SOCK")),
            look_for_keys=key_file is None and not files,
        )  # fmt: skip
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise SshError(
            f"{target}: the host key CHANGED: known_hosts has {exc.expected_key.get_name()} "
            f"{fingerprint(exc.expected_key)}, the server offers {exc.key.get_name()} "
            f"{fingerprint(exc.key)}. Refused: if the board was reinstalled, remove its old "
            f"entry from {target.known_hosts[0]}"
        ) from exc
    except SshError:
        client.close()
        raise
    except paramiko.AuthenticationException as exc:
        client.close()
        tried = ", ".join(files) if files else "ssh-agent and ~/.ssh/id_*"
        raise SshError(f"{target}: no key was accepted (tried {tried}): {exc}") from exc
    except paramiko.SSHException as exc:
        client.close()
        if "No authentication methods available" not in str(exc):
            raise SshError(f"{target}: cannot connect: {exc}") from exc
        raise SshError(f"{target}: no key to offer (no IdentityFile in ~/.ssh/config, no "
                       "ssh-agent, no ~/.ssh/id_* file)") from exc  # fmt: skip
    except (OSError, EOFError) as exc:
        client.close()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError) and exc.errors:
            first = next(iter(exc.errors.values()))
            reason = getattr(first, "strerror", None) or str(first)
        if isinstance(exc, socket.timeout):
            reason = f"no answer within {timeout:g} s"
        raise SshError(f"{target}: cannot connect: {reason or type(exc).__name__}") from exc
    transport = client.get_transport()
    if transport is not None:
        transport.set_keepalive(KEEPALIVE_S)
    return client


_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, erasing
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window title, hyperlinks, clipboard
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC strings
    r"|\x1b[ -/]*[0-~]"  # the other escapes (charset, reset, keypad)
    r"|\x9b[0-?]*[ -/]*[@-~]"  # the 8-bit CSI
)
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """Board-provided `text` made safe to show: no terminal escapes, no control characters.

    A board must not be able to rewrite the operator's terminal (move the cursor, change the
    title, hide text, reorder it with bidirectional overrides), so escape sequences go whole and
    every other control character is dropped; tabs become spaces, and newlines too unless
    `keep_newlines` (multi-line text such as a log's tail).
    """
    text = _ESCAPES.sub("", text)
    kept = []
    for char in text:
        if char == "\n" and keep_newlines:
            kept.append(char)
        elif char in "\t\n\r":
            kept.append(" ")
        elif unicodedata.category(char) != "Cc" and char not in _BIDI:
            kept.append(char)
    return "".join(kept)


def quote(text: str) -> str:
    """A word for the board's POSIX shell."""
    return shlex.quote(text)
