"""The agent's TLS on a board: the certificates the fleet CA issues it, written under its folder.

The board's certificate names 127.0.0.1: the host reaches a bootstrapped agent through an SSH
tunnel to a local port, and checks that name. For mutual TLS the host gets a client certificate
of its own, kept beside the inventory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeopt.host.transport import tls
from edgeopt.host.transport.ssh.connection import Connection, quote

__all__ = ["CLIENT_TLS_DIR", "TLS_FILES", "BoardTls", "install_tls", "issue_board_tls"]


@dataclass(frozen=True)
class BoardTls:
    """TLS for a bootstrapped agent: its certificate and key, and a client CA for mutual TLS."""

    cert_pem: bytes
    """The board's server certificate (PEM), for the loopback address the tunnel dials."""
    key_pem: bytes
    """Its private key (PEM); written 0600 on the board."""
    client_ca_pem: bytes | None = None
    """The CA whose client certificates the agent accepts (mutual TLS); None: server TLS only."""


TLS_FILES = ("tls/agent.pem", "tls/agent.key", "tls/client-ca.pem")
"""Where the board keeps its TLS files, under the agent's folder."""
CLIENT_TLS_DIR = ".edgeopt-tls"
"""Folder beside the inventory that holds the host's client certificates (mutual TLS)."""


def issue_board_tls(
    ca_folder: Path, name: str, *, mutual: bool, inventory: Path
) -> tuple[BoardTls, dict[str, str]]:
    """The board's certificate (and, for mutual TLS, the host's), issued by the fleet CA.

    The certificate names 127.0.0.1: the host reaches a bootstrapped agent through an SSH
    tunnel to a local port, and checks that name. With `mutual`, the host's client certificate
    is written into `CLIENT_TLS_DIR` beside `inventory`.

    Returns:
        What the board installs, and the TLS keys of the device's inventory table (`ca`, and
        with `mutual` `client_cert` and `client_key`: paths).

    Raises:
        TlsError: no fleet CA in `ca_folder`, or one that cannot issue.
    """
    server = tls.issue(ca_folder, name, ["127.0.0.1"])
    keys = {"ca": str(ca_folder / tls.CA_CERT)}
    client_ca = None
    if mutual:
        client = tls.issue(ca_folder, f"{name}-host", client=True)
        cert, key = tls.write_issued(client, inventory.parent / CLIENT_TLS_DIR)
        keys.update(client_cert=str(cert), client_key=str(key))
        client_ca = server.ca_pem
    return BoardTls(server.cert_pem, server.key_pem, client_ca), keys


def install_tls(conn: Connection, folder: str, tls: BoardTls) -> None:
    """Write the board's certificate, key and client CA (0600 in a 0700 folder)."""
    f = quote(folder)
    conn.run(f"umask 077 && mkdir -p {f}/tls && chmod 700 {f}/tls", timeout=30)
    files = [tls.cert_pem, tls.key_pem, tls.client_ca_pem]
    for name, data in zip(TLS_FILES, files, strict=True):
        if data is None:
            conn.run(f"rm -f {f}/{name}", timeout=30)
            continue
        conn.run(f"umask 077 && cat > {f}/{name}.part && mv {f}/{name}.part {f}/{name}",
                 stdin=data, timeout=30)  # fmt: skip
