"""The fleet as data: an inventory file (TOML) of devices, groups and tags.

    [devices.pi4-kitchen]
    address = "192.168.1.40:50051"
    profile = "pi4"
    tags = ["shelf"]
    token_file = "tokens/pi4-kitchen"     # relative to this file; ~ expands
    [devices.field-7]                     # behind NAT: it pulls (edgeopt publish)
    registry = "oci://registry.lan:5000/edgeopt/fleet"
    profile = "pi5"
    [groups]
    lab = ["pi4-kitchen", "rk-01"]

TLS: a `[tls]` table sets it fleet-wide and a device's own keys override it, key by key:

    [tls]
    ca = "tls/ca.pem"                     # trust agents whose certificate this CA signed
    client_cert = "tls/host.pem"          # mutual TLS: what the host presents
    client_key = "tls/host.key"
    [devices.rk-01]
    address = "10.0.0.7:50051"
    tls_pin = "sha256:9f86d0..."          # or: trust exactly this (self-signed) certificate
    server_name = "rk-01.lan"             # the name to check when the cert lacks the address
    [devices.pi4-lab]
    tls = false                           # this one is reached in plaintext (an SSH tunnel)

`tls = true` asks for TLS with gRPC's default roots when no other key does.

Which file: `--inventory PATH`, else `$EDGEOPT_INVENTORY`, else `./edgeopt.toml`. Keys this
version does not know are kept in `Device.extra` (later versions and users may add their own).
A selector (`--device X`) names a device, then a group, a tag, or a profile (every device of that
profile), in that order; `--fleet` selects every device.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeopt.host.config import tomlfile
from edgeopt.host.errors import InventoryError, UnknownDevice

__all__ = [
    "DEFAULT_FILE",
    "DEFAULT_TUNNEL_REMOTE",
    "ENV_VAR",
    "PIN_PREFIX",
    "TLS_KEYS",
    "Device",
    "Inventory",
    "TlsSettings",
    "load",
    "locate",
    "parse",
]

ENV_VAR = "EDGEOPT_INVENTORY"
DEFAULT_FILE = "edgeopt.toml"
DEFAULT_TUNNEL_REMOTE = "127.0.0.1:50051"
"""The agent's address on the board for a device reached over SSH that names none."""
PIN_PREFIX = "sha256:"
TLS_KEYS = ("ca", "client_cert", "client_key", "server_name")
"""Keys a device and the fleet-wide `[tls]` table share (a pin names one board: device only)."""


@dataclass(frozen=True)
class TlsSettings:
    """How the host secures its channel to one agent (paths resolved against the inventory)."""

    ca: Path | None = None
    """CA certificates (PEM) the agent's certificate must chain to; None: gRPC's default roots
    (or, with a pin, the pinned certificate itself)."""
    client_cert: Path | None = None
    """The host's certificate (PEM), presented to agents that ask for one (mutual TLS)."""
    client_key: Path | None = None
    """The client certificate's key (PEM)."""
    pin: str | None = None
    """"sha256:<hex>" of the agent's certificate (DER): only that certificate is accepted."""
    server_name: str | None = None
    """The name checked against the agent's certificate instead of the address's host."""


@dataclass(frozen=True)
class Device:
    """One board of the fleet."""

    name: str
    """Inventory name, unique."""
    address: str
    """HOST:PORT of its agent."""
    profile: str | None = None
    """Name of its device profile (device_profiles/NAME.toml)."""
    tags: tuple[str, ...] = ()
    """Free-form labels, usable as selectors."""
    token_file: Path | None = None
    """File holding the agent's bearer token (already resolved against the inventory's folder)."""
    ssh: str | None = None
    """SSH target ([user@]host[:port] or a ~/.ssh/config alias): the host reaches the agent
    through an SSH tunnel to `address`, which is then as seen from the board (default
    127.0.0.1:50051, so the agent never listens on the network)."""
    registry: str | None = None
    """`oci://HOST:PORT/REPO` for a board in pull mode (it polls its desired state there)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Keys this version does not interpret."""
    tls: TlsSettings | None = None
    """TLS to the agent (the device's keys over the fleet's `[tls]`); None: plaintext."""

    def token(self) -> str | None:
        """Read the bearer token, or None when the device has no token file.

        Raises:
            InventoryError: the token file is unreadable or empty.
        """
        if self.token_file is None:
            return None
        try:
            token = self.token_file.read_text(encoding="utf-8").strip().splitlines()
        except OSError as exc:
            raise InventoryError(
                str(self.token_file),
                f"cannot read token file of device {self.name!r}: {exc.strerror or exc}",
            ) from exc
        if not token or not token[0].strip():
            raise InventoryError(str(self.token_file), f"token file of {self.name!r} is empty")
        return token[0].strip()


