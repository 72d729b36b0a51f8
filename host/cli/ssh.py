"""`edgeopt ssh`: boards reached by SSH first.

edgeopt ssh facts pi@raspberrypi.local [--json]     what the board is, with no agent on it
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from edgeopt.host import remote, ssh
from edgeopt.host.output import echo_json
from edgeopt.proto.capabilities import format_summary, to_dict


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
    """Boards over SSH: facts without an agent."""


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
    if as_json:
        echo_json({"target": str(conn.target), "capabilities": to_dict(found.capabilities),
                   "home_free_bytes": found.home_free_bytes})  # fmt: skip
        return
    click.echo(f"{conn.target} (over SSH, no agent)")
    click.echo(format_summary(found.capabilities))
