"""`edgeopt profile`: through a real agent, and one-shot over a real sshd with the board's own
Python and ONNX Runtime (here: the old ONNX Runtime 1.16.3 of the test set-up)."""

from __future__ import annotations

import glob
import json
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner, Result

from edgeopt.host.cli import cli
from tests import sshd
from tests.cli.test_deploy import inventory
from tests.conftest import RunningAgent
from tests.models import DigitsModel

OLD_ORT = Path(__file__).resolve().parents[2] / ".venv" / "ort-1.16.3" / "bin" / "python"


def edgeopt(tmp_path: Path, *args: str, home: Path | None = None) -> Result:
    base = ["--inventory", str(tmp_path / "edgeopt.toml"), "--state", str(tmp_path / "s.db")]
    env = {"HOME": str(home)} if home else {}
    return CliRunner(env=env).invoke(cli, [*base, *args], catch_exceptions=False)


def check_figures(out: dict[str, object], runs: int) -> None:
    assert out["runs"] == runs
    nodes = out["nodes"]
    assert isinstance(nodes, list) and nodes
    assert {n["op_type"] for n in nodes} >= {"Conv", "Gemm"}
    assert all(n["calls"] == runs and n["provider"] == "CPUExecutionProvider" for n in nodes)
    assert sum(n["share"] for n in nodes) == pytest.approx(1.0)
    totals = [n["total_ms"] for n in nodes]
    assert totals == sorted(totals, reverse=True)


def test_profile_through_the_agent(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel, tmp_path: Path
) -> None:
    inventory(tmp_path, {"a": agent_factory(name="a")})
    trace, png = tmp_path / "trace.json", tmp_path / "ops.png"
    result = edgeopt(tmp_path, "profile", str(digits.onnx), "--device", "a", "--runs", "10",
                     "--warmup", "2", "--inputs", str(digits.validation), "--trace", str(trace),
                     "--plot", str(png), "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    check_figures(out, 10)
    assert out["where"].startswith("a (agent, ONNX Runtime ")
    events = json.loads(trace.read_text())  # Chrome trace JSON, as Perfetto opens it
    assert sum(e.get("name") == "model_run" for e in events) == 12  # warm-up runs included
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = edgeopt(tmp_path, "profile", str(digits.onnx), "--device", "a", "--runs", "5")
    assert text.exit_code == 0, text.output
    assert "OP TYPE" in text.output and "Conv" in text.output


def test_profile_one_shot_over_ssh_leaves_nothing_behind(
    sshd_server: sshd.Sshd, digits: DigitsModel, tmp_path: Path
) -> None:
    if not OLD_ORT.exists():
        pytest.fail(f"{OLD_ORT} missing: `make test` builds it (Makefile target ORT_OLD)")
    home = sshd.client_home(tmp_path, sshd_server)
    before = set(glob.glob("/tmp/edgeopt-profile.*"))
    target, key = f"root@127.0.0.1:{sshd_server.port}", str(sshd_server.client_key)
    result = edgeopt(tmp_path, "profile", str(digits.onnx), "--ssh", target, "-i", key,
                     "--python", str(OLD_ORT), "--runs", "8", "--json", home=home)  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["where"] == f"root@127.0.0.1:{sshd_server.port} (one-shot, ONNX Runtime 1.16.3)"
    check_figures(out, 8)
    assert set(glob.glob("/tmp/edgeopt-profile.*")) == before


def test_a_model_the_boards_runtime_cannot_load_is_named(
    sshd_server: sshd.Sshd, digits: DigitsModel, tmp_path: Path
) -> None:
    if not OLD_ORT.exists():
        pytest.fail(f"{OLD_ORT} missing: `make test` builds it (Makefile target ORT_OLD)")
    model = onnx.load(str(digits.onnx))
    model.ir_version = 10  # ONNX Runtime 1.16 reads IR 9 at most
    newer = tmp_path / "ir10.onnx"
    onnx.save(model, str(newer))
    home = sshd.client_home(tmp_path, sshd_server)
    before = set(glob.glob("/tmp/edgeopt-profile.*"))
    target, key = f"root@127.0.0.1:{sshd_server.port}", str(sshd_server.client_key)
    result = edgeopt(tmp_path, "profile", str(newer), "--ssh", target, "-i", key, "--python",
                     str(OLD_ORT), home=home)  # fmt: skip
    assert result.exit_code == 1
    assert (f"Error: {target}: profiling failed: ONNX Runtime 1.16.3 cannot load the model: "
            ) in result.output  # fmt: skip
    assert "Unsupported model IR version: 10, max supported IR version: 9" in result.output
    assert set(glob.glob("/tmp/edgeopt-profile.*")) == before


def test_a_board_python_without_onnxruntime_is_named(
    sshd_server: sshd.Sshd, digits: DigitsModel, tmp_path: Path
) -> None:
    home = sshd.client_home(tmp_path, sshd_server)
    bare = tmp_path / "bare"
    import venv

    venv.create(bare, with_pip=False)  # a real Python with nothing installed
    target, key = f"root@127.0.0.1:{sshd_server.port}", str(sshd_server.client_key)
    result = edgeopt(tmp_path, "profile", str(digits.onnx), "--ssh", target, "-i", key,
                     "--python", str(bare / "bin" / "python"), home=home)  # fmt: skip
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: root@127.0.0.1:{sshd_server.port}: profiling failed: the board's "
        f"{bare}/bin/python has no onnxruntime (pip install onnxruntime)"
    )


