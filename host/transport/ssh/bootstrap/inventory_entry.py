"""A bootstrapped device's entry in the host's inventory: its table, and its token in a file.

The inventory is edited with a TOML writer (tomlkit, which keeps the user's comments and layout)
and replaced at once, so no name or answer can add a table of its own and a crash leaves the old
file or the new one. The token goes into a 0600 file in a 0700 folder beside the inventory.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions

from edgeopt.host.errors import BootstrapError, InventoryError
from edgeopt.host.transport.ssh.bootstrap.install import Installed
from edgeopt.host.transport.ssh.connection import printable

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["NAME_RULE", "TOKENS_DIR", "add_to_inventory", "check_name", "drop_from_inventory"]

NAME_RULE = r"[^\W_][\w.-]{0,63}"
"""A device name bootstrap writes: a letter or digit, then up to 63 letters, digits, `_`, `.`,
`-` (Unicode letters too). No quote, space or `/`: it names the token's file as well."""


def check_name(name: str) -> None:
    """Refuse a device name outside `NAME_RULE`, saying the rule.

    Raises:
        BootstrapError: the name is not allowed.
    """
    if not re.fullmatch(NAME_RULE, name):
        raise BootstrapError(
            f"--name {printable(name)!r}: a device name is a letter or digit, then up to 63 "
            "letters, digits, '_', '.' or '-' (no quotes, spaces or '/')"
        )


TOKENS_DIR = ".edgeopt-tokens"
"""Folder beside the inventory that holds the tokens of bootstrapped agents (mode 0700)."""


def _load_document(inventory: Path) -> tomlkit.TOMLDocument:
    if not inventory.exists():
        return tomlkit.document()
    try:
        return tomlkit.parse(inventory.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomlkit.exceptions.ParseError) as exc:
        raise InventoryError(str(inventory), f"cannot edit: {exc}") from exc


def _write_document(inventory: Path, text: str) -> None:
    """Replace the inventory at once: a crash leaves the old file or the new one, never half."""
    fd, part = tempfile.mkstemp(dir=inventory.parent, prefix=f".{inventory.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        if inventory.exists():
            os.chmod(part, inventory.stat().st_mode & 0o7777)
        os.replace(part, inventory)
    except BaseException:
        Path(part).unlink(missing_ok=True)
        raise


def add_to_inventory(
    inventory: Path,
    name: str,
    target: str,
    installed: Installed,
    tls: dict[str, str] | None = None,
) -> Path:
    """Write (or replace) the device's table; its token goes into a 0600 file beside it.

    `tls` adds the device's TLS keys (`ca`, `client_cert`, `client_key`: paths) to its table.

    Raises:
        BootstrapError: `name` breaks `NAME_RULE`.
        InventoryError: the inventory is not TOML, or its `devices` is not a table.
    """
    check_name(name)
    doc = _load_document(inventory)
    devices: Any = doc.get("devices")
    if devices is None:
        devices = tomlkit.table(is_super_table=True)
        doc["devices"] = devices
    elif not isinstance(devices, dict):
        raise InventoryError(str(inventory), "must be a table", "devices")
    table = tomlkit.table()
    table["ssh"] = target
    table["address"] = installed.address
    table["token_file"] = f"{TOKENS_DIR}/{name}.token"
    table["agent_folder"] = installed.folder
    for key, value in (tls or {}).items():
        table[key] = value
    table.add(tomlkit.nl())  # a blank line before whatever table follows
    devices[name] = table
    text = tomlkit.dumps(doc).rstrip("\n") + "\n"
    # What a reader will see: exactly this table under exactly this name (nothing else added).
    written = tomllib.loads(text)["devices"][name]
    assert written == {k: str(v) for k, v in table.items()}, written
    tokens = inventory.parent / TOKENS_DIR
    tokens.mkdir(mode=0o700, parents=True, exist_ok=True)
    token_file = tokens / f"{name}.token"
    token_file.touch(mode=0o600)
    token_file.chmod(0o600)
    token_file.write_text(installed.token + "\n")
    _write_document(inventory, text)
    return token_file


def drop_from_inventory(inventory: Path, name: str) -> None:
    """Remove the device's table and its token file (groups naming it are left to the user)."""
    doc = _load_document(inventory)
    devices: Any = doc.get("devices")
    if isinstance(devices, dict) and name in devices:
        del devices[name]
        _write_document(inventory, tomlkit.dumps(doc))
    (inventory.parent / TOKENS_DIR / f"{name}.token").unlink(missing_ok=True)
