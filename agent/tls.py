"""The agent's secrets, re-read on SIGHUP: its TLS certificate and key, client CA, and token.

`ServerTls` loads `--tls-cert`/`--tls-key` (and `--client-ca` for mutual TLS) and gives gRPC
dynamic credentials: gRPC asks `ServerTls` for a new configuration at every new connection's
handshake, so a certificate renewed on disk and reloaded (`reload()`, on SIGHUP) is served to new
connections without a restart; connections already open keep the one they started with.
`TokenHolder` holds the bearer token the auth interceptor compares against and re-reads its file
the same way. A reload that fails (a file missing, empty, or a key that does not fit its
certificate) keeps what was loaded before and says why: a botched rotation never locks the
operator out of a running agent.

Only grpc and the standard library are used (no `cryptography`): the agent stays small, and the
files are checked with Python's `ssl`, which parses them with the OpenSSL the board has.
"""

from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from edgeopt.proto import auth

__all__ = ["ServerTls", "TlsFiles", "TokenHolder", "reload_all"]

log = logging.getLogger("edgeopt.agent")


@dataclass(frozen=True)
class TlsFiles:
    """Where the agent's TLS material is."""

    cert: Path
    """The server certificate chain (PEM): the agent's certificate first, then intermediates."""
    key: Path
    """The certificate's private key (PEM)."""
    client_ca: Path | None = None
    """CA certificates (PEM) a client's certificate must chain to; None: no client certificate
    is asked for (server TLS only)."""


def _read(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{what} {path}: {exc.strerror or exc}") from exc
    if not data.strip():
        raise ValueError(f"{what} {path} is empty")
    return data


def _load(files: TlsFiles) -> grpc.ServerCertificateConfiguration:
    """Read and check the files; a configuration gRPC can serve.

    Raises:
        ValueError: a file is unreadable, not PEM, or the key does not belong to the certificate.
    """
    cert = _read(files.cert, "--tls-cert")
    key = _read(files.key, "--tls-key")
    # gRPC would only find out at the first handshake (and then refuse every connection): check
    # the pair now, with the OpenSSL Python links, so a bad file is refused at start or reload.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(files.cert), str(files.key))
    except ssl.SSLError as exc:
        raise ValueError(
            f"--tls-cert {files.cert} and --tls-key {files.key} are not a certificate and its "
            f"key (PEM): {exc.reason or exc}"
        ) from exc
    client_ca = None
    if files.client_ca is not None:
        client_ca = _read(files.client_ca, "--client-ca")
        try:
            context.load_verify_locations(cafile=str(files.client_ca))
        except ssl.SSLError as exc:
            raise ValueError(
                f"--client-ca {files.client_ca} holds no PEM certificate: {exc.reason or exc}"
            ) from exc
    return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=client_ca)


class ServerTls:
    """The agent's server certificate (and client CA), reloadable while serving."""

    def __init__(self, files: TlsFiles) -> None:
        """Load the files once.

        Raises:
            ValueError: a file is unreadable or wrong; the message names the option and file.
        """
        self.files = files
        self._initial = _load(files)
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self._lock = threading.Lock()

    @property
    def mutual(self) -> bool:
        """Whether clients must present a certificate the client CA signed."""
        return self.files.client_ca is not None

    def credentials(self) -> grpc.ServerCredentials:
        """Server credentials that pick up every successful `reload()` at the next handshake."""
        # grpc's stubs want a configuration back, but its documentation (and code) take None
        # as "keep the current one", which is what most handshakes need.
        fetch: Any = self._fetch
        return grpc.dynamic_ssl_server_credentials(
            self._initial, fetch, require_client_authentication=self.mutual
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        # gRPC calls this before each new connection's handshake: None keeps the configuration
        # in use, a new one replaces it (for this connection and those after it).
        with self._lock:
            pending, self._pending = self._pending, None
        return pending

    def reload(self) -> None:
        """Read the files again; new connections get them. On failure the old ones stay.

        Raises:
            ValueError: a file is unreadable or wrong (nothing changed).
        """
        config = _load(self.files)
        with self._lock:
            self._pending = config


class TokenHolder:
    """The bearer token the agent expects, re-readable from its file for rotation."""

    def __init__(self, token: str, path: Path | None = None) -> None:
        """Hold `token`; `path`, when given, is the file `reload()` reads it from again."""
        self._token = token.encode()
        self.path = path

    @property
    def expected(self) -> bytes:
        """The current token, as bytes (compared in constant time by the interceptor)."""
        return self._token

    def reload(self) -> None:
        """Read the token file again. On failure the old token stays.

        Raises:
            ValueError: the file is empty; OSError: it cannot be read (nothing changed).
        """
        if self.path is None:
            return
        # One reference assignment: calls being checked on other threads see old or new.
        self._token = auth.read_token_file(str(self.path)).encode()


def reload_all(token: TokenHolder | None, tls: ServerTls | None) -> list[str]:
    """Reload what the agent holds (on SIGHUP); returns what was reloaded, logs what was not.

    A part that fails keeps its previous value; the others are reloaded regardless.
    """
    done = []
    if token is not None and token.path is not None:
        try:
            token.reload()
            done.append("token")
        except (OSError, ValueError) as exc:
            log.error("reload: keeping the previous token: --token-file %s: %s", token.path, exc)
    if tls is not None:
        try:
            tls.reload()
            done.append("certificate")
        except ValueError as exc:
            log.error("reload: keeping the previous certificate: %s", exc)
    return done
