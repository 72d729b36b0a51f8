"""`edgeopt ssh`: boards reached by SSH first.

edgeopt ssh facts pi@raspberrypi.local [--json]     what the board is, with no agent on it
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import click

from edgeopt.host.cli import tls as tls_cli
from edgeopt.host.cli.common import Session
from edgeopt.host.cli.output import echo_json
from edgeopt.host.transport.ssh import bootstrap
from edgeopt.host.transport.ssh import connection as ssh
from edgeopt.host.transport.ssh import facts as remote
from edgeopt.proto.capabilities import format_summary, to_dict

__all__ = ["bootstrap_cmd", "facts_cmd", "open_connection", "remove_cmd", "ssh_cmd", "ssh_options"]


def ssh_options(command: Any) -> Any:
    """How to log in: host-key policy, key file, timeout."""
    for option in (
        click.option("--accept-new-host-key", is_flag=True,
                     help="record an unknown host key in known_hosts (a changed one is always "
                     "refused)"),
        click.option("--identity", "-i", type=click.Path(path_type=Path, dir_okay=False),
                     help="private key file (default: ~/.ssh/config, ssh-agent, ~/.ssh/id_*)"),
        click.option("--connect-timeout", type=float, default=ssh.DEFAULT_TIMEOUT,
                     show_default=True, help="seconds to connect, get the banner, log in"),
    ):  # fmt: skip
        command = option(command)
    return command


def open_connection(target: str, accept_new_host_key: bool, identity: Path | None,
                    connect_timeout: float) -> ssh.Connection:  # fmt: skip
    """Log in (paramiko's own logging of failed negotiations is silenced: errors say it)."""
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    return ssh.connect(target, accept_new_host_key=accept_new_host_key, key_file=identity,
                       timeout=connect_timeout)  # fmt: skip


@click.group("ssh")
def ssh_cmd() -> None:
    """Boards over SSH: facts without an agent, installing and removing the agent."""


@ssh_cmd.command("facts")
@click.argument("target", metavar="[USER@]HOST[:PORT]")
@ssh_options
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts")
def facts_cmd(
    target: str,
    accept_new_host_key: bool,
    identity: Path | None,
    connect_timeout: float,
    as_json: bool,
) -> None:
    """What the board is (the agent's report), read over SSH with no agent on it."""
    with open_connection(target, accept_new_host_key, identity, connect_timeout) as conn:
        found = remote.facts(conn)
    for warning in found.warnings:
        click.echo(f"warning: {conn.target}: {warning}", err=True)
    if as_json:
        echo_json({"target": str(conn.target), "capabilities": to_dict(found.capabilities),
                   "home_free_bytes": found.home_free_bytes,
                   "warnings": list(found.warnings)})  # fmt: skip
        return
    click.echo(f"{conn.target} (over SSH, no agent)")
    click.echo(format_summary(found.capabilities))


@ssh_cmd.command("bootstrap")
@click.argument("target", metavar="[USER@]HOST[:PORT]")
@click.option("--name", required=True, help="the device's name in the inventory")
@click.option("--offline", is_flag=True,
              help="install from wheels fetched here for the board (no index there)")  # fmt: skip
@click.option("--folder", default="~/.edgeopt", show_default=True,
              help="the agent's folder on the board (venv, store, token, log)")  # fmt: skip
@click.option("--port", type=int, default=50051, show_default=True,
              help="the agent's loopback port on the board")  # fmt: skip
@click.option("--wheel", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="install this edgeopt wheel (default: build one from the source)")  # fmt: skip
@click.option("--start-timeout", type=float, default=60.0, show_default=True)
@click.option(
    "--tls",
    "use_tls",
    is_flag=True,
    help="serve TLS with a certificate the fleet CA issues (edgeopt tls init)",
)
@click.option(
    "--mtls",
    is_flag=True,
    help="mutual TLS: --tls, and the agent accepts only clients the fleet CA signed "
    "(the host gets a client certificate beside the inventory)",
)
@click.option("--ca-dir", type=click.Path(path_type=Path, file_okay=False),
              help="the fleet CA's folder (default: as `edgeopt tls`)")  # fmt: skip
@ssh_options
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts")
@click.pass_obj
def bootstrap_cmd(  # noqa: PLR0917  (click passes each option by name)
    session: Session,
    target: str,
    name: str,
    offline: bool,
    folder: str,
    port: int,
    wheel: Path | None,
    start_timeout: float,
    use_tls: bool,
    mtls: bool,
    ca_dir: Path | None,
    accept_new_host_key: bool,
    identity: Path | None,
    connect_timeout: float,
    as_json: bool,
) -> None:
    """Install (or upgrade) and start the agent on a board; add it to the inventory.

    The agent listens on the board's loopback only; edgeopt reaches it through an SSH tunnel.
    Running it again upgrades in place and keeps the store and the token.
    """
    bootstrap.check_name(name)  # before anything is installed
    start = time.monotonic()
    board_tls, inventory_tls = (
        bootstrap.issue_board_tls(ca_dir or tls_cli.default_dir(), name, mutual=mtls,
                                  inventory=session.inventory_path)
        if use_tls or mtls
        else (None, None)
    )  # fmt: skip

    def say(text: str) -> None:
        if not as_json:
            click.echo(f"{name}: {text}", err=True)

    with open_connection(target, accept_new_host_key, identity, connect_timeout) as conn:
        done = bootstrap.bootstrap(conn, folder=folder, port=port, offline=offline,
                                   wheel=wheel, cache=bootstrap.default_cache(),
                                   start_timeout=start_timeout, say=say,
                                   tls=board_tls)  # fmt: skip
        spec = target if "@" in target else f"{conn.target.user}@{target}"
    token_file = bootstrap.add_to_inventory(session.inventory_path, name, spec, done,
                                            inventory_tls)  # fmt: skip
    seconds = time.monotonic() - start
    if as_json:
        echo_json({"device": name, "ssh": spec, "address": done.address, "folder": done.folder,
                   "manager": done.manager, "upgraded": done.upgraded,
                   "token_file": str(token_file), "inventory": str(session.inventory_path),
                   "seconds": round(seconds, 2)})  # fmt: skip
        return
    verb = "upgraded" if done.upgraded else "installed"
    click.echo(f"{name}: agent {verb} in {done.folder}, serving on the board's {done.address} "
               f"({done.manager}); reached through SSH ({spec}); {seconds:.1f} s")  # fmt: skip
    click.echo(f"{name}: added to {session.inventory_path}")


@ssh_cmd.command("remove")
@click.argument("name")
@click.option("--purge", is_flag=True, help="delete the board's model store too")
@ssh_options
@click.pass_obj
def remove_cmd(  # noqa: PLR0917  (click passes each option by name)
    session: Session,
    name: str,
    purge: bool,
    accept_new_host_key: bool,
    identity: Path | None,
    connect_timeout: float,
) -> None:
    """Stop and uninstall a bootstrapped agent and drop it from the inventory."""
    device = session.inventory().get(name)
    if device.ssh is None:
        raise click.ClickException(f"{name} has no ssh target in the inventory: nothing to remove")
    folder = str(device.extra.get("agent_folder", "~/.edgeopt"))
    with open_connection(device.ssh, accept_new_host_key, identity, connect_timeout) as conn:
        gone = bootstrap.remove(conn, folder=folder, purge=purge)
    bootstrap.drop_from_inventory(session.inventory_path, name)
    kept = "" if purge else f"; the store {folder}/store is kept (--purge deletes it)"
    click.echo(f"{name}: agent stopped, {', '.join(Path(g).name for g in gone)} removed{kept}")
    click.echo(f"{name}: dropped from {session.inventory_path}")
