"""`edgeopt compress` and `edgeopt cache` through CliRunner, on the real digits CNN."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from edgeopt.host.cli import cli
from tests.host.compress.test_wild import if_model
from tests.models import DigitsModel


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_compress_writes_and_reports(digits: DigitsModel, tmp_path: Path) -> None:
    out = tmp_path / "m.int8.onnx"
    result = _run("compress", str(digits.onnx), "--precision", "int8-static",
                  "--calibration", str(digits.calibration), "--validate", str(digits.validation),
                  "--max-accuracy-drop", "0.01", "-o", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert out.is_file()
    text = result.output
    assert f"{digits.onnx} -> int8-static" in text
    for label in ("size", "parameters", "MACs", "sparsity", "vs fp32", "accuracy", "time",
                  "artifact"):  # fmt: skip
        assert f"  {label}" in text
    again = _run("compress", str(digits.onnx), "--precision", "int8-static",
                 "--calibration", str(digits.calibration), "--json")  # fmt: skip
    data = json.loads(again.output)
    assert data["cached"] is True and data["steps"][0]["cached"] is True
    assert data["after"]["size_bytes"] < data["before"]["size_bytes"]


def test_a_labels_model_is_reported_and_gated_by_label_agreement(
    digits: DigitsModel, tmp_path: Path
) -> None:
    """The digits CNN outputting only its ArgMax labels: the report and the gate say label
    agreement, not cosine, and a gate it misses writes nothing."""
    import onnx

    from tests.models import labels_only

    labelled = labels_only(onnx.load(str(digits.onnx)), tmp_path / "labels.onnx")
    common = ("compress", str(labelled), "--precision", "int8-static", "--calibration",
              str(digits.calibration), "--validate", str(digits.validation))  # fmt: skip
    result = _run(*common)
    assert result.exit_code == 0, result.output
    assert re.search(r"\n  vs fp32     label agreement [01]\.\d{4}, max \|err\| ", result.output)
    assert "top-1" not in result.output and "cosine" not in result.output
    out = tmp_path / "x.onnx"
    missed = _run(*common, "--min-cosine", "1.01", "-o", str(out))
    assert missed.exit_code == 1
    assert "Error: int8-static fails the gate: label agreement (labels have no cosine: " in (
        missed.output
    )
    assert not out.exists()


def test_gate_failure_exit_status_and_message(digits: DigitsModel, tmp_path: Path) -> None:
    out = tmp_path / "x.onnx"
    result = _run("compress", str(digits.onnx), "--precision", "int8-dynamic",
                  "--validate", str(digits.validation), "--min-cosine", "0.9999999",
                  "-o", str(out))  # fmt: skip
    assert result.exit_code == 1
    assert "Error: int8-dynamic fails the gate: cosine similarity" in result.output
    assert not out.exists()


def test_gate_needs_validation_data(digits: DigitsModel) -> None:
    result = _run("compress", str(digits.onnx), "--min-cosine", "0.99")
    assert result.exit_code == 2
    assert "an accuracy gate needs --validate DATA.npz" in result.output


def test_sweep_table_and_cache_commands(digits: DigitsModel) -> None:
    result = _run("compress", str(digits.onnx), "--sweep", "--validate", str(digits.validation))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["PRECISION", "SIZE", "OF", "FP32", "WEIGHTS", "CONVERTED",
                                "COSINE", "TOP-1", "HOST", "1T", "VERDICT"]  # fmt: skip
    assert any(line.startswith("int8-static") and "needs --calibration" in line for line in lines)
    # Host latency of every variant made, as a ratio to fp32 measured in the same run.
    fp32 = next(line for line in lines if line.startswith("fp32"))
    assert "(1.00x)" in fp32
    assert re.search(r"int8-dynamic .* ms \(\d+\.\d\dx\)", result.output)
    assert lines[-1].startswith("host: ") and "CPUs" in lines[-1]
    listing = json.loads(_run("cache", "ls", "--json").output)
    assert {e["pass"] for e in listing} == {"normalize", "fp16", "int8-dynamic"}
    cleared = _run("cache", "clear")
    assert cleared.output.startswith("removed 3 artifacts")
    assert json.loads(_run("cache", "ls", "--json").output) == []


def test_sweep_adds_a_mixed_row_where_a_precision_fails_the_gate(digits: DigitsModel) -> None:
    common = ["compress", str(digits.onnx), "--sweep", "--validate", str(digits.validation),
              "--calibration", str(digits.calibration)]  # fmt: skip
    plain = json.loads(_run(*common, "--json", "--threads", "0").output)
    static = next(r for r in plain if r["precision"] == "int8-static")
    cosine = static["report"]["validation"]["cosine"]
    assert cosine < 1.0 and all(r["kept_float"] is None for r in plain)
    halfway = f"{1 - (1 - cosine) / 2:.7f}"  # the whole int8-static fails; fp16 passes
    result = _run(*common, "--min-cosine", halfway, "--keep-float", "auto")
    lines = result.output.splitlines()
    mixed = [line for line in lines if re.match(r"int8-static \+\d+ float ", line)]
    assert len(mixed) == 1 and mixed[0].rstrip().endswith("ok"), result.output
    assert re.search(r"\d+\.\d+ ms \(\d+\.\d\dx\)", mixed[0])  # timed with the others
    whole = next(line for line in lines if line.startswith("int8-static  "))
    assert "rejected: " in whole
    rows = json.loads(_run(*common, "--min-cosine", halfway, "--keep-float", "auto", "--json",
                           "--threads", "0").output)  # fmt: skip
    kept = [r for r in rows if r["kept_float"] is not None]
    assert [r["precision"] for r in kept] == ["int8-static"] and kept[0]["status"] == "ok"
    assert kept[0]["report"]["validation"]["cosine"] >= float(halfway)
    assert len(kept[0]["kept_float"]) >= 1


def test_not_onnx_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_text("hello")
    result = _run("compress", str(bad))
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {bad}: not an ONNX model")


def test_prune_and_target_from_the_cli(
    digits: DigitsModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(digits.folder)
    out = tmp_path / "pruned.onnx"
    result = _run("compress", digits.factory, "--prune", "0.5", "--structured",
                  "--finetune", str(digits.train), "--epochs", "1",
                  "--example", str(digits.calibration), "--precision", "int8-static",
                  "--calibration", str(digits.calibration), "--target-ort", "1.16",
                  "--validate", str(digits.validation), "--json", "-o", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)  # nothing but JSON on stdout (the exporters are chatty)
    assert [s["pass"] for s in data["steps"]] == [
        "export",
        "prune-structured",
        "export",
        "int8-static",
        "target",
    ]
    assert data["after"]["parameters"] < 0.55 * data["before"]["parameters"]
    assert out.is_file()


def test_bad_input_shape(digits: DigitsModel) -> None:
    result = _run("compress", str(digits.pt2), "--input-shape", "1,x,8")
    assert result.exit_code == 2
    assert "want integers like 1,3,224,224, got '1,x,8'" in result.output


def test_a_no_op_precision_is_refused_in_one_line_on_a_real_terminal(tmp_path: Path) -> None:
    """Through the installed command in its own process: what a user's terminal shows."""
    model = if_model(tmp_path)
    calibration = tmp_path / "c.npz"
    np.savez(calibration, x=np.ones((4, 32), np.float32), flag=np.array(True))
    edgeopt = Path(sys.executable).with_name("edgeopt")
    env = {"EDGEOPT_CACHE_DIR": str(tmp_path / "cache"), "EDGEOPT_LOG_DIR": str(tmp_path / "log"),
           "PATH": "/usr/bin:/bin"}  # fmt: skip
    done = subprocess.run(
        [str(edgeopt), "compress", str(model), "--precision", "int8-static",
         "--calibration", str(calibration), "-o", str(tmp_path / "out.onnx")],
        capture_output=True, text=True, env=env, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("Error: int8-static changed nothing: no weight was quantized")
    assert done.stderr.count("\n") == 1  # one line, no traceback, no library warnings
    assert not (tmp_path / "out.onnx").exists()
    # What the libraries said went to the log file instead.
    assert "compress " in (tmp_path / "log" / "compress.log").read_text()

    sweep = subprocess.run(
        [str(edgeopt), "compress", str(model), "--sweep", "--calibration", str(calibration),
         "--threads", "0"],
        capture_output=True, text=True, env=env, check=False, timeout=300,
    )  # fmt: skip
    assert sweep.stderr == ""
    rows = {line.split()[0]: line for line in sweep.stdout.splitlines()[1:-1]}
    assert "no change: int8-static changed nothing" in rows["int8-static"]
    assert rows["int8-dynamic"].rstrip().endswith("ok")