@dataclass(frozen=True)
class Inventory:
    """Devices and groups, as read from one file."""

    devices: Mapping[str, Device]
    """Devices by name, in file order."""
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Group name → device names."""
    path: Path | None = None
    """The file this came from."""

    def select(self, selectors: Iterable[str] = (), *, fleet: bool = False) -> list[Device]:
        """Devices named by the selectors (all of them with `fleet` or no selector), in file order.

        Raises:
            UnknownDevice: a selector names nothing; the message lists the known devices.
        """
        selectors = list(selectors)
        if fleet or not selectors:
            return list(self.devices.values())
        chosen: set[str] = set()
        for selector in selectors:
            names = self._resolve(selector)
            if not names:
                raise UnknownDevice(selector, list(self.devices))
            chosen.update(names)
        return [d for name, d in self.devices.items() if name in chosen]

    def _resolve(self, selector: str) -> list[str]:
        if selector in self.devices:
            return [selector]
        if selector in self.groups:
            return list(self.groups[selector])
        by_tag = [d.name for d in self.devices.values() if selector in d.tags]
        if by_tag:
            return by_tag
        return [d.name for d in self.devices.values() if d.profile == selector]

    def get(self, name: str) -> Device:
        """One device by its exact name.

        Raises:
            UnknownDevice: no such device.
        """
        if name not in self.devices:
            raise UnknownDevice(name, list(self.devices))
        return self.devices[name]


def locate(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The inventory file to use: explicit, else $EDGEOPT_INVENTORY, else ./edgeopt.toml."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path(DEFAULT_FILE)


def _resolve_path(base: Path, value: str, inventory: Path, where: str) -> Path:
    try:
        path = Path(value).expanduser()
    except RuntimeError as exc:  # "~someone/..." of a user this machine does not know
        raise InventoryError(str(inventory), f"cannot expand {value!r}: {exc}", where) from exc
    return path if path.is_absolute() else base / path


def _check_name(path: Path, kind: str, name: str) -> None:
    """Names are selectors typed on a command line and shown in tables: one printable line."""
    if not name or not name.isprintable():
        raise InventoryError(
            str(path),
            f"{kind} name {name!r} must be printable text (no newline, tab or other control "
            "character)",
            f"{kind}s",
        )


def _check_address(path: Path, where: str, address: str) -> None:
    host, sep, port = address.rpartition(":")
    # isdigit() alone admits "²" and Arabic-Indic digits, which int() then refuses.
    digits = port.isascii() and port.isdigit()
    if not sep or not host or not digits or not 0 < int(port) < 65536:
        raise InventoryError(
            str(path), f'must be HOST:PORT (e.g. "192.168.1.40:50051"), got {address!r}', where
        )


def _check_pin(path: Path, where: str, pin: str) -> str:
    digest = pin[len(PIN_PREFIX) :].lower() if pin.startswith(PIN_PREFIX) else ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise InventoryError(
            str(path),
            f'must be "sha256:" and 64 hex digits (the SHA-256 of the agent\'s certificate '
            f"in DER form; `edgeopt tls issue --json` prints it), got {pin!r}",
            where,
        )
    return PIN_PREFIX + digest


def _tls_table(data: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """The fleet-wide `[tls]` keys, checked."""
    err = InventoryError
    table = tomlfile.expect(dict(data), "tls", dict, path=path, where="", error=err) or {}
    for key in table:
        if key == "tls_pin":
            raise err(str(path), "a pin names one board's certificate: set it per device",
                      "tls.tls_pin")  # fmt: skip
        if key not in TLS_KEYS:
            raise err(str(path), f"unknown key (known: {', '.join(TLS_KEYS)})", f"tls.{key}")
        tomlfile.expect(table, key, str, path=path, where="tls", error=err)
    return dict(table)


def _tls_settings(
    device: Mapping[str, Any], fleet: Mapping[str, Any], path: Path, where: str
) -> TlsSettings | None:
    """A device's TLS: its own keys over the fleet's; None when neither asks for TLS."""
    err = InventoryError
    table = dict(device)
    switch = tomlfile.expect(table, "tls", bool, path=path, where=where, error=err)
    if switch is False:
        return None
    own = {k: tomlfile.expect(table, k, str, path=path, where=where, error=err)
           for k in (*TLS_KEYS, "tls_pin")}  # fmt: skip
    merged = {k: own[k] if own[k] is not None else fleet.get(k) for k in TLS_KEYS}
    pin = own["tls_pin"]
    if switch is None and pin is None and not any(merged.values()):
        return None
    if (merged["client_cert"] is None) != (merged["client_key"] is None):
        raise err(str(path), "client_cert and client_key go together: give both or neither",
                  where)  # fmt: skip

    def resolved(key: str) -> Path | None:
        value = merged[key]
        return _resolve_path(path.parent, value, path, f"{where}.{key}") if value else None

    return TlsSettings(
        ca=resolved("ca"),
        client_cert=resolved("client_cert"),
        client_key=resolved("client_key"),
        pin=_check_pin(path, f"{where}.tls_pin", pin) if pin is not None else None,
        server_name=merged["server_name"] or None,
    )


def parse(data: Mapping[str, Any], path: Path) -> Inventory:
    """Build an `Inventory` from parsed TOML.

    Raises:
        InventoryError: a key has the wrong type or value; the message names file and field.
    """
    err = InventoryError
    devices_table = tomlfile.expect(dict(data), "devices", dict, path=path, where="", error=err)
    fleet_tls = _tls_table(data, path)
    devices: dict[str, Device] = {}
    for name, table in (devices_table or {}).items():
        _check_name(path, "device", name)
        where = f"devices.{name}"
        if not isinstance(table, dict):
            raise err(str(path), f"must be a table, got {table!r}", where)

        def get(
            key: str, kind: type, *, _t: dict[str, Any] = table, _w: str = where, **kw: Any
        ) -> Any:
            return tomlfile.expect(_t, key, kind, path=path, where=_w, error=err, **kw)

        ssh_target = get("ssh", str)
        registry = get("registry", str)
        # Reached through an SSH tunnel, the agent listens on the board's loopback only; a
        # board in pull mode (`registry`) may listen nowhere.
        address = get("address", str, required=ssh_target is None and registry is None)
        address = address or ("" if registry and not ssh_target else DEFAULT_TUNNEL_REMOTE)
        if address:
            _check_address(path, f"{where}.address", address)
        token_file = get("token_file", str)
        known = {"address", "profile", "tags", "token_file", "ssh", "tls", "tls_pin", "registry",
                 *TLS_KEYS}  # fmt: skip
        devices[name] = Device(
            name=name,
            address=address,
            profile=get("profile", str),
            tags=tuple(get("tags", list, item=str) or ()),
            token_file=(
                _resolve_path(path.parent, token_file, path, f"{where}.token_file")
                if token_file
                else None
            ),
            ssh=ssh_target,
            registry=registry,
            extra={k: v for k, v in table.items() if k not in known},
            tls=_tls_settings(table, fleet_tls, path, where),
        )
    groups: dict[str, tuple[str, ...]] = {}
    groups_table = tomlfile.expect(dict(data), "groups", dict, path=path, where="", error=err)
    for group, members in (groups_table or {}).items():
        _check_name(path, "group", group)
        tomlfile.expect(groups_table, group, list, path=path, where="groups", error=err, item=str)
        for member in members:
            if member not in devices:
                raise err(
                    str(path),
                    f"names unknown device {member!r} (known: {', '.join(devices) or 'none'})",
                    f"groups.{group}",
                )
        groups[group] = tuple(members)
    return Inventory(devices=devices, groups=groups, path=path)


def load(path: Path) -> Inventory:
    """Read and check an inventory file.

    Raises:
        InventoryError: unreadable, not TOML, or wrong; the message names the file and the field
            or line.
    """
    return parse(tomlfile.load(path, InventoryError), path)
