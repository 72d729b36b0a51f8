"""The state database's migrations on SQLite: a history written by an older edgeopt keeps its
rows and gains the new columns."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from edgeopt.host.store.state import BENCH_V4_COLUMNS, SCHEMA_VERSION, State, meta_table


def test_a_version_3_history_gains_the_fleet_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    State(str(path)).close()
    with engine.begin() as c:  # what schema 3 looked like: no fleet columns, no bench_runs
        for name in BENCH_V4_COLUMNS:
            c.execute(sa.text(f"ALTER TABLE benchmark_runs DROP COLUMN {name}"))
        c.execute(sa.text("DROP TABLE bench_runs"))
        c.execute(sa.update(meta_table).values(value="3"))
        c.execute(sa.text(
            "INSERT INTO benchmark_runs (taken, device, fingerprint, model, model_digest, "
            "artifact_digest, precision, plan, result, onnxruntime_version) VALUES "
            "(1.0, 'pi4', 'f', 'm.onnx', 'd', 'a', 'fp32', '{}', '{}', '1.20')"
        ))  # fmt: skip
    engine.dispose()
    with State(str(path)) as state:
        assert state.schema_version() == SCHEMA_VERSION == 4
        (old,) = state.benchmarks("pi4")
        assert (old["run"], old["status"], old["flags"], old["accuracy"]) == ("", "ok", [], {})
        state.start_bench_run("r1", "m.onnx", "d", "pi4", {"variants": ["fp32"]})
        state.record_benchmark({
            "device": "pi4", "fingerprint": "f", "model": "m.onnx", "model_digest": "d",
            "artifact_digest": "a", "precision": "int8-static", "plan": {}, "result": {},
            "onnxruntime_version": "1.20", "run": "r1", "threads": 4, "status": "failed",
            "error": "gone", "flags": ["partial"], "accuracy": {"cosine": 0.99},
        })  # fmt: skip
        state.finish_bench_run("r1", "partial")
        (new,) = state.benchmarks(run="r1")
        assert (new["threads"], new["status"], new["flags"]) == (4, "failed", ["partial"])
        assert new["accuracy"] == {"cosine": 0.99}
        (run,) = state.bench_runs(run="r1")
        assert run["status"] == "partial" and run["options"] == {"variants": ["fp32"]}
        assert run["finished"] >= run["started"]
