"""The inventory's TLS keys, and the host's client against real TLS agents on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edgeopt.host.cli import cli
from edgeopt.host.config import inventory
from edgeopt.host.config.inventory import TlsSettings
from edgeopt.host.errors import AgentUnavailable, InventoryError, TlsError
from edgeopt.host.transport import tls
from edgeopt.host.transport.client import AgentClient, ClientConfig
from tests.conftest import RunningAgent
from tests.pki import Pki

# --- the inventory ----------------------------------------------------------------------------

PIN = "sha256:" + "ab" * 32

TLS_INVENTORY = f"""
[tls]
ca = "certs/ca.pem"
client_cert = "certs/host.pem"
client_key = "certs/host.key"

[devices.a]
address = "10.0.0.7:50051"

[devices.b]
address = "10.0.0.8:50051"
ca = "/etc/b-ca.pem"
tls_pin = "{PIN.upper().replace("SHA256", "sha256")}"
server_name = "b.lan"

[devices.c]
address = "10.0.0.9:50051"
tls = false
"""


def test_inventory_tls_fleet_wide_and_per_device(tmp_path: Path) -> None:
    path = tmp_path / "edgeopt.toml"
    path.write_text(TLS_INVENTORY)
    inv = inventory.load(path)
    fleet = TlsSettings(ca=tmp_path / "certs/ca.pem", client_cert=tmp_path / "certs/host.pem",
                        client_key=tmp_path / "certs/host.key")  # fmt: skip
    assert inv.devices["a"].tls == fleet
    assert inv.devices["b"].tls == TlsSettings(
        ca=Path("/etc/b-ca.pem"), client_cert=fleet.client_cert, client_key=fleet.client_key,
        pin=PIN, server_name="b.lan",
    )  # fmt: skip
    assert inv.devices["c"].tls is None
    assert all(d.extra == {} for d in inv.devices.values())


def test_inventory_without_tls_keys_is_plaintext(tmp_path: Path) -> None:
    path = tmp_path / "edgeopt.toml"
    path.write_text('[devices.a]\naddress = "10.0.0.7:50051"\n[devices.b]\n'
                    'address = "10.0.0.8:50051"\ntls = true\n')  # fmt: skip
    inv = inventory.load(path)
    assert inv.devices["a"].tls is None
    assert inv.devices["b"].tls == TlsSettings()  # TLS with gRPC's default roots


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[devices.a]\naddress = "h:1"\ntls_pin = "md5:00"\n',
         'devices.a.tls_pin: must be "sha256:" and 64 hex digits'),
        (f'[devices.a]\naddress = "h:1"\ntls_pin = "{PIN[:-1]}"\n',
         'devices.a.tls_pin: must be "sha256:" and 64 hex digits'),
        (f'[tls]\ntls_pin = "{PIN}"\n[devices.a]\naddress = "h:1"\n',
         "tls.tls_pin: a pin names one board's certificate: set it per device"),
        ('[tls]\ncafile = "x"\n', "tls.cafile: unknown key (known: ca, client_cert, client_key, "
         "server_name)"),
        ('[tls]\nca = 1\n', "tls.ca: must be a string, got 1"),
        ('[devices.a]\naddress = "h:1"\nclient_cert = "c.pem"\n',
         "devices.a: client_cert and client_key go together"),
        ('[tls]\nclient_key = "k"\n[devices.a]\naddress = "h:1"\n',
         "devices.a: client_cert and client_key go together"),
        ('[devices.a]\naddress = "h:1"\ntls = "yes"\n', "devices.a.tls: must be bool, got 'yes'"),
    ],
)  # fmt: skip
def test_inventory_tls_mistakes(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "edgeopt.toml"
    path.write_text(text)
    with pytest.raises(InventoryError) as info:
        inventory.load(path)
    assert str(info.value).startswith(f"{path}: {message}")


# --- the client against real agents -------------------------------------------------------


def _caps(address: str, token: str | None, settings: TlsSettings | None, **kw: Any) -> str:
    async def go() -> str:
        async with AgentClient(address, token=token, device="dut", tls=settings, **kw) as client:
            return (await client.capabilities()).arch

    return asyncio.run(go())


def _refusal(address: str, settings: TlsSettings | None, token: str | None = None) -> str:
    with pytest.raises(AgentUnavailable) as info:
        _caps(address, token, settings, config=ClientConfig(deadline=20))
    assert info.value.device == "dut" and info.value.status == "UNAVAILABLE"
    return str(info.value)


def _tls_agent(factory: Callable[..., RunningAgent], cert: Path, key: Path, *extra: str,
               **kw: Any) -> RunningAgent:  # fmt: skip
    return factory("--tls-cert", str(cert), "--tls-key", str(key), *extra, **kw)


def test_client_over_tls_and_the_certificates_it_refuses(
    agent_factory: Callable[..., RunningAgent], fleet_pki: Pki
) -> None:
    agent = _tls_agent(agent_factory, fleet_pki.server_cert, fleet_pki.server_key)
    port = agent.address.rsplit(":", 1)[1]
    good = TlsSettings(ca=fleet_pki.ca)
    assert _caps(agent.address, agent.token, good)

    # Wrong CA.
    said = _refusal(agent.address, TlsSettings(ca=fleet_pki.other_ca), agent.token)
    assert said.startswith(
        f"dut: GetCapabilities: refusing the agent at {agent.address}: its certificate is not "
        "signed by the CA the inventory trusts (check the device's ca, server_name and tls_pin "
        "in the inventory; gRPC said: "
    )
    # Wrong name: "localhost" is not in the certificate (127.0.0.1 and board.test are).
    said = _refusal(f"localhost:{port}", good, agent.token)
    assert said.startswith(
        f"dut: GetCapabilities: refusing the agent at localhost:{port}: its certificate does "
        "not carry the name dialled (set server_name to one it does)"
    )
    said = _refusal(agent.address, TlsSettings(ca=fleet_pki.ca, server_name="other.test"))
    assert "its certificate does not carry the name dialled" in said
    # ... and server_name makes the name the certificate carries the one checked.
    assert _caps(
        f"localhost:{port}", agent.token, TlsSettings(ca=fleet_pki.ca, server_name="board.test")
    )
    # Plaintext to a TLS agent: refused, with a hint.
    said = _refusal(agent.address, None, agent.token)
    assert said.startswith(f"dut: GetCapabilities: cannot reach the agent at {agent.address}")
    assert "(the agent may want TLS, or a client certificate" in said


def test_client_with_tls_to_a_plaintext_agent(shared_agent: RunningAgent, fleet_pki: Pki) -> None:
    said = _refusal(shared_agent.address, TlsSettings(ca=fleet_pki.ca), shared_agent.token)
    assert said.startswith(
        f"dut: GetCapabilities: refusing the agent at {shared_agent.address}: the TLS handshake "
        "failed (does the agent serve TLS, with --tls-cert?)"
    )


def test_client_with_mutual_tls(agent_factory: Callable[..., RunningAgent], fleet_pki: Pki) -> None:
    agent = _tls_agent(agent_factory, fleet_pki.server_cert, fleet_pki.server_key,
                       "--client-ca", str(fleet_pki.ca))  # fmt: skip
    good = TlsSettings(ca=fleet_pki.ca, client_cert=fleet_pki.client_cert,
                       client_key=fleet_pki.client_key)  # fmt: skip
    assert _caps(agent.address, agent.token, good)
    said = _refusal(agent.address, TlsSettings(ca=fleet_pki.ca), agent.token)
    assert "(the agent may want TLS, or a client certificate" in said
    stranger = TlsSettings(ca=fleet_pki.ca, client_cert=fleet_pki.other_client_cert,
                           client_key=fleet_pki.other_client_key)  # fmt: skip
    said = _refusal(agent.address, stranger, agent.token)
    assert f"cannot reach the agent at {agent.address}" in said


def test_pinned_self_signed_agent(
    agent_factory: Callable[..., RunningAgent], fleet_pki: Pki, tmp_path: Path
) -> None:
    own = tls.self_signed("board", ["127.0.0.1"])
    cert, key = tls.write_issued(own, tmp_path / "self")
    agent = _tls_agent(agent_factory, cert, key)
    assert _caps(agent.address, agent.token, TlsSettings(pin=own.pin))

    wrong = "sha256:" + "0" * 64
    said = _refusal(agent.address, TlsSettings(pin=wrong), agent.token)
    assert said == (
        f"dut: the agent at {agent.address} presents a certificate with {own.pin}, but the "
        f"inventory pins {wrong}: refusing to talk to it (if the board's certificate was renewed "
        "on purpose, update its tls_pin) (UNAVAILABLE)"
    )
    # Nothing listens: said at once, with the reason.
    agent.stop()
    said = _refusal(agent.address, TlsSettings(pin=own.pin), agent.token)
    assert said.startswith(
        f"dut: cannot check the certificate pin of the agent at {agent.address}: no connection: "
    )


def test_pin_of_a_ca_issued_certificate(
    agent_factory: Callable[..., RunningAgent], fleet_pki: Pki
) -> None:
    agent = _tls_agent(agent_factory, fleet_pki.server_cert, fleet_pki.server_key)
    pin = tls.fingerprint(fleet_pki.server_cert.read_bytes())
    assert _caps(agent.address, agent.token, TlsSettings(ca=fleet_pki.ca, pin=pin))
    said = _refusal(agent.address, TlsSettings(pin=pin), agent.token)
    assert said == (
        f"dut: the pinned certificate of the agent at {agent.address} was issued by a CA: gRPC "
        "cannot trust it alone; give the device's `ca` too (UNAVAILABLE)"
    )


def test_cleartext_token_beyond_loopback_warns(caplog: pytest.LogCaptureFixture) -> None:
    async def make(address: str, token: str | None) -> None:
        async with AgentClient(address, token=token, device="far"):
            pass  # the channel connects lazily: nothing is sent

    with caplog.at_level(logging.WARNING, logger="edgeopt.host.transport.client"):
        asyncio.run(make("192.0.2.10:50051", "secret"))
        asyncio.run(make("192.0.2.10:50051", "secret"))  # once per address
        asyncio.run(make("127.0.0.1:50051", "secret"))
        asyncio.run(make("192.0.2.11:50051", None))  # no token, nothing secret to leak
    assert [r.getMessage() for r in caplog.records] == [
        "far: the agent's token travels in cleartext to 192.0.2.10:50051: anyone on the path "
        "can read it; turn on TLS (README: TLS and mutual TLS) or reach it over SSH"
    ]


def test_cli_reaches_a_mutual_tls_agent_through_the_inventory(
    agent_factory: Callable[..., RunningAgent], fleet_pki: Pki, tmp_path: Path
) -> None:
    agent = _tls_agent(agent_factory, fleet_pki.server_cert, fleet_pki.server_key,
                       "--client-ca", str(fleet_pki.ca))  # fmt: skip
    assert agent.token_file
    certs = tmp_path / "certs"
    certs.mkdir()
    for src in (fleet_pki.ca, fleet_pki.client_cert, fleet_pki.client_key):
        shutil.copy(src, certs / src.name)
    inv = tmp_path / "edgeopt.toml"
    inv.write_text(
        '[tls]\nca = "certs/ca.pem"\nclient_cert = "certs/host.pem"\n'
        'client_key = "certs/host.key"\n'
        f'[devices.board]\naddress = "{agent.address}"\ntoken_file = "{agent.token_file}"\n'
        f'[devices.plain]\naddress = "{agent.address}"\ntoken_file = "{agent.token_file}"\n'
        "tls = false\n"
    )
    done = CliRunner().invoke(cli, ["--inventory", str(inv), "--deadline", "20", "devices",
                                    "--json"])  # fmt: skip
    assert done.exit_code == 1, done.output  # "plain" is unreachable
    data = {d["name"]: d for d in json.loads(done.output)}
    assert data["board"]["reachable"] is True
    assert data["plain"]["reachable"] is False
    assert data["plain"]["error_status"] == "UNAVAILABLE"


def test_unreadable_tls_files_are_one_clear_error(fleet_pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(TlsError) as info:
        _caps("127.0.0.1:1", None, TlsSettings(ca=missing))
    assert str(info.value) == (
        f"cannot read the TLS ca file of device 'dut', {missing}: No such file or directory"
    )
    pinned = TlsSettings(pin="sha256:" + "0" * 64, client_cert=missing, client_key=missing)
    with pytest.raises(TlsError) as info:
        _caps("127.0.0.1:1", None, pinned)
    assert str(info.value) == (
        f"cannot read the TLS client_cert file of device 'dut', {missing}: "
        "No such file or directory"
    )
