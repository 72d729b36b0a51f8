"""The state database's migrations on SQLite: a history written by an older edgeopt keeps its
rows and gains the new columns."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from edgeopt.host.store.state import (
    BENCH_V4_COLUMNS,
    MIGRATIONS,
    SCHEMA_VERSION,
    State,
    meta_table,
    metadata,
)


def write_schema_4(engine: sa.Engine) -> None:
    """A database as edgeopt wrote it at schema 4, by that schema's own migrations."""
    with engine.begin() as c:
        for step in MIGRATIONS[:4]:
            step(c)
        c.execute(sa.insert(meta_table).values(key="schema_version", value="4"))


def test_a_version_3_history_gains_the_fleet_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    write_schema_4(engine)
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
        assert state.schema_version() == SCHEMA_VERSION == 6
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


def test_a_version_4_history_keeps_its_cases_under_bench_cases(tmp_path: Path) -> None:
    """Schema 5 renames benchmark_runs (which held cases) to bench_cases, rows and all."""
    path = tmp_path / "state.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    write_schema_4(engine)
    with engine.begin() as c:
        c.execute(sa.text(
            "INSERT INTO bench_runs (id, started, finished, model, model_digest, selection, "
            "options, status, edgeopt_version) VALUES "
            "('r1', 1.0, 2.0, 'm.onnx', 'd', 'all', '{}', 'ok', '0.1.0')"
        ))  # fmt: skip
        for device, p50 in (("pi4", 2.5), ("jetson", 0.5)):
            c.execute(sa.text(
                "INSERT INTO benchmark_runs (taken, device, fingerprint, model, model_digest, "
                "artifact_digest, precision, plan, result, onnxruntime_version, run, threads, "
                "provider, status, size_bytes, accuracy, flags) VALUES "
                "(1.5, :device, 'f', 'm.onnx', 'd', 'a', 'fp32', '{}', :result, '1.20', 'r1', 4, "
                "'CPUExecutionProvider', 'ok', 1024, '{\"cosine\": 1.0}', '[\"loaded\"]')"
            ), {"device": device, "result": f'{{"p50_ms": {p50}}}'})  # fmt: skip
    engine.dispose()
    with State(str(path)) as state:
        assert state.schema_version() == SCHEMA_VERSION == 6
        cases = state.benchmarks(run="r1")
        assert [(c["id"], c["device"], c["result"]) for c in cases] == [
            (2, "jetson", {"p50_ms": 0.5}), (1, "pi4", {"p50_ms": 2.5}),
        ]  # fmt: skip
        assert {k: cases[0][k] for k in BENCH_V4_COLUMNS} == {
            "run": "r1", "threads": 4, "provider": "CPUExecutionProvider", "status": "ok",
            "error": "", "size_bytes": 1024, "accuracy": {"cosine": 1.0}, "flags": ["loaded"],
            "edgeopt_version": "",
        }  # fmt: skip
        (run,) = state.bench_runs()
        assert (run["id"], run["status"], run["finished"]) == ("r1", "ok", 2.0)
        inspector = sa.inspect(state.engine)
        assert sorted(inspector.get_table_names()) == sorted(metadata.tables)
        assert "benchmark_runs" not in inspector.get_table_names()
        assert [(i["name"], i["column_names"]) for i in inspector.get_indexes("bench_cases")] == [
            ("ix_bench_cases_device", ["device"])
        ]
        with state.engine.connect() as c:
            rows = c.execute(sa.text("SELECT id, device FROM bench_cases ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [(1, "pi4"), (2, "jetson")]
        new = state.record_benchmark({
            "device": "pi4", "fingerprint": "f", "model": "m.onnx", "model_digest": "d",
            "artifact_digest": "a", "precision": "fp16", "plan": {}, "result": {},
            "onnxruntime_version": "1.20",
        })  # fmt: skip
        assert new == 3
        assert [c["id"] for c in state.benchmarks("pi4")] == [3, 1]


def test_a_new_database_has_the_cases_table_only_under_its_new_name(tmp_path: Path) -> None:
    with State(str(tmp_path / "state.db")) as state:
        inspector = sa.inspect(state.engine)
        assert sorted(inspector.get_table_names()) == sorted(metadata.tables)
        assert "bench_cases" in metadata.tables and "benchmark_runs" not in metadata.tables
        assert [i["name"] for i in inspector.get_indexes("bench_cases")] == [
            "ix_bench_cases_device"
        ]


def test_a_version_5_history_keeps_its_tunings_and_gains_their_traits(tmp_path: Path) -> None:
    """Schema 6 keeps the tuned model's traits beside each tuning (what the planner learns
    from); the tunings written before have none and are read back with an empty dict."""
    path = tmp_path / "state.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as c:
        for step in MIGRATIONS[:5]:
            step(c)
        c.execute(sa.insert(meta_table).values(key="schema_version", value="5"))
        assert "traits" not in {x["name"] for x in sa.inspect(c).get_columns("tuning_results")}
        c.execute(sa.text(
            "INSERT INTO tuning_results (key, taken, device, fingerprint, onnxruntime_version, "
            "model_digest, constraints, best, trials, seconds) VALUES "
            "('k', 1.0, 'pi4', 'f', '1.20', 'd', '{}', '{\"precision\": \"fp32\"}', '[]', 3.0)"
        ))  # fmt: skip
    engine.dispose()
    with State(str(path)) as state:
        assert state.schema_version() == SCHEMA_VERSION == 6
        (old,) = state.tunings("f")
        assert (old["key"], old["best"], old["traits"]) == ("k", {"precision": "fp32"}, {})
        state.record_tuning("k2", "pi4", "f", "1.20", "d2", {}, {}, [], 1.0, {"name": "m"})
        assert [(t["key"], t["traits"]) for t in state.tunings("f")] == [
            ("k2", {"name": "m"}), ("k", {}),
        ]  # fmt: skip
        columns = {x["name"] for x in sa.inspect(state.engine).get_columns("tuning_results")}
        assert columns == set(metadata.tables["tuning_results"].columns.keys())