@pytest.mark.parametrize(
    ("printed", "said"),
    [
        ('{"trace": "/etc/hostname", "onnxruntime": "1", "machine": "", "kernel_arch": ""}',
         "the board named a trace outside its profiling folder: '/etc/hostname'"),
        ('{"trace": "FOLDER/../../etc/hostname", "onnxruntime": "1"}',
         "the board named a trace outside its profiling folder: '/etc/hostname'"),
        ("\x1b[2Jnot json", "the profiling script's answer is not what it prints: 'not json'"),
        ('{"trace": 7}', "the profiling script's answer is not what it prints"),
        ('{"trace": "FOLDER/trace-x.json", "onnxruntime": "1"}',
         "the board's trace is not ONNX Runtime's: not a list of trace events"),
    ],
)  # fmt: skip
def test_a_board_that_answers_what_it_likes_gets_nothing_read(
    sshd_server: sshd.Sshd, digits: DigitsModel, tmp_path: Path, printed: str, said: str
) -> None:
    """The board's "python" prints a hostile answer: the host reads no file it names outside
    the profiling folder, and says so in one line."""
    home = sshd.client_home(tmp_path, sshd_server)
    fake = tmp_path / "python"
    fake.write_text(
        "#!/bin/sh\nfolder=$(pwd)\n"
        'printf \'{"not": "events"}\' > "$folder/trace-x.json"\n'
        f"printf '%s\\n' '{printed}' | sed \"s#FOLDER#$folder#\"\n"
    )
    fake.chmod(0o755)
    target, key = f"root@127.0.0.1:{sshd_server.port}", str(sshd_server.client_key)
    result = edgeopt(tmp_path, "profile", str(digits.onnx), "--ssh", target, "-i", key,
                     "--python", str(fake), home=home)  # fmt: skip
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"Error: {target}: {said}"), result.output
    assert "Traceback" not in result.output


def test_nodes_that_left_the_asked_provider_are_named() -> None:
    from edgeopt.proto import profiling

    events = [
        {"cat": "Session", "name": "model_run", "ts": 0, "dur": 1000},
        {"cat": "Node", "name": "conv_kernel_time", "ts": 10, "dur": 600,
         "args": {"op_name": "Conv", "provider": "CUDAExecutionProvider"}},
        {"cat": "Node", "name": "nms_kernel_time", "ts": 700, "dur": 200,
         "args": {"op_name": "NonMaxSuppression", "provider": "CPUExecutionProvider"}},
    ]  # fmt: skip
    figures = profiling.aggregate(events)
    assert [n["node"] for n in figures["nodes"]] == ["conv", "nms"]
    assert figures["nodes"][0]["share"] == pytest.approx(0.75)
    assert (figures["runs"], figures["run_ms"], figures["node_ms"]) == (1, 1.0, 0.8)
    fell = profiling.fallbacks(figures["nodes"], "CUDAExecutionProvider")
    assert [n["node"] for n in fell] == ["nms"]
    assert profiling.fallbacks(figures["nodes"], "CPUExecutionProvider") == []
