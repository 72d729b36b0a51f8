"""`edgeopt bench` against real agents: the matrix, the history, compare, and bad input."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from edgeopt.host.compress import CompressionReport, CompressRequest, compress
from edgeopt.host.config.inventory import Device
from edgeopt.host.report import history
from edgeopt.host.store.state import SCHEMA_VERSION, State, meta_table
from edgeopt.host.transport.client import ClientConfig
from edgeopt.host.workflows import bench
from edgeopt.host.workflows.plans import DeployOptions
from tests.cli.test_deploy import edgeopt, inventory
from tests.conftest import RunningAgent
from tests.models import DigitsModel, matmul_chain


def matmul_model(path: Path, n: int = 384, depth: int = 4) -> Path:
    """A real model that gains from a second thread: chained n x n MatMuls (~10 ms)."""
    rng = np.random.default_rng(0)
    return matmul_chain(path, rng.standard_normal((n, n)) / np.sqrt(n), depth)


def test_a_matrix_on_two_boards_one_compression_per_variant(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel, tmp_path: Path
) -> None:
    agents = {"a": agent_factory(name="a"), "b": agent_factory(name="b")}
    inv = inventory(tmp_path, agents)
    csv_path, png, html = tmp_path / "out.csv", tmp_path / "fleet.png", tmp_path / "report.html"
    result = edgeopt(
        tmp_path, inv, "bench", str(digits.onnx), "--fleet", "--variants", "fp32,int8-static",
        "--threads", "1,2", "--calibration", str(digits.calibration), "--validate",
        str(digits.validation), "--max-seconds", "1", "--json", "--csv", str(csv_path),
        "--plot", str(png), "--html", str(html),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["status"] == "ok"
    cases = {(c["device"], c["variant"], c["threads"]): c for c in out["cases"]}
    assert set(cases) == {(d, v, t) for d in "ab" for v in ("fp32", "int8-static")
                          for t in (1, 2)}  # fmt: skip
    for c in cases.values():
        assert c["status"] == "ok" and c["run"] == out["run"]
        assert c["ci_low_ms"] <= c["p50_ms"] <= c["ci_high_ms"] and c["samples"] >= 10
        assert c["size_bytes"] > 0 and c["provider"] == "CPUExecutionProvider"
        assert 0.9 < c["accuracy"]["cosine"] <= 1.0 + 1e-6
    fp32, int8 = cases[("a", "fp32", 1)], cases[("a", "int8-static", 1)]
    assert fp32["speedup"] == pytest.approx(1.0)
    assert int8["speedup"] == pytest.approx(fp32["p50_ms"] / int8["p50_ms"])
    assert int8["size_bytes"] < fp32["size_bytes"]
    # The run is in the history, each case with its settings as columns.
    with State(str(tmp_path / "state.db")) as state:
        rows = state.benchmarks(run=out["run"])
        (run,) = state.bench_runs(run=out["run"])
    assert len(rows) == 8 and run["status"] == "ok" and run["selection"] == "--fleet"
    assert {(r["device"], r["precision"], r["threads"]) for r in rows} == set(cases)
    assert csv_path.read_text().count("\n") == 9  # a header and 8 cases
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "data:image/png;base64," in html.read_text()


def test_variants_compressed_once_for_the_whole_fleet(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel, tmp_path: Path
) -> None:
    agents = [agent_factory(name=n) for n in ("a", "b", "c")]
    devices = [Device(name=f"d{i}", address=a.address, token_file=a.token_file)
               for i, a in enumerate(agents)]  # fmt: skip
    made: list[str] = []

    def counting(request: CompressRequest) -> CompressionReport:
        made.append(request.precision)
        return compress(request)

    options = bench.BenchOptions(
        deploy=DeployOptions(request=CompressRequest(model=digits.onnx,
                                                     calibration=digits.calibration),
                             name="digits"),
        variants=("fp32", "int8-dynamic"), threads=(1,), max_seconds=0.5,
    )  # fmt: skip
    with State(str(tmp_path / "state.db")) as state:
        run = bench.bench(devices, options, state, compress_fn=counting)
    assert [c.status for c in run.cases] == ["ok"] * 6
    assert sorted(made) == ["fp32", "int8-dynamic"]


def test_a_board_lacking_the_provider_gets_unsupported_and_the_rest_runs(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel, tmp_path: Path
) -> None:
    inv = inventory(tmp_path, {"a": agent_factory(name="a")})
    result = edgeopt(
        tmp_path, inv, "bench", str(digits.onnx), "--device", "a", "--precision", "fp32",
        "--provider", "CUDAExecutionProvider,CPUExecutionProvider", "--threads", "1",
        "--max-seconds", "0.5", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    cases = {c["provider"]: c for c in json.loads(result.stdout)["cases"]}
    cuda = cases["CUDAExecutionProvider"]
    assert cuda["status"] == "unsupported" and cuda["p50_ms"] is None
    assert cuda["error"].startswith("a has no CUDAExecutionProvider; its ONNX Runtime offers ")
    assert "CPUExecutionProvider" in cuda["error"]
    assert cases["CPUExecutionProvider"]["status"] == "ok"


def test_a_board_that_dies_mid_run_keeps_its_finished_cases_marked(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel, tmp_path: Path
) -> None:
    dying, steady = agent_factory(name="dying"), agent_factory(name="steady")
    devices = [Device(name=n, address=a.address, token_file=a.token_file)
               for n, a in (("dying", dying), ("steady", steady))]  # fmt: skip
    options = bench.BenchOptions(
        deploy=DeployOptions(request=CompressRequest(model=digits.onnx,
                                                     calibration=digits.calibration),
                             name="digits"),
        variants=("fp32", "int8-dynamic", "int8-static"), threads=(1,), max_seconds=0.5,
    )  # fmt: skip

    def progress(device: str, text: str) -> None:
        # The board loses power as its second case starts: a real process killed for real.
        if device == "dying" and text.startswith("int8-dynamic") and text.endswith("measuring"):
            dying.process.kill()
            dying.process.wait()

    with State(str(tmp_path / "state.db")) as state:
        run = bench.bench(devices, options, state, progress=progress,
                          config=ClientConfig(deadline=3))  # fmt: skip
        rows = {(r["device"], r["precision"]): r for r in state.benchmarks(run=run.id)}
        (record,) = state.bench_runs(run=run.id)
    got = {(c.device, c.variant): c for c in run.cases}
    assert got[("dying", "fp32")].status == "ok"
    assert got[("dying", "fp32")].flags[-1] == "partial"
    assert got[("dying", "int8-dynamic")].status == "failed"
    assert "cannot reach the agent" in got[("dying", "int8-dynamic")].error
    assert got[("dying", "int8-static")].status == "not run"
    assert got[("dying", "int8-static")].error == (
        "not run: the device stopped answering during the run"
    )
    assert all(got[("steady", v)].status == "ok" for v in options.variants)
    assert run.status == record["status"] == "partial"
    assert rows[("dying", "fp32")]["status"] == "ok"
    assert rows[("dying", "fp32")]["result"]["latency"]["p50_ms"] > 0
    assert rows[("dying", "int8-static")]["status"] == "not run"


def test_a_dead_board_is_reported_and_never_blocks_the_others(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel, tmp_path: Path
) -> None:
    inv = inventory(tmp_path, {"a": agent_factory(name="a")}, dead=("gone",))
    result = edgeopt(
        tmp_path, inv, "bench", str(digits.onnx), "--device", "shelf", "--precision",
        "int8-static", "--calibration", str(digits.calibration), "--threads", "1",
        "--max-seconds", "1", "--json",
    )  # fmt: skip
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    rows = {r["device"]: r for r in out["cases"]}
    assert rows["gone"]["status"] == "failed"
    assert "cannot reach the agent at 127.0.0.1:1" in rows["gone"]["error"]
    measured = out["results"][str(rows["a"]["case"])]
    assert rows["a"]["variant"] == "int8-static" and measured["plan"]["intra_op_threads"] == 1
    lat = measured["latency"]
    assert lat["samples"] >= 10 and lat["ci_low_ms"] <= lat["p50_ms"] <= lat["ci_high_ms"]
    assert out["status"] == "partial"
    # Measured, not deployed: nothing is listed or active on the board.
    listing = json.loads(edgeopt(tmp_path, inv, "models", "--device", "a", "--json").stdout)
    assert listing[0]["models"].get("models", []) == []


def test_the_deadline_marks_what_it_cut(
    agent_factory: Callable[..., RunningAgent], tmp_path: Path
) -> None:
    inv = inventory(tmp_path, {"a": agent_factory(name="a")})
    model = matmul_model(tmp_path / "mm.onnx")
    result = edgeopt(
        tmp_path, inv, "bench", str(model), "--device", "a", "--precision", "fp32",
        "--threads", "1,2", "--max-seconds", "5", "--target-ci", "0.0001", "--deadline", "3",
        "--json",
    )  # fmt: skip
    assert result.exit_code == 1
    cases = json.loads(result.stdout)["cases"]
    assert [c["status"] for c in cases] == ["not run", "not run"]
    assert all(c["error"] == "not run: the 3 s deadline passed" for c in cases)


def test_bad_input_at_the_command_line(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel, tmp_path: Path
) -> None:
    inv = inventory(tmp_path, {"a": agent_factory(name="a")})
    unknown = edgeopt(tmp_path, inv, "bench", str(digits.onnx), "--device", "a",
                      "--variants", "fp32,int3")  # fmt: skip
    assert unknown.exit_code == 2
    assert ("unknown variant int3; the variants are fp32, fp16, int8-dynamic, int8-static, "
            "int4-weight") in unknown.output  # fmt: skip
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    none = edgeopt(tmp_path, empty, "bench", str(digits.onnx), "--fleet")
    assert none.exit_code == 2 and "the selection --fleet has no devices" in none.output
    missing = edgeopt(tmp_path, inv, "bench", "compare", "r1", "r2")
    assert missing.exit_code == 1
    assert "r1: no such benchmark run (see `edgeopt bench history`)" in missing.output


def test_a_history_written_by_a_newer_edgeopt_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    State(str(path)).close()
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as c:
        c.execute(sa.update(meta_table).values(value=str(SCHEMA_VERSION + 1)))
    engine.dispose()
    inv = tmp_path / "edgeopt.toml"
    inv.write_text("")
    result = edgeopt(tmp_path, inv, "bench", "history")
    assert result.exit_code == 1
    assert (f"written by a newer edgeopt (schema version {SCHEMA_VERSION + 1}; this edgeopt "
            f"knows up to {SCHEMA_VERSION})") in result.output  # fmt: skip


def test_history_and_compare_call_a_real_slowdown_and_nothing_else(
    agent_factory: Callable[..., RunningAgent], tmp_path: Path
) -> None:
    # The same board, once with both CPUs and once with the agent pinned to one (as a service
    # unit with CPUAffinity=0 would be): 2 threads on one CPU is a real, large slowdown.
    if not shutil.which("taskset") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs taskset and two usable CPUs to slow the board down for real")
    model = matmul_model(tmp_path / "mm.onnx")
    runs = []
    for name, prefix in (("whole", ()), ("pinned", ("taskset", "-c", "0"))):
        inv = inventory(tmp_path, {"pi": agent_factory(name=name, prefix=prefix)})
        result = edgeopt(tmp_path, inv, "bench", str(model), "--device", "pi", "--precision",
                         "fp32", "--threads", "2", "--max-seconds", "2", "--json")  # fmt: skip
        assert result.exit_code == 0, result.output
        runs.append(json.loads(result.stdout)["run"])
    compared = edgeopt(tmp_path, inv, "bench", "compare", *runs, "--json")
    assert compared.exit_code == 1  # something got slower: a CI gate fails
    (change,) = json.loads(compared.stdout)["changes"]
    assert change["case"] == "pi fp32 2T CPU" and change["verdict"] == "slower"
    assert change["ratio"] > 1.15
    # Judged by the runs' stored blocks (each run's timed runs in consecutive blocks).
    assert "95 % interval" in change["words"] and change["words"].endswith(
        ", beyond the 5% threshold"
    )
    same = edgeopt(tmp_path, inv, "bench", "compare", runs[0], runs[0], "--json")
    assert same.exit_code == 0
    assert json.loads(same.stdout)["changes"][0]["verdict"] == "no change"
    timeline = json.loads(
        edgeopt(tmp_path, inv, "bench", "history", "--model", str(model), "--json").stdout
    )
    assert [t["run"] for t in timeline] == runs
    assert timeline[0]["change"] == "first run"
    assert timeline[1]["change"].startswith("slower: +")


def _row(p50: float, half: float, id_: int = 1, threads: int = 2) -> dict[str, object]:
    return {"id": id_, "device": "pi4", "precision": "fp32", "threads": threads, "provider": "",
            "status": "ok", "result": {"latency": {"p50_ms": p50, "ci_low_ms": p50 - half,
                                                   "ci_high_ms": p50 + half}}}  # fmt: skip


def test_judge_needs_both_separate_intervals_and_a_change_above_the_threshold() -> None:
    assert history.judge(_row(10, 0.2), _row(11.5, 0.2)) == (
        "slower",
        "slower: +15.0% (10 ms -> 11.5 ms); the 95 % intervals do not overlap",
    )
    assert history.judge(_row(10, 0.2), _row(8, 0.2))[0] == "faster"
    # Overlapping intervals: noise, however large the change of the median looks.
    verdict, words = history.judge(_row(10, 2.0), _row(11.5, 2.0))
    assert verdict == "no change" and words.endswith("is within the noise (the intervals overlap)")
    # Separate intervals but a 3 % change: real, too small to call.
    verdict, words = history.judge(_row(10, 0.05), _row(10.3, 0.05))
    assert verdict == "no change" and words.endswith("is real but under the 5% threshold")


def test_compare_matches_cases_and_names_the_unmatched() -> None:
    changes, alone = history.compare([_row(10, 0.2, 1), _row(10, 0.2, 2, threads=1)],
                                     [_row(12, 0.2, 3)])  # fmt: skip
    assert [(history.name(c.key), c.verdict) for c in changes] == [("pi4 fp32 2T CPU", "slower")]
    assert alone == ["pi4 fp32 1T CPU: measured only in the first run"]


def test_failed_rows_are_left_out_of_history() -> None:
    failed = {**_row(10, 0.2, 2), "status": "failed"}
    line = history.timeline([_row(10, 0.2, 1), failed, _row(10.1, 0.2, 3)])
    assert [r["id"] for r, _ in line] == [1, 3]


def test_a_noisy_history_raises_the_threshold() -> None:
    # Earlier runs swinging by 9-10 % between sessions: 3 x the median swing is 29 %.
    earlier = [_row(p, 0.1, i) for i, p in enumerate((10.0, 11.0, 10.0, 11.0, 10.0), start=1)]
    verdict, words = history.judge(earlier[-1], _row(11.5, 0.1, 9), earlier=earlier)
    assert verdict == "no change"
    assert words.endswith("is real but under the 29% run-to-run noise of 5 earlier runs")
    # A quiet history leaves the 5 % threshold: the same 15 % change is called.
    quiet = [_row(10.0 + 0.01 * i, 0.1, i) for i in range(1, 6)]
    assert history.judge(quiet[-1], _row(11.5, 0.1, 9), earlier=quiet)[0] == "slower"
    # compare takes the runs of the same case measured before the first run as history.
    changes, _ = history.compare([earlier[-1]], [_row(11.5, 0.1, 9)], history=earlier)
    assert changes[0].verdict == "no change"


def test_another_model_is_never_the_previous_run() -> None:
    # The bug the paired-comparison issue quoted: an EfficientNet run, then a MobileNetV2 run on
    # the same board and settings, shown as "faster: -63.7%". The model's digest tells them apart.
    effnet = {**_row(28.5, 0.2, 1), "model_digest": "e" * 64}
    mobilenet = {**_row(10.3, 0.2, 2), "model_digest": "m" * 64}
    assert [words for _, words in history.timeline([effnet, mobilenet])] == ["first run"] * 2
    changes, alone = history.compare([effnet], [mobilenet])
    assert not changes and len(alone) == 2


def _blocked(blocks: list[float], id_: int) -> dict[str, object]:
    row = _row(float(np.median(blocks)), 0.01, id_)
    row["result"]["block_ms"] = blocks  # type: ignore[index]
    return row


def test_runs_with_blocks_are_judged_by_their_blocks() -> None:
    rng = np.random.default_rng(5)
    quiet = list(10 * rng.lognormal(0, 0.01, 40))
    slower = list(10.8 * rng.lognormal(0, 0.01, 40))
    verdict, words = history.judge(_blocked(quiet, 1), _blocked(slower, 2))
    assert verdict == "slower" and ", beyond the 5% threshold" in words
    assert "95 % interval" in words and "from 40 and 40 blocks" in words
    same = list(10 * rng.lognormal(0, 0.01, 40))
    assert history.judge(_blocked(quiet, 1), _blocked(same, 2))[0] == "no change"
    # Blocks swinging by 20 %: the old rule's tight medians would call the 6 % a change.
    swings = [8.0, 12.0, 9.0, 11.0, 10.0, 10.5, 9.5, 11.5]
    noisy = [_blocked(swings, 1), _blocked([1.06 * v for v in swings[::-1]], 2)]
    verdict, words = history.judge(noisy[0], noisy[1])
    assert verdict == "undecided" and words.startswith("undecided: ")
    assert "too noisy for the 5% threshold" in words and "could show a change of" in words


def test_interleaved_variants_take_their_speed_up_from_the_pairs(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel, tmp_path: Path
) -> None:
    inv = inventory(tmp_path, {"a": agent_factory(name="a")})
    result = edgeopt(
        tmp_path, inv, "bench", str(digits.onnx), "--device", "a", "--variants",
        "fp32,int8-static", "--threads", "1", "--calibration", str(digits.calibration),
        "--max-seconds", "1", "--interleave", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    fp32, int8 = (next(c for c in out["cases"] if c["variant"] == v)
                  for v in ("fp32", "int8-static"))  # fmt: skip
    assert fp32["paired"] is None  # the baseline: measured alone
    pair = int8["paired"]
    assert pair["against"] == out["results"][str(fp32["case"])]["sha256"]
    assert pair["pairs"] >= 6 and pair["low"] <= pair["ratio"] <= pair["high"]
    assert int8["speedup"] == pytest.approx(1 / pair["ratio"])
    assert out["results"][str(int8["case"])]["block_ms"]  # B's blocks, for the history
    text = edgeopt(
        tmp_path, inv, "bench", str(digits.onnx), "--device", "a", "--variants",
        "fp32,int8-static", "--threads", "1", "--calibration", str(digits.calibration),
        "--max-seconds", "1", "--interleave",
    )  # fmt: skip
    assert "a int8-static 1T: interleaved with the first variant: " in text.output
    lone = edgeopt(tmp_path, inv, "bench", str(digits.onnx), "--device", "a", "--variants",
                   "fp32", "--interleave")  # fmt: skip
    assert lone.exit_code == 2
    assert "--interleave measures variants against the first" in lone.output
