"""The fleet CA (edgeopt.host.transport.tls) and `edgeopt tls`."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from edgeopt.host.cli import cli
from edgeopt.host.errors import TlsError
from edgeopt.host.transport import tls
from tests.pki import Pki

# --- the fleet CA ------------------------------------------------------------------------------


def test_init_ca_writes_a_ca_and_a_private_key(tmp_path: Path) -> None:
    ca = tls.init_ca(tmp_path / "ca")
    assert stat.S_IMODE(ca.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(ca.cert.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "ca").stat().st_mode) == 0o700
    cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert {p.name for p in (tmp_path / "ca").iterdir()} == {"ca.pem", "ca.key"}


def test_init_ca_refuses_to_replace_a_ca(tmp_path: Path) -> None:
    ca = tls.init_ca(tmp_path)
    before = ca.key.read_bytes(), ca.cert.read_bytes()
    with pytest.raises(TlsError) as info:
        tls.init_ca(tmp_path)
    assert str(info.value) == (
        f"{tmp_path} already holds a fleet CA (ca.pem, ca.key); issue certificates with it, "
        "or choose another --dir"
    )
    assert (ca.key.read_bytes(), ca.cert.read_bytes()) == before


def test_issue_a_server_and_a_client_certificate(fleet_pki: Pki, tmp_path: Path) -> None:
    server = tls.issue(fleet_pki.ca_dir, "pi4", ["10.0.0.7", "pi4.lan"])
    cert = x509.load_pem_x509_certificate(server.cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]
    assert san.get_values_for_type(x509.DNSName) == ["pi4.lan"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert tls.names_in(server.cert_pem) == ["10.0.0.7", "pi4.lan", "pi4"]
    ca = x509.load_pem_x509_certificate(fleet_pki.ca.read_bytes())
    cert.verify_directly_issued_by(ca)  # raises unless the fleet CA signed it

    client = tls.issue(fleet_pki.ca_dir, "host", client=True)
    cert = x509.load_pem_x509_certificate(client.cert_pem)
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]

    path, key = tls.write_issued(server, tmp_path / "out")
    assert (path, key) == (tmp_path / "out" / "pi4.pem", tmp_path / "out" / "pi4.key")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert path.read_bytes() == server.cert_pem and key.read_bytes() == server.key_pem
    assert (tmp_path / "out" / "ca.pem").read_bytes() == fleet_pki.ca.read_bytes()
    assert server.pin == tls.fingerprint(path.read_bytes())
    assert server.pin.startswith("sha256:") and len(server.pin) == 7 + 64


@pytest.mark.parametrize(
    ("hosts", "client", "message"),
    [
        ((), False, "a server certificate for 'pi4' needs the board's addresses: give --host"),
        (("pi4 lan",), False, "--host wants an IP address or a DNS name, got 'pi4 lan'"),
        (("10.0.0.7:50051",), False, "--host wants an IP address or a DNS name"),
    ],
)
def test_issue_refuses_bad_hosts(
    fleet_pki: Pki, hosts: tuple[str, ...], client: bool, message: str
) -> None:
    with pytest.raises(TlsError) as info:
        tls.issue(fleet_pki.ca_dir, "pi4", hosts, client=client)
    assert message in str(info.value)


def test_issue_without_a_ca_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(TlsError) as info:
        tls.issue(tmp_path, "pi4", ["10.0.0.7"])
    assert str(info.value).startswith(f"no fleet CA in {tmp_path} (No such file or directory)")
    assert str(info.value).endswith("make one with `edgeopt tls init`")


def test_cli_init_and_issue(tmp_path: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(cli, ["tls", "init", "--dir", str(tmp_path / "ca"), "--json"])
    assert done.exit_code == 0, done.output
    made = json.loads(done.output)
    assert made["cert"] == str(tmp_path / "ca" / "ca.pem")
    assert made["sha256"] == tls.fingerprint((tmp_path / "ca" / "ca.pem").read_bytes())

    done = runner.invoke(cli, ["tls", "issue", "pi4", "--host", "10.0.0.7", "--host", "pi4.lan",
                               "--dir", str(tmp_path / "ca"), "--json"])  # fmt: skip
    assert done.exit_code == 0, done.output
    issued = json.loads(done.output)
    out = tmp_path / "ca" / "issued"
    assert issued == {
        "name": "pi4", "client": False, "hosts": ["10.0.0.7", "pi4.lan"],
        "cert": str(out / "pi4.pem"), "key": str(out / "pi4.key"), "ca": str(out / "ca.pem"),
        "sha256": tls.fingerprint((out / "pi4.pem").read_bytes()),
    }  # fmt: skip

    done = runner.invoke(cli, ["tls", "init", "--dir", str(tmp_path / "ca")])
    assert done.exit_code == 1
    assert "already holds a fleet CA" in done.output
    done = runner.invoke(cli, ["tls", "issue", "h", "--client", "--host", "x",
                               "--dir", str(tmp_path / "ca")])  # fmt: skip
    assert done.exit_code == 2
    assert "--client certificates name no --host" in done.output
    done = runner.invoke(cli, ["tls", "issue", "pi4", "--dir", str(tmp_path / "nothing")])
    assert done.exit_code == 1
    assert "Error: a server certificate for 'pi4' needs the board's addresses" in done.output
