"""`edgeopt tls`: a fleet CA and the certificates boards and the host present.

    edgeopt tls init [--dir DIR] [--json]                        DIR/ca.pem, DIR/ca.key (0600)
    edgeopt tls issue NAME --host IP_OR_DNS ... [--dir DIR] [--out DIR] [--json]
    edgeopt tls issue NAME --client [--dir DIR] [--out DIR] [--json]

DIR defaults to $EDGEOPT_TLS_DIR, then `tls` in the user's configuration folder; certificates go
to OUT (default DIR/issued) as NAME.pem and NAME.key (0600), with the CA's ca.pem beside them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from edgeopt.host.transport import tls

__all__ = ["ENV_VAR", "default_dir", "init_cmd", "issue_cmd", "tls_cmd"]

ENV_VAR = "EDGEOPT_TLS_DIR"


def default_dir() -> Path:
    """$EDGEOPT_TLS_DIR, else $XDG_CONFIG_HOME/edgeopt/tls (~/.config/edgeopt/tls)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "edgeopt" / "tls"


_dir_option = click.option(
    "--dir",
    "ca_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help=f"the fleet CA's folder (default: ${ENV_VAR}, then ~/.config/edgeopt/tls)",
)


@click.group("tls")
def tls_cmd() -> None:
    """A fleet certificate authority for TLS and mutual TLS between host and agents."""


@tls_cmd.command("init")
@_dir_option
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def init_cmd(ca_dir: Path | None, as_json: bool) -> None:
    """Make a new fleet CA (EC P-256; the key is written 0600)."""
    ca = tls.init_ca(ca_dir or default_dir())
    pin = tls.fingerprint(ca.cert.read_bytes())
    if as_json:
        click.echo(json.dumps({"cert": str(ca.cert), "key": str(ca.key), "sha256": pin}))
        return
    click.echo(f"fleet CA: {ca.cert} (key {ca.key}, keep it on this machine)")
    click.echo(f'inventory: [tls] ca = "{ca.cert}"; agents: --client-ca {ca.cert} for mTLS')


@tls_cmd.command("issue")
@click.argument("name")
@click.option(
    "--host",
    "hosts",
    multiple=True,
    metavar="IP_OR_DNS",
    help="an address the board is reached at (repeatable; the certificate's SANs)",
)
@click.option("--client", is_flag=True, help="a client certificate for the host (mutual TLS)")
@_dir_option
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="where to write NAME.pem and NAME.key (default: DIR/issued)",
)
@click.option("--days", type=click.IntRange(1, 3650), default=tls.LEAF_DAYS, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def issue_cmd(  # noqa: PLR0917  (click passes each option by name)
    name: str,
    hosts: tuple[str, ...],
    client: bool,
    ca_dir: Path | None,
    out: Path | None,
    days: int,
    as_json: bool,
) -> None:
    """Issue NAME a server certificate (--host ...) or a client certificate (--client)."""
    if client and hosts:
        raise click.UsageError("--client certificates name no --host: give one or the other")
    directory = ca_dir or default_dir()
    issued = tls.issue(directory, name, hosts, client=client, days=days)
    cert, key = tls.write_issued(issued, out or directory / "issued")
    ca = cert.parent / tls.CA_CERT
    if as_json:
        record = {"name": name, "client": client, "hosts": list(hosts), "cert": str(cert),
                  "key": str(key), "ca": str(ca), "sha256": issued.pin}  # fmt: skip
        click.echo(json.dumps(record))
        return
    click.echo(f"{'client' if client else 'server'} certificate {cert} (key {key})")
    if client:
        click.echo(f'inventory: client_cert = "{cert}", client_key = "{key}"')
    else:
        click.echo(f"board: edgeopt-agent serve --tls-cert {cert.name} --tls-key {key.name} ...")
