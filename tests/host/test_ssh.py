"""SSH to a real OpenSSH sshd on loopback: ~/.ssh/config, host keys, keys, and facts with no
agent, which must be the agent's own report of the same machine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from edgeopt.boardfacts import capabilities as board_caps
from edgeopt.host.cli import cli
from edgeopt.proto.capabilities import from_dict
from tests import sshd

UNPRIVILEGED = sshd.UNPRIVILEGED


@pytest.fixture(scope="module")
def user_server() -> Iterator[sshd.Sshd]:
    """sshd accepting a key for an unprivileged user (created here when root)."""
    reason = sshd.unavailable_reason()
    if reason:
        pytest.skip(reason)
    problem = sshd.ensure_user(UNPRIVILEGED)
    if problem:
        pytest.skip(problem)
    # sshd reads the user's authorized keys as that user: pytest's folders are root's alone.
    folder = Path(tempfile.mkdtemp(prefix="edgeopt-sshd-"))
    folder.chmod(0o755)
    try:
        with sshd.Sshd(folder, user=UNPRIVILEGED) as running:
            yield running
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def home_with(tmp_path: Path, config: str = "", known: str = "") -> Path:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    (home / ".ssh" / "config").write_text(config)
    if known:
        (home / ".ssh" / "known_hosts").write_text(known)
    return home


def edgeopt(home: Path, *args: str) -> Result:
    return CliRunner(env={"HOME": str(home), "SSH_AUTH_SOCK": ""}).invoke(cli, list(args))


def host_pub(server: sshd.Sshd) -> str:
    return sshd.known_hosts_line(server).split(" ", 1)[1].strip()


def openssh_fingerprint(pub: Path) -> str:
    return subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True,
                          check=True).stdout.split()[1]  # fmt: skip


def test_facts_over_ssh_are_the_agents_report_of_the_same_machine(
    sshd_server: sshd.Sshd, tmp_path: Path
) -> None:
    home = home_with(tmp_path, known=f"[127.0.0.1]:{sshd_server.port} {host_pub(sshd_server)}\n")
    result = edgeopt(home, "ssh", "facts", f"root@127.0.0.1:{sshd_server.port}", "-i",
                     str(sshd_server.client_key), "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["target"] == f"root@127.0.0.1:{sshd_server.port}"
    remote = from_dict(out["capabilities"])
    local = board_caps.collect(board_caps.Sources.live_system())
    for name in ("arch", "cpu_vendor", "cpu_model", "physical_cores", "logical_cores",
                 "clusters", "isa_features", "memory_total_bytes", "board_model", "os_name",
                 "kernel", "device_id", "cpu_governor", "libc"):  # fmt: skip
        assert getattr(remote, name) == getattr(local, name), name
    assert remote.usable_cores == len(os.sched_getaffinity(0))
    assert remote.python_version.startswith("3.")
    assert remote.agent_version == "" and remote.fingerprint
    assert out["home_free_bytes"] > 0
    # ONNX Runtime: the board's python3 was asked (with or without onnxruntime installed).
    ort = remote.onnxruntime
    assert ort.version or ort.error.startswith("cannot import onnxruntime")


def test_an_unknown_host_is_refused_and_accept_new_records_it(
    sshd_server: sshd.Sshd, tmp_path: Path
) -> None:
    home = home_with(tmp_path)
    target = f"root@127.0.0.1:{sshd_server.port}"
    refused = edgeopt(home, "ssh", "facts", target, "-i", str(sshd_server.client_key))
    fp = openssh_fingerprint(sshd_server.folder / "host_ed25519.pub")
    assert refused.exit_code == 1
    assert refused.output.strip() == (
        f"Error: {target}: unknown host key ssh-ed25519 {fp} (not in {home}/.ssh/known_hosts); "
        "check it, then connect again with --accept-new-host-key to record it"
    )
    assert not (home / ".ssh" / "known_hosts").exists()
    accepted = edgeopt(home, "ssh", "facts", target, "-i", str(sshd_server.client_key),
                       "--accept-new-host-key")  # fmt: skip
    assert accepted.exit_code == 0, accepted.output
    recorded = (home / ".ssh" / "known_hosts").read_text()
    assert recorded == f"[127.0.0.1]:{sshd_server.port} {host_pub(sshd_server)}\n"
    again = edgeopt(home, "ssh", "facts", target, "-i", str(sshd_server.client_key))
    assert again.exit_code == 0, again.output


def test_a_changed_host_key_is_refused_with_both_fingerprints(
    sshd_server: sshd.Sshd, tmp_path: Path
) -> None:
    other = tmp_path / "other_host"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kind, blob = other.with_suffix(".pub").read_text().split()[:2]
    home = home_with(tmp_path, known=f"[127.0.0.1]:{sshd_server.port} {kind} {blob}\n")
    target = f"root@127.0.0.1:{sshd_server.port}"
    result = edgeopt(home, "ssh", "facts", target, "-i", str(sshd_server.client_key),
                     "--accept-new-host-key")  # fmt: skip
    assert result.exit_code == 1
    old, new = (
        openssh_fingerprint(other.with_suffix(".pub")),
        openssh_fingerprint(sshd_server.folder / "host_ed25519.pub"),
    )
    assert result.output.strip() == (
        f"Error: {target}: the host key CHANGED: known_hosts has ssh-ed25519 {old}, the server "
        f"offers ssh-ed25519 {new}. Refused: if the board was reinstalled, remove its old entry "
        f"from {home}/.ssh/known_hosts"
    )
    assert (home / ".ssh" / "known_hosts").read_text().count("\n") == 1  # nothing added


def test_a_wrong_key_is_refused(sshd_server: sshd.Sshd, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    home = home_with(tmp_path, known=f"[127.0.0.1]:{sshd_server.port} {host_pub(sshd_server)}\n")
    target = f"root@127.0.0.1:{sshd_server.port}"
    result = edgeopt(home, "ssh", "facts", target, "-i", str(wrong))
    assert result.exit_code == 1
    assert result.output.startswith(
        f"Error: {target}: no key was accepted (tried {wrong}): Authentication failed"
    )


def test_config_aliases_identity_files_and_a_proxy_jump(
    sshd_server: sshd.Sshd, tmp_path: Path
) -> None:
    config = (
        f"Host jumpbox\n  HostName 127.0.0.1\n  Port {sshd_server.port}\n  User root\n"
        f"  IdentityFile {sshd_server.client_key}\n"
        f"Host board\n  HostName 127.0.0.1\n  Port {sshd_server.port}\n  User root\n"
        f"  IdentityFile {sshd_server.client_key}\n"
        "Host hidden-board\n  HostName 127.0.0.1\n"
        f"  Port {sshd_server.port}\n  User root\n  IdentityFile {sshd_server.client_key}\n"
        "  ProxyJump jumpbox\n"
    )
    home = home_with(tmp_path, config=config,
                     known=f"[127.0.0.1]:{sshd_server.port} {host_pub(sshd_server)}\n")  # fmt: skip
    direct = edgeopt(home, "ssh", "facts", "board", "--json")
    assert direct.exit_code == 0, direct.output
    assert json.loads(direct.stdout)["target"] == f"root@127.0.0.1:{sshd_server.port}"
    jumped = edgeopt(home, "ssh", "facts", "hidden-board", "--json")
    assert jumped.exit_code == 0, jumped.output
    assert (
        json.loads(jumped.stdout)["capabilities"]["arch"]
        == json.loads(direct.stdout)["capabilities"]["arch"]
    )


def test_facts_as_an_unprivileged_user(user_server: sshd.Sshd, tmp_path: Path) -> None:
    home = home_with(tmp_path, known=f"[127.0.0.1]:{user_server.port} {host_pub(user_server)}\n")
    result = edgeopt(home, "ssh", "facts", f"{UNPRIVILEGED}@127.0.0.1:{user_server.port}",
                     "-i", str(user_server.client_key), "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    caps = json.loads(result.stdout)["capabilities"]
    assert caps["arch"] and caps["memory_total_bytes"] > 0


def test_an_unreachable_board_is_one_clear_line(tmp_path: Path, free_port: int) -> None:
    home = home_with(tmp_path)
    result = edgeopt(home, "ssh", "facts", f"root@127.0.0.1:{free_port}")
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: root@127.0.0.1:{free_port}: cannot connect: Connection refused"
    )
