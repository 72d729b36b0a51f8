"""Real certificates for the TLS tests, made by the host's own fleet CA code.

The code is edgeopt.host.transport.tls.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeopt.host.transport import tls


@dataclass(frozen=True)
class Pki:
    """A fleet CA with a board's server and the host's client certificate, and a foreign CA."""

    ca: Path
    """The fleet CA's certificate."""
    ca_dir: Path
    """The fleet CA's folder (to issue more)."""
    server_cert: Path
    """The board's certificate: SANs 127.0.0.1 and board.test."""
    server_key: Path
    client_cert: Path
    """The host's client certificate (the fleet CA's)."""
    client_key: Path
    other_ca: Path
    """A CA that signed none of the above."""
    other_client_cert: Path
    """A client certificate the other CA signed."""
    other_client_key: Path


def make(root: Path) -> Pki:
    """Make the fleet CA, a foreign CA and their certificates under `root`."""
    fleet = tls.init_ca(root / "ca")
    server = tls.write_issued(tls.issue(root / "ca", "board", ["127.0.0.1", "board.test"]),
                              root / "board")  # fmt: skip
    client = tls.write_issued(tls.issue(root / "ca", "host", client=True), root / "host")
    other = tls.init_ca(root / "other-ca")
    stranger = tls.write_issued(tls.issue(root / "other-ca", "stranger", client=True),
                                root / "stranger")  # fmt: skip
    return Pki(fleet.cert, root / "ca", *server, *client, other.cert, *stranger)
