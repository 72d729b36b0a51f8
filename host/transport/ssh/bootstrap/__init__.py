"""Install, start, upgrade and remove the agent on a board over SSH.

`bootstrap` builds the agent's wheel on the host (edgeopt's own wheel: the base install is
the agent's, see pyproject.toml), checks the board (architecture, glibc, python3 and its venv
module, free disk), uploads the wheel by SFTP into the agent's folder on the board (`~/.edgeopt`
by default), makes a venv there and installs the agent with its minimal dependencies, either
from the board's package index or offline, from wheels the host downloads for the board's
platform (`pip download --platform ... --only-binary=:all:`). It keeps or makes the board's
token, starts the agent on the board's loopback port (a systemd user unit where systemd runs,
else a detached shell supervisor that restarts it when it dies, with a pid file), waits until
it serves, and returns what the inventory needs; the host reaches the agent through an SSH
tunnel, so it never listens on the network. Running it again upgrades in place: same folder,
same token, same store.

`remove` stops the agent and deletes its unit, venv, wheels and token; the store only with
`purge`.

What the board answers is checked before it is used: its home folder, the agent's ready file
(the loopback HOST:PORT the agent was told to listen on) and its token; the inventory is edited
with a TOML writer (tomlkit, which keeps the user's comments and layout), so no name or answer
can add a table of its own. The agent's folder is quoted for the shell and for systemd, and made
with mode 0700 (an existing one is tightened): the store, logs and token are the user's alone.

    inspection        what the board's system offers (architecture, glibc, python3, disk,
                      systemd), and the refusal of a board the agent cannot run on
    wheels            edgeopt's wheel built here, its dependencies downloaded for the board
    certificates      the agent's certificate from the fleet CA, and its TLS files on the board
    service           the agent's systemd unit or shell supervisor: start, wait, stop
    install           the steps in order: `bootstrap` and `remove`
    inventory_entry   the device's table in the inventory and its token file

Callers import this package; each name below is defined in one of those modules.
"""

from __future__ import annotations

from edgeopt.host.transport.ssh.bootstrap.certificates import (
    CLIENT_TLS_DIR,
    TLS_FILES,
    BoardTls,
    issue_board_tls,
)
from edgeopt.host.transport.ssh.bootstrap.inspection import (
    ARCHES,
    MIN_FREE_BYTES,
    MIN_PYTHON,
    Inspection,
    check,
    probe,
)
from edgeopt.host.transport.ssh.bootstrap.install import Installed, bootstrap, remove
from edgeopt.host.transport.ssh.bootstrap.inventory_entry import (
    NAME_RULE,
    TOKENS_DIR,
    add_to_inventory,
    check_name,
    drop_from_inventory,
)
from edgeopt.host.transport.ssh.bootstrap.service import (
    SUPERVISOR,
    UNIT,
    supervisor_text,
    systemd_word,
    unit_text,
)
from edgeopt.host.transport.ssh.bootstrap.wheels import (
    ROOT,
    build_wheel,
    default_cache,
    download_wheels,
    platform_tags,
)

__all__ = [
    "ARCHES",
    "CLIENT_TLS_DIR",
    "MIN_FREE_BYTES",
    "MIN_PYTHON",
    "NAME_RULE",
    "ROOT",
    "SUPERVISOR",
    "TLS_FILES",
    "TOKENS_DIR",
    "UNIT",
    "BoardTls",
    "Inspection",
    "Installed",
    "add_to_inventory",
    "bootstrap",
    "build_wheel",
    "check",
    "check_name",
    "default_cache",
    "download_wheels",
    "drop_from_inventory",
    "issue_board_tls",
    "platform_tags",
    "probe",
    "remove",
    "supervisor_text",
    "systemd_word",
    "unit_text",
]
