"""A hostile board answering `edgeopt ssh facts`: a real sshd whose every command is a script that
prints what the test chose (ForceCommand), as a compromised board would. Nothing it prints may
write outside the host's temporary tree, reach the operator's terminal as escapes, end in a
traceback, or fill the host's memory."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from edgeopt.host.cli import cli
from edgeopt.host.transport.ssh import facts as remote
from edgeopt.host.transport.ssh.connection import printable
from tests import sshd

RS, US = remote.RS, remote.US


@dataclass
class Board:
    """The hostile board: what it prints for the facts script and for the runtime probe."""

    server: sshd.Sshd
    folder: Path

    @property
    def target(self) -> str:
        return f"root@127.0.0.1:{self.server.port}"

    def answer(self, facts: bytes, probe: bytes = b"") -> None:
        (self.folder / "facts.out").write_bytes(facts)
        (self.folder / "probe.out").write_bytes(probe)


@pytest.fixture(scope="module")
def board() -> Iterator[Board]:
    reason = sshd.unavailable_reason()
    if reason:
        pytest.skip(reason)
    folder = Path(tempfile.mkdtemp(prefix="edgeopt-hostile-"))
    script = folder / "board.sh"
    # Every command the host runs gets the prepared answer: the probe's for `python3 -`, the
    # facts' for anything else.
    script.write_text(
        '#!/bin/sh\ncase "$SSH_ORIGINAL_COMMAND" in\n'
        f'  "python3 -"*) cat {folder}/probe.out ;;\n  *) cat {folder}/facts.out ;;\nesac\n'
    )
    script.chmod(0o755)
    try:
        with sshd.Sshd(folder / "sshd", extra=f"ForceCommand {script}\n") as server:
            yield Board(server, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def honest() -> tuple[bytes, bytes]:
    """What this machine, an honest board, prints for the facts script and the probe."""
    facts = subprocess.run(["sh", "-c", remote.facts_script()], capture_output=True, check=True)
    probe = subprocess.run(["python3", "-"], input=remote.probe_program(), capture_output=True,
                           check=True)  # fmt: skip
    return facts.stdout, probe.stdout


def record(name: str, text: str | bytes) -> bytes:
    body = text.encode() if isinstance(text, str) else text
    return f"{RS}{name}{US}".encode() + body


def facts(board: Board, tmp_path: Path, *more: str) -> Result:
    home = sshd.client_home(tmp_path, board.server)
    return CliRunner(env={"HOME": str(home), "SSH_AUTH_SOCK": ""}).invoke(
        cli, ["ssh", "facts", board.target, *more]
    )


def with_commands(real: bytes, **answers: str) -> bytes:
    """`real` with the command facts named in `answers` replaced."""
    head, _, _ = real.partition(f"{RS}=".encode())
    wanted = {name: answers.get(name) for name in remote.COMMANDS}
    tail = b""
    for name, value in wanted.items():
        if value is None:
            start = real.index(f"{RS}={name}{US}".encode())
            end = real.find(RS.encode(), start + 1)
            tail += real[start : end if end >= 0 else len(real)]
        else:
            tail += record(f"={name}", value)
    return head + tail


def test_records_naming_paths_outside_the_probes_are_dropped_and_nothing_escapes(
    board: Board, honest: tuple[bytes, bytes], tmp_path: Path
) -> None:
    escape = "/" + "../" * 24 + str(tmp_path / "escaped").lstrip("/")
    outside = str(tmp_path / "home" / ".ssh" / "authorized_keys")
    zone = "/sys/class/thermal/thermal_zone0/../../../../" + str(tmp_path / "zone").lstrip("/")
    hostile = [
        record(escape, "pwned\n"),
        record(outside, "ssh-ed25519 AAAAC3Nza evil@board\n"),
        record(zone, "1\n"),
        record("/proc/cpuinfo", "processor : 0\n"),  # a second cpuinfo: the first one counts
        record("=evil", "1\n"),
    ]
    facts_out, probe_out = honest
    board.answer(facts_out + b"".join(hostile), probe_out)
    result = facts(board, tmp_path, "--json")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "escaped").exists()
    assert not (tmp_path / "zone").exists()
    assert (tmp_path / "home" / ".ssh").is_dir() and not Path(outside).exists()
    out = json.loads(result.stdout)
    assert out["warnings"] == [
        f"dropped a record the facts do not read: {escape!r}",
        f"dropped a record the facts do not read: {outside!r}",
        f"dropped a record the facts do not read: {zone!r}",
        "dropped a second record named '/proc/cpuinfo'",
        "dropped a record the facts do not read: '=evil'",
    ]
    assert result.stderr.splitlines() == [f"warning: {board.target}: {w}" for w in out["warnings"]]
    # The first cpuinfo was the machine's own: the report is still the honest board's.
    assert out["capabilities"]["logical_cores"] > 0 and out["capabilities"]["cpu_model"]


def test_the_board_cannot_rewrite_the_operators_terminal(
    board: Board, honest: tuple[bytes, bytes], tmp_path: Path
) -> None:
    facts_out, probe_out = honest
    evil_model = "\x1b]0;owned\x07Evil\x1b[2J\x1b[1;1H CPU\u202e\x9b31m"
    lines = [
        f"model name\t: {evil_model}" if line.startswith(b"model name") else line.decode()
        for line in facts_out.split(b"\n")
    ]
    tampered = "\n".join(lines).encode()
    evil_host = "host\x1b]2;title\x07name"
    board.answer(with_commands(tampered, hostname=evil_host), probe_out)
    result = facts(board, tmp_path)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x9b" not in result.output
    assert "\u202e" not in result.output and "\x07" not in result.output
    assert "Evil CPU" in result.stdout
    assert result.stderr == (f"warning: {board.target}: ignored the board's hostname answer "
                             "'hostname'\n")  # fmt: skip


def test_garbage_command_answers_are_ignored_with_a_warning(
    board: Board, honest: tuple[bytes, bytes], tmp_path: Path
) -> None:
    facts_out, probe_out = honest
    answers = {"nproc": "²\n", "df": "/dev/x 10 5 ³ 50% /\n", "uname": "x86_64; rm -rf /\n",
               "libc": "glibc 2.36\x1b[2J\n", "python": "3.11.2\nInjected: yes\n"}  # fmt: skip
    board.answer(with_commands(facts_out, **answers), probe_out)
    result = facts(board, tmp_path, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    caps = out["capabilities"]
    assert caps["usable_cores"] is None and out["home_free_bytes"] is None
    assert caps["libc"] == "" and caps["python_version"] == ""
    assert caps["onnxruntime"]["error"] == "the board has no python3"
    assert out["warnings"] == [
        "ignored the board's python answer '3.11.2 Injected: yes'",
        "ignored the board's nproc answer '²'",
        "ignored the board's uname answer 'x86_64; rm -rf /'",
        "ignored the board's libc answer 'glibc 2.36'",
    ]


@pytest.mark.parametrize(
    ("probe", "error"),
    [
        ("not json at all", "something that is not JSON: 'not json at all'"),
        ("[1, 2]", "list JSON, not an object"),
        ('{"version": 5, "max_ir_version": 10, "max_opset": 21, "execution_providers": [], '
         '"error": ""}', "version = 5 (wanted: a small str)"),
        ('{"version": "1.20.0", "max_ir_version": 10, "max_opset": 21, '
         '"execution_providers": ["CPUExecutionProvider"], "error": "", "evil": 1}',
         "the fields ['error', 'evil', 'execution_providers', 'max_ir_version', 'max_opset', "
         "'version'], not ['error', 'execution_providers', 'max_ir_version', 'max_opset', "
         "'version']"),
        ('{"version": "1.20.0", "max_ir_version": 10, "max_opset": 21, '
         '"execution_providers": [{"a": 1}], "error": ""}',
         "execution_providers = [{'a': 1}] (wanted: a small list or NoneType)"),
        ('{"version": "1.20.0", "max_ir_version": 1e400, "max_opset": 21, '
         '"execution_providers": [], "error": ""}',
         "max_ir_version = inf (wanted: a small int or NoneType)"),
    ],
)  # fmt: skip
def test_a_garbled_runtime_probe_is_an_error_in_the_report_not_a_traceback(
    probe: str, error: str, board: Board, honest: tuple[bytes, bytes], tmp_path: Path
) -> None:
    board.answer(honest[0], probe.encode())
    result = facts(board, tmp_path, "--json")
    assert result.exit_code == 0, result.output
    ort = json.loads(result.stdout)["capabilities"]["onnxruntime"]
    assert ort == {"version": "", "max_ir_version": None, "max_opset": None,
                   "execution_providers": [],
                   "error": f"the board's onnxruntime probe printed {error}"}  # fmt: skip


def test_a_board_printing_without_end_is_cut_off(
    board: Board, honest: tuple[bytes, bytes], tmp_path: Path
) -> None:
    board.answer(honest[0] + record("/proc/meminfo", b"x" * (remote.MAX_FACTS_BYTES + 1)))
    result = facts(board, tmp_path)
    assert result.exit_code == 1
    first = printable(remote.facts_script()[:80])
    assert result.output == (
        f"Error: {board.target}: `{first}` printed more than {remote.MAX_FACTS_BYTES} bytes on "
        "stdout: cut off (a board's answer is capped so that it cannot fill this machine's "
        "memory)\n"
    )


def test_a_board_naming_too_many_files_is_refused(
    board: Board, honest: tuple[bytes, bytes], tmp_path: Path
) -> None:
    many = b"".join(record(f"/sys/class/thermal/thermal_zone{n}/temp", "1\n")
                    for n in range(remote.MAX_RECORDS))  # fmt: skip
    board.answer(honest[0] + many, honest[1])
    result = facts(board, tmp_path)
    assert result.exit_code == 1
    named = honest[0].count(RS.encode()) + remote.MAX_RECORDS
    assert result.output == (
        f"Error: {board.target}: the board named {named} files; refused (the probes read at "
        f"most {remote.MAX_RECORDS})\n"
    )


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("proc/cpuinfo", True),
        ("sys/devices/system/cpu/cpu12/cpufreq/cpuinfo_max_freq", True),
        ("sys/class/thermal/thermal_zone3/temp", True),
        ("etc/machine-id", True),
        ("sys/devices/system/cpu/cpu1/../../cpufreq/cpuinfo_max_freq", False),
        ("sys/class/thermal/thermal_zone/../temp", False),
        ("sys/class/thermal/thermal_zone0/x/temp", False),  # a * never spans a /
        ("proc//cpuinfo", False),
        ("./proc/cpuinfo", False),
        ("proc/cpuinfo\n", False),
        ("root/.ssh/authorized_keys", False),
        ("", False),
    ],
)
def test_only_the_files_the_probes_read_are_expected(name: str, ok: bool) -> None:
    assert remote.expected(name) is ok
