"""What `ssh bootstrap` writes on the host and into the agent's unit: the inventory through a TOML
writer (any target, folder or address round-trips; names follow one rule; the user's comments
stay), and a systemd unit that systemd reads as the words bootstrap meant."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeopt.host.config import inventory
from edgeopt.host.errors import BootstrapError, InventoryError
from edgeopt.host.transport.ssh import bootstrap

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

USERS = (
    "# the lab's boards\n"
    "[devices.kitchen]  # by the window\n"
    'address = "192.168.1.40:50051"\n'
    'token_file = "tokens/kitchen"  # kept\n'
    "\n[groups]\n"
    'lab = ["kitchen"]\n'
)


def installed(
    folder: str = "/home/pi/.edgeopt", address: str = "127.0.0.1:50051"
) -> bootstrap.Installed:
    return bootstrap.Installed(folder, address, "t" * 43, "supervisor", False)


@pytest.mark.parametrize(
    "name",
    ['a"b', "a b", "../x", "a/b", "", "-x", "x" * 65, 'evil"]\n[devices.x', "a\nb", "é\x1b[2J"],
)
def test_a_name_outside_the_rule_is_refused_and_nothing_is_written(
    name: str, tmp_path: Path
) -> None:
    path = tmp_path / "edgeopt.toml"
    path.write_text(USERS)
    with pytest.raises(BootstrapError) as refused:
        bootstrap.add_to_inventory(path, name, "pi@board", installed())
    shown = name.replace("\x1b[2J", "").replace("\n", " ")
    assert str(refused.value) == (
        f"--name {shown!r}: a device name is a letter or digit, then up to 63 letters, digits, "
        "'_', '.' or '-' (no quotes, spaces or '/')"
    )
    assert path.read_text() == USERS
    assert not (tmp_path / bootstrap.TOKENS_DIR).exists()


def test_any_target_folder_and_name_round_trip_and_comments_stay(tmp_path: Path) -> None:
    path = tmp_path / "edgeopt.toml"
    path.write_text(USERS)
    target = 'pi@board"\n[devices.evil]\ntoken_file = "tokens/kitchen'
    folder = '/home/pi/my "agent" $HOME %h \\ ü'
    token = bootstrap.add_to_inventory(path, "küche-π.2", target, installed(folder))
    assert token == tmp_path / bootstrap.TOKENS_DIR / "küche-π.2.token"
    assert token.read_text() == "t" * 43 + "\n" and token.stat().st_mode & 0o777 == 0o600
    text = path.read_text()
    assert text.startswith(
        USERS.split("\n[groups]", maxsplit=1)[0]
    )  # the user's lines, comments and all
    assert tomllib.loads(text) == {
        "devices": {
            "kitchen": {"address": "192.168.1.40:50051", "token_file": "tokens/kitchen"},
            "küche-π.2": {"ssh": target, "address": "127.0.0.1:50051", "agent_folder": folder,
                          "token_file": ".edgeopt-tokens/küche-π.2.token"},
        },
        "groups": {"lab": ["kitchen"]},
    }  # fmt: skip
    loaded = inventory.load(path)
    assert loaded.get("küche-π.2").ssh == target
    assert loaded.get("küche-π.2").token() == "t" * 43
    # Bootstrapping again replaces the table in place; removing it leaves the user's file.
    bootstrap.add_to_inventory(path, "küche-π.2", "pi@board", installed(folder))
    assert tomllib.loads(path.read_text())["devices"]["küche-π.2"]["ssh"] == "pi@board"
    bootstrap.drop_from_inventory(path, "küche-π.2")
    assert path.read_text() == USERS
    assert not token.exists()


def test_an_inventory_that_is_not_toml_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "edgeopt.toml"
    path.write_text("[devices.a\n")
    with pytest.raises(InventoryError) as refused:
        bootstrap.add_to_inventory(path, "board", "pi@board", installed())
    assert str(refused.value).startswith(f"{path}: cannot edit: ")
    assert path.read_text() == "[devices.a\n"


FOLDER = '/home/pi/my agent $HOME %h "q" \\'


def test_the_systemd_unit_quotes_the_folder() -> None:
    unit = bootstrap.unit_text(FOLDER, 50051)
    quoted = '/home/pi/my agent $$HOME %%h \\"q\\" \\\\'
    assert unit.splitlines()[4:9] == [
        'ExecStart="/home/pi/my agent $HOME %%h \\"q\\" \\\\/venv/bin/python" "-m" '
        f'"edgeopt.agent" "serve" "--listen" "127.0.0.1:50051" "--store" "{quoted}/store" '
        f'"--token-file" "{quoted}/token" "--ready-file" "{quoted}/ready"',
        "Restart=on-failure",
        "UMask=0077",
        'StandardOutput=append:/home/pi/my agent $HOME %%h "q" \\/agent.log',
        'StandardError=append:/home/pi/my agent $HOME %%h "q" \\/agent.log',
    ]


def test_systemd_reads_the_units_program_where_bootstrap_put_it(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    folder = tmp_path / "my agent $HOME %h"
    (folder / "venv" / "bin").mkdir(parents=True)
    (folder / "venv" / "bin" / "python").symlink_to(sys.executable)
    unit = tmp_path / bootstrap.UNIT
    unit.write_text(bootstrap.unit_text(str(folder), 50051))
    # verify fails on a program it cannot find: an unquoted folder with a space names
    # ".../my" and a doubled $ names "$$HOME".
    done = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True,
                          text=True, check=False, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_the_supervisor_quotes_the_folder_for_sh() -> None:
    script = bootstrap.supervisor_text(FOLDER, 50051)
    words = [
        "'/home/pi/my agent $HOME %h \"q\" \\/venv/bin/python' -m edgeopt.agent serve "
        "--listen 127.0.0.1:50051 --store '/home/pi/my agent $HOME %h \"q\" \\/store'"
    ]
    assert f"  {words[0]} " in script
    assert ">> '/home/pi/my agent $HOME %h \"q\" \\/agent.log' 2>&1" in script
    assert 'echo "$child" > \'/home/pi/my agent $HOME %h "q" \\\'/agent.child' in script
    assert script.splitlines()[3] == "umask 077"
    syntax = subprocess.run(["sh", "-n"], input=script, capture_output=True, text=True,
                            check=False)  # fmt: skip
    assert syntax.returncode == 0, syntax.stderr
