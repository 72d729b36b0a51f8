"""What every command shares.

The session (inventory, profiles, client settings), the root group's error mapping, and small
formatting helpers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from edgeopt.host.config import device_profiles as profiles
from edgeopt.host.config import inventory
from edgeopt.host.config.inventory import Device
from edgeopt.host.errors import EdgeoptError
from edgeopt.host.transport.client import ClientConfig
from edgeopt.host.transport.ssh import tunnel

__all__ = ["EdgeoptGroup", "Session", "device_options", "gib", "mib", "selection"]


class EdgeoptGroup(click.Group):
    """The root group: maps library errors to one-line click errors."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; an `EdgeoptError` becomes one line and exit status 1."""
        try:
            return super().invoke(ctx)
        except EdgeoptError as exc:
            raise click.ClickException(str(exc)) from exc


def gib(n: int | None) -> str:
    """Bytes as GiB with one decimal, "?" when unknown."""
    return "?" if n is None else f"{n / 2**30:.1f} GiB"


def mib(n: int) -> str:
    """Bytes as MiB with one decimal, or KiB below one MiB."""
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"


def selection(
    session: Session, selectors: tuple[str, ...], whole_fleet: bool
) -> tuple[list[Device], str]:
    """The devices `--device`/`--fleet` select, and the selection in words."""
    if not selectors and not whole_fleet:
        raise click.UsageError("say which devices: --device NAME|GROUP|TAG|PROFILE, or --fleet")
    chosen = session.reach(session.inventory().select(selectors, fleet=whole_fleet))
    if not chosen:
        raise click.UsageError(f"the selection {' '.join(selectors) or '--fleet'} has no devices")
    return chosen, "--fleet" if whole_fleet else " ".join(selectors)


def device_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--device (repeatable) and --fleet."""
    command = click.option(
        "--fleet", "whole_fleet", is_flag=True, help="every device of the inventory"
    )(command)
    return click.option(
        "--device",
        "-d",
        "selectors",
        multiple=True,
        metavar="X",
        help="a device, group, tag or profile name (repeatable)",
    )(command)


class Session:
    """What every command needs: where the inventory and profiles are, and client settings."""

    def __init__(
        self,
        inventory_path: str | None,
        profiles_dir: Path | None,
        deadline: float,
        state: str | None = None,
    ):
        self.inventory_path = inventory.locate(inventory_path)
        self.profiles_dir = profiles_dir
        self.client = ClientConfig(deadline=deadline)
        self.state = state
        """The state database (a path or URL); None: $EDGEOPT_STATE or the default."""
        self.tunnels: dict[tuple[str, str], tunnel.Tunnel] = {}

    def inventory(self) -> inventory.Inventory:
        """Load the inventory (a missing file is an error that says how to make one)."""
        if not self.inventory_path.exists():
            raise click.ClickException(
                f"no inventory at {self.inventory_path}: write one (see README.md), pass "
                f"--inventory FILE or set ${inventory.ENV_VAR}"
            )
        return inventory.load(self.inventory_path)

    def reach(self, devices: list[Device]) -> list[Device]:
        """The devices, those with `ssh` set pointed at a local SSH tunnel to their agent.

        Tunnels log in in the background (a board whose login fails is reported by the first
        call to it, with the SSH reason) and close when the command ends.
        """
        out = []
        for device in devices:
            if device.ssh is None:
                out.append(device)
                continue
            key = (device.ssh, device.address)
            if key not in self.tunnels:
                self.tunnels[key] = tunnel.Tunnel(device.ssh, device.address,
                                                  timeout=self.client.deadline)  # fmt: skip
            out.append(replace(device, address=self.tunnels[key].address))
        return out

    def close(self) -> None:
        """Close what the command opened (SSH tunnels)."""
        for t in self.tunnels.values():
            t.close()
        self.tunnels.clear()

    def profiles(self) -> dict[str, profiles.DeviceProfile]:
        """Every known device profile."""
        return profiles.load_all(self.profiles_dir)
