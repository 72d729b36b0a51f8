"""`edgeopt`: the host's command line, a thin layer over the library.

Commands turn options into library calls and print the result as a table or, with `--json`, as
JSON for scripts. Every `EdgeoptError` is turned into a `click.ClickException` in one place
(`EdgeoptGroup.invoke`), so a user sees one line saying what is wrong and the exit status is 1.
One module per command group: `devices` (devices, profiles), `compress` (compress, cache),
`deploy` (deploy, deployments, tune ls), `serving` (models, infer, rollback, remove), `bench`,
`plan`, `profile`, `ssh`, `tls`; `common` holds the session and the device selection, `output`
the JSON printer.

May import every host layer (it is the top one), and click; nothing imports it but the
`edgeopt` entry point.

    edgeopt devices [--device X ...] [--fleet] [--json]    table of the selected devices
    edgeopt devices show NAME [--json]                    full capability report
    edgeopt devices check NAME [--json]                   live report held against the profile
    edgeopt profiles [--json] / edgeopt profiles show NAME
    edgeopt compress MODEL ... / edgeopt cache ls|clear        (see cli/compress.py)
"""

from __future__ import annotations

from pathlib import Path

import click

from edgeopt.host.cli.bench import bench_cmd
from edgeopt.host.cli.common import EdgeoptGroup, Session
from edgeopt.host.cli.compress import cache_cmd, compress_cmd
from edgeopt.host.cli.deploy import COMMANDS as DEPLOY_COMMANDS
from edgeopt.host.cli.devices import devices, profiles_cmd
from edgeopt.host.cli.plan import plan_cmd
from edgeopt.host.cli.profile import profile_cmd
from edgeopt.host.cli.publish import publish_cmd
from edgeopt.host.cli.serving import COMMANDS as SERVING_COMMANDS
from edgeopt.host.cli.ssh import ssh_cmd
from edgeopt.host.cli.tls import tls_cmd
from edgeopt.host.cli.top import top_cmd
from edgeopt.host.config import device_profiles as profiles
from edgeopt.host.config import inventory
from edgeopt.host.store import state

__all__ = ["cli", "main"]


@click.group(cls=EdgeoptGroup)
@click.option(
    "--inventory",
    "inventory_path",
    metavar="FILE",
    help=f"inventory TOML (default: ${inventory.ENV_VAR}, then ./{inventory.DEFAULT_FILE})",
)
@click.option(
    "--profiles-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help=f"extra device profiles folder (also ${profiles.ENV_VAR})",
)
@click.option(
    "--deadline",
    type=float,
    default=10.0,
    show_default=True,
    help="seconds each agent call may take, retries included",
)
@click.option(
    "--state",
    metavar="PATH|URL",
    help=f"the host's state database (default: ${state.ENV_VAR}, then state.db in the user's "
    "data directory)",
)
@click.version_option(package_name="edgeopt")
@click.pass_context
def cli(
    ctx: click.Context,
    inventory_path: str | None,
    profiles_dir: Path | None,
    deadline: float,
    state: str | None,
) -> None:
    """edgeopt: get neural-network models running well on fleets of edge boards."""
    ctx.obj = Session(inventory_path, profiles_dir, deadline, state)
    ctx.call_on_close(ctx.obj.close)


for command in (
    devices,
    profiles_cmd,
    compress_cmd,
    cache_cmd,
    *DEPLOY_COMMANDS,
    *SERVING_COMMANDS,
    publish_cmd,
    top_cmd,
    bench_cmd,
    plan_cmd,
    ssh_cmd,
    profile_cmd,
    tls_cmd,
):
    cli.add_command(command)


def main() -> None:
    """Console entry point."""
    cli(prog_name="edgeopt")
