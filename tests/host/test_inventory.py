from __future__ import annotations

from pathlib import Path

import pytest

from edgeopt.host.config import inventory
from edgeopt.host.errors import InventoryError, UnknownDevice

GOOD = """
[devices.pi4-kitchen]
address = "192.168.1.40:50051"
profile = "pi4"
tags = ["shelf"]
token_file = "tokens/pi4-kitchen"
location = "kitchen"            # a key this version does not know

[devices.rk-01]
address = "10.0.0.7:50051"
profile = "rk3588"
token_file = "~/tok"

[devices.pi4-garage]
address = "garage.local:50051"
profile = "pi4"

[groups]
lab = ["pi4-kitchen", "rk-01"]
"""


@pytest.fixture
def inv(tmp_path: Path) -> inventory.Inventory:
    path = tmp_path / "edgeopt.toml"
    path.write_text(GOOD)
    return inventory.load(path)


def test_devices_and_paths(inv: inventory.Inventory, tmp_path: Path) -> None:
    assert list(inv.devices) == ["pi4-kitchen", "rk-01", "pi4-garage"]
    kitchen = inv.devices["pi4-kitchen"]
    assert kitchen.token_file == tmp_path / "tokens" / "pi4-kitchen"
    assert kitchen.extra == {"location": "kitchen"}
    assert inv.devices["rk-01"].token_file == Path.home() / "tok"
    assert inv.devices["pi4-garage"].token_file is None


@pytest.mark.parametrize(
    ("selectors", "names"),
    [
        (["rk-01"], ["rk-01"]),
        (["lab"], ["pi4-kitchen", "rk-01"]),
        (["shelf"], ["pi4-kitchen"]),
        (["pi4"], ["pi4-kitchen", "pi4-garage"]),
        (["pi4", "rk-01"], ["pi4-kitchen", "rk-01", "pi4-garage"]),
        ([], ["pi4-kitchen", "rk-01", "pi4-garage"]),
    ],
)
def test_select(inv: inventory.Inventory, selectors: list[str], names: list[str]) -> None:
    assert [d.name for d in inv.select(selectors)] == names


def test_fleet_selects_everything(inv: inventory.Inventory) -> None:
    assert len(inv.select(["rk-01"], fleet=True)) == 3


def test_unknown_selector_lists_known_devices(inv: inventory.Inventory) -> None:
    with pytest.raises(UnknownDevice) as info:
        inv.select(["pi9"])
    assert str(info.value) == (
        "no device, group, tag or profile named 'pi9'; "
        "known devices: pi4-kitchen, rk-01, pi4-garage"
    )
    with pytest.raises(UnknownDevice):
        inv.get("lab")  # a group is not a device


def test_locate_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEOPT_INVENTORY", str(tmp_path / "env.toml"))
    assert inventory.locate("x.toml") == Path("x.toml")
    assert inventory.locate() == tmp_path / "env.toml"
    monkeypatch.delenv("EDGEOPT_INVENTORY")
    assert inventory.locate() == Path("edgeopt.toml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[devices.a\naddress = 1",
            "not valid TOML: Expected ']' at the end of a table declaration (at line 1, column 11)",
        ),
        ("[devices.a]\nprofile = 'pi4'\n", "devices.a.address: missing required key 'address'"),
        ("[devices.a]\naddress = 50051\n", "devices.a.address: must be a string, got 50051"),
        ("[devices.a]\naddress = 'pi4.local'\n", "devices.a.address: must be HOST:PORT"),
        ("[devices.a]\naddress = 'h:1'\ntags = 'x'\n", "devices.a.tags: must be a list, got 'x'"),
        (
            "[devices.a]\naddress = 'h:1'\ntags = [1]\n",
            "devices.a.tags: must hold only strings, got 1 at index 0",
        ),
        ("devices = 3\n", "devices: must be a table, got 3"),
        (
            "[devices.a]\naddress = 'h:1'\n[groups]\nlab = ['a', 'b']\n",
            "groups.lab: names unknown device 'b' (known: a)",
        ),
    ],
)
def test_malformed_inventory_names_file_and_place(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "inv.toml"
    path.write_text(text)
    with pytest.raises(InventoryError) as info:
        inventory.load(path)
    assert str(info.value).startswith(f"{path}: {message}")
    assert info.value.path == str(path)


def test_unreadable_inventory(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match=r"inv.toml: cannot read: No such file or directory"):
        inventory.load(tmp_path / "inv.toml")


def test_token_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "inv.toml"
    path.write_text("[devices.a]\naddress = 'h:1'\ntoken_file = 'tok'\n")
    device = inventory.load(path).devices["a"]
    with pytest.raises(InventoryError, match="cannot read token file of device 'a'"):
        device.token()
    (tmp_path / "tok").write_text("  \n")
    with pytest.raises(InventoryError, match="token file of 'a' is empty"):
        device.token()
    (tmp_path / "tok").write_text("s3cret\n")
    assert device.token() == "s3cret"
