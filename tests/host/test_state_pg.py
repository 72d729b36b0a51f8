"""The host's state database on a real PostgreSQL server (tests/pg.py), as a team shares one.

Each test gets its own fresh database on the session's server. What is written is read back
through `State`'s own queries where it has them, and straight from the tables where it has not.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from psycopg import sql

from edgeopt.host.cli import cli
from edgeopt.host.errors import StateError
from edgeopt.host.store.state import (
    BENCH_V4_COLUMNS,
    MIGRATIONS,
    SCHEMA_VERSION,
    DeviceRecord,
    State,
    devices_table,
    meta_table,
    metadata,
    snapshots_table,
)
from tests.pg import Postgres

REPORT = {"cpu": {"flags": ["avx2", "fma"], "cores": 4}, "memory_bytes": 4 * 2**30}


@pytest.fixture
def url(postgres: Postgres) -> str:
    """A new, empty database of its own on the session's PostgreSQL."""
    return postgres.create_database(f"test_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def state(url: str) -> Iterator[State]:
    with State(url) as opened:
        yield opened


def closed_port_url(port: int) -> str:
    return f"postgresql://edgeopt:s3cret-pw@127.0.0.1:{port}/edgeopt"


def shown(url: str, password: str = "s3cret-pw") -> str:
    """How State names `url` in its errors: SQLAlchemy's URL for psycopg, password hidden."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1).replace(
        f":{password}@", ":***@"
    )


def refused(port: int) -> str:
    """State's error for `closed_port_url(port)`."""
    return (
        f"{shown(closed_port_url(port))}: cannot open the state database: connection failed: "
        f'connection to server at "127.0.0.1", port {port} failed: Connection refused'
    )


def test_postgres_url_names_a_database_that_accepts_the_password(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql://edgeopt:")
    with psycopg.connect(postgres_url) as connection:
        row = connection.execute(
            "SELECT current_user, current_database(), host(inet_server_addr()), "
            "current_setting('listen_addresses'), current_setting('password_encryption')"
        )
        assert row.fetchone() == ("edgeopt", "edgeopt", "127.0.0.1", "127.0.0.1", "scram-sha-256")


def test_a_fresh_database_gets_the_whole_schema(url: str, state: State) -> None:
    assert state.schema_version() == SCHEMA_VERSION
    assert sorted(sa.inspect(state.engine).get_table_names()) == sorted(metadata.tables)
    with psycopg.connect(url) as connection:
        rows = connection.execute("SELECT key, value FROM edgeopt_meta").fetchall()
    assert rows == [("schema_version", str(SCHEMA_VERSION))]
    # Opening it again migrates nothing and keeps what is there.
    state.record_tuning("k", "a", "fp", "1.20.0", "d" * 64, {}, {"precision": "fp32"}, [], 1.0)
    with State(url) as again:
        assert again.schema_version() == SCHEMA_VERSION
        assert [t["key"] for t in again.tunings()] == ["k"]


@pytest.mark.parametrize("version", range(SCHEMA_VERSION))
def test_a_database_at_an_older_schema_is_brought_up_to_date(url: str, version: int) -> None:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        for step in MIGRATIONS[:version]:
            step(connection)
        if version:
            connection.execute(sa.insert(meta_table).values(key="schema_version", value=version))
    engine.dispose()
    with State(url) as state:
        assert state.schema_version() == SCHEMA_VERSION
        inspector = sa.inspect(state.engine)
        assert sorted(inspector.get_table_names()) == sorted(metadata.tables)
        for table in metadata.sorted_tables:
            got = [c["name"] for c in inspector.get_columns(table.name)]
            assert sorted(got) == sorted(table.columns.keys()), table.name


def write_schema_4(url: str) -> None:
    """A database as edgeopt wrote it at schema 4, by that schema's own migrations."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        for step in MIGRATIONS[:4]:
            step(connection)
        connection.execute(sa.insert(meta_table).values(key="schema_version", value="4"))
    engine.dispose()


def test_a_version_3_history_gains_the_fleet_columns_and_keeps_its_rows(url: str) -> None:
    # As tests/host/test_state.py does on SQLite: Alembic's ALTER TABLE, here on PostgreSQL.
    write_schema_4(url)
    with psycopg.connect(url) as connection:  # what schema 3 looked like
        for name in BENCH_V4_COLUMNS:
            connection.execute(sql.SQL("ALTER TABLE benchmark_runs DROP COLUMN {}").format(
                sql.Identifier(name)))  # fmt: skip
        connection.execute("DROP TABLE bench_runs")
        connection.execute("UPDATE edgeopt_meta SET value = '3' WHERE key = 'schema_version'")
        connection.execute(
            "INSERT INTO benchmark_runs (taken, device, fingerprint, model, model_digest, "
            "artifact_digest, precision, plan, result, onnxruntime_version) VALUES "
            "(1.0, 'pi4', 'f', 'm.onnx', 'd', 'a', 'fp32', '{}', '{\"p50_ms\": 2.5}', '1.20')"
        )
    with State(url) as state:
        assert state.schema_version() == SCHEMA_VERSION
        (old,) = state.benchmarks("pi4")
        assert (old["precision"], old["result"]) == ("fp32", {"p50_ms": 2.5})
        assert {k: old[k] for k in BENCH_V4_COLUMNS} == {
            "run": "", "threads": 0, "provider": "", "status": "ok", "error": "",
            "size_bytes": 0, "accuracy": {}, "flags": [], "edgeopt_version": "",
        }  # fmt: skip
        assert state.bench_runs() == []


def test_a_version_4_history_keeps_its_cases_under_bench_cases(url: str) -> None:
    """Schema 5 renames benchmark_runs to bench_cases: rows, index, key and sequence follow."""
    write_schema_4(url)
    with psycopg.connect(url) as connection:
        for device, p50 in (("pi4", 2.5), ("jetson", 0.5)):
            connection.execute(
                "INSERT INTO benchmark_runs (taken, device, fingerprint, model, model_digest, "
                "artifact_digest, precision, plan, result, onnxruntime_version, run, threads) "
                "VALUES (1.5, %s, 'f', 'm.onnx', 'd', 'a', 'fp32', '{}', %s, '1.20', 'r1', 4)",
                (device, json.dumps({"p50_ms": p50})),
            )
    with State(url) as state:
        assert state.schema_version() == SCHEMA_VERSION == 6
        assert [(c["id"], c["device"], c["result"], c["threads"], c["status"])
                for c in state.benchmarks(run="r1")] == [
            (2, "jetson", {"p50_ms": 0.5}, 4, "ok"), (1, "pi4", {"p50_ms": 2.5}, 4, "ok"),
        ]  # fmt: skip
        inspector = sa.inspect(state.engine)
        assert sorted(inspector.get_table_names()) == sorted(metadata.tables)
        assert [i["name"] for i in inspector.get_indexes("bench_cases")] == [
            "ix_bench_cases_device"
        ]
        assert inspector.get_pk_constraint("bench_cases")["name"] == "bench_cases_pkey"
        assert "bench_cases_id_seq" in inspector.get_sequence_names()
        assert "benchmark_runs_id_seq" not in inspector.get_sequence_names()
        assert state.record_benchmark(benchmark_run("pi4", 1.25)) == 3
        assert [c["id"] for c in state.benchmarks("pi4")] == [3, 1]


def test_capabilities_keep_one_device_row_and_every_snapshot(state: State) -> None:
    before = time.time()
    state.record_capabilities("board-1", "10.0.0.5:50051", "fp-old", "id-1", REPORT)
    state.record_capabilities("board-1", "10.0.0.6:50051", "fp-new", "id-1", {"cpu": None})
    after = time.time()
    with state.engine.connect() as c:
        devices = c.execute(sa.select(devices_table)).mappings().all()
        snapshots = c.execute(sa.select(snapshots_table).order_by("id")).mappings().all()
    assert len(devices) == 1
    device = dict(devices[0])
    assert before <= device.pop("last_seen") <= after
    assert device == {"name": "board-1", "address": "10.0.0.6:50051",
                      "fingerprint": "fp-new", "device_id": "id-1"}  # fmt: skip
    assert [(s["device"], s["fingerprint"], json.loads(s["report"])) for s in snapshots] == [
        ("board-1", "fp-old", REPORT),
        ("board-1", "fp-new", {"cpu": None}),
    ]


def test_a_deployment_round_trips_with_its_devices(state: State) -> None:
    before = time.time()
    first = state.start_deployment("m.onnx", "a" * 64, "digits", "all", {"precision": "int8"})
    second = state.start_deployment("n.onnx", "b" * 64, "other", "group:x", {})
    assert second == first + 1
    plan = {"precision": "int8-static", "reasons": ["vnni"]}
    state.record_device(first, DeviceRecord("b2", plan, "failed", error="first try"))
    state.record_device(
        first,
        DeviceRecord("b2", plan, "ok", canary=True, artifact_digest="c" * 64, version="v3",
                     phases={"push": 1.5, "load": 0.25}, bytes_sent=5 * 2**32),
    )  # fmt: skip
    state.record_device(first, DeviceRecord("b1", {}, "skipped"))
    state.finish_deployment(first, "ok")
    after = time.time()

    newest, oldest = state.deployments()
    assert newest["id"] == second and newest["outcome"] == "running"
    assert newest["finished"] is None and newest["devices"] == []
    assert before <= oldest["started"] <= oldest["finished"] <= after
    assert {k: v for k, v in oldest.items() if k not in ("started", "finished")} == {
        "id": first, "model": "m.onnx", "model_digest": "a" * 64, "name": "digits",
        "selection": "all", "options": {"precision": "int8"}, "outcome": "ok",
        "devices": [
            {"deployment": first, "device": "b1", "canary": False, "plan": {},
             "artifact_digest": "", "version": "", "outcome": "skipped", "error": "",
             "phases": {}, "bytes_sent": 0},
            {"deployment": first, "device": "b2", "canary": True, "plan": plan,
             "artifact_digest": "c" * 64, "version": "v3", "outcome": "ok", "error": "",
             "phases": {"push": 1.5, "load": 0.25}, "bytes_sent": 5 * 2**32},
        ],
    }  # fmt: skip
    assert [d["id"] for d in state.deployments(limit=1)] == [second]


def benchmark_run(device: str, p50: float) -> dict[str, Any]:
    return {
        "device": device, "fingerprint": "fp", "model": "m.onnx", "model_digest": "a" * 64,
        "artifact_digest": "b" * 64, "precision": "fp16", "plan": {"threads": 2},
        "result": {"p50_ms": p50, "p99_ms": p50 * 2}, "onnxruntime_version": "1.20.1",
    }  # fmt: skip


def test_benchmarks_round_trip_newest_first(state: State) -> None:
    ids = [state.record_benchmark(benchmark_run(d, p)) for d, p in
           [("a", 1.25), ("b", 2.5), ("a", 3.75)]]  # fmt: skip
    assert ids == [ids[0], ids[0] + 1, ids[0] + 2]
    runs = state.benchmarks()
    assert [r["id"] for r in runs] == ids[::-1]
    written = benchmark_run("a", 3.75)
    # Only the columns written: later schemas add more, with defaults.
    assert {k: runs[0][k] for k in written} == written
    assert [r["result"]["p50_ms"] for r in state.benchmarks(device="a")] == [3.75, 1.25]
    assert [r["id"] for r in state.benchmarks(limit=1)] == [ids[2]]
    assert state.benchmarks(device="nobody") == []


def test_tuning_round_trips_and_a_new_answer_replaces_the_old(state: State) -> None:
    trials = [{"precision": "int8", "passed": True, "p50_ms": 1.5}]
    state.record_tuning("kind-1", "a", "fp1", "1.20.1", "d" * 64, {"max_drop": 0.02},
                        {"precision": "fp32", "intra_op_threads": 1}, [], 4.0)  # fmt: skip
    state.record_tuning("kind-2", "b", "fp2", "1.20.1", "e" * 64, {}, {"precision": "fp16"},
                        [], 1.0)  # fmt: skip
    state.record_tuning("kind-1", "c", "fp1", "1.20.1", "d" * 64, {"max_drop": 0.01},
                        {"precision": "int8", "intra_op_threads": 2}, trials, 12.5)  # fmt: skip
    got = state.tuning("kind-1")
    assert got is not None
    assert {k: v for k, v in got.items() if k != "taken"} == {
        "key": "kind-1", "device": "c", "fingerprint": "fp1", "onnxruntime_version": "1.20.1",
        "model_digest": "d" * 64, "constraints": {"max_drop": 0.01},
        "best": {"precision": "int8", "intra_op_threads": 2}, "trials": trials, "seconds": 12.5,
        "traits": {},
    }  # fmt: skip
    assert state.tuning("kind-3") is None
    assert [t["key"] for t in state.tunings()] == ["kind-1", "kind-2"]
    # With the tuned model's traits (what the planner learns from), read back per kind of board.
    traits = {"name": "digits", "model": {"weight_bytes": 4096, "int8_intensity": 22.5}}
    state.record_tuning("kind-4", "d", "fp2", "1.20.1", "f" * 64, {}, {"precision": "fp32"},
                        trials, 2.0, traits)  # fmt: skip
    assert [(t["key"], t["traits"]) for t in state.tunings("fp2")] == [
        ("kind-4", traits), ("kind-2", {}),
    ]  # fmt: skip


def write_newer_version(url: str) -> None:
    State(url).close()
    with psycopg.connect(url) as connection:
        connection.execute(
            "UPDATE edgeopt_meta SET value = %s WHERE key = 'schema_version'",
            (str(SCHEMA_VERSION + 1),),
        )


def refusal(url: str) -> tuple[str, int]:
    """State(url)'s error message, and how many sessions it left open on the database.

    State does not dispose of its engine when it refuses a newer schema, so the pooled
    connection stays open until garbage collection (where psycopg warns): collect it here.
    """
    with pytest.raises(StateError) as raised:
        State(url)
    message = str(raised.value)
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        del raised
        gc.collect()
    return message, int(row[0])


def test_a_database_written_by_a_newer_edgeopt_is_refused(url: str) -> None:
    write_newer_version(url)
    message, _ = refusal(url)
    assert message.endswith(
        f": written by a newer edgeopt (schema version {SCHEMA_VERSION + 1}; this edgeopt "
        f"knows up to {SCHEMA_VERSION}): upgrade edgeopt, or use another --state"
    )
    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT value FROM edgeopt_meta WHERE key = 'schema_version'")
        assert row.fetchone() == (str(SCHEMA_VERSION + 1),)


def test_the_newer_schema_error_hides_the_password(url: str, postgres: Postgres) -> None:
    write_newer_version(url)
    message, _ = refusal(url)
    assert "written by a newer edgeopt" in message
    assert postgres.password not in message


def test_a_refused_database_is_left_with_no_connection_open(url: str) -> None:
    write_newer_version(url)
    _, sessions = refusal(url)
    assert sessions == 0


def test_an_unreachable_server_is_a_quick_clear_error(free_port: int) -> None:
    with pytest.raises(StateError) as raised:
        State(closed_port_url(free_port))
    assert str(raised.value) == refused(free_port)


def test_a_wrong_password_is_a_clear_error(postgres: Postgres) -> None:
    wrong = postgres.url().replace(postgres.password, "not-the-password")
    with pytest.raises(StateError) as raised:
        State(wrong)
    assert str(raised.value) == (
        f"{shown(wrong, 'not-the-password')}: cannot open the state database: connection "
        f'failed: connection to server at "127.0.0.1", port {postgres.port} failed: FATAL:  '
        'password authentication failed for user "edgeopt"'
    )


def test_a_silent_server_times_out_with_connect_timeout_in_the_url(silent_listener: str) -> None:
    started = time.monotonic()
    url = f"postgresql://edgeopt:s3cret-pw@{silent_listener}/edgeopt?connect_timeout=2"
    with pytest.raises(StateError) as raised:
        State(url)
    assert time.monotonic() - started < 10
    assert str(raised.value) == (
        f"{shown(url)}: cannot open the state database: connection timeout expired"
    )


def test_a_silent_server_times_out_by_default(silent_listener: str) -> None:
    code = (
        "from edgeopt.host.store.state import State, StateError\n"
        "try:\n"
        f"    State('postgresql://edgeopt:s3cret-pw@{silent_listener}/edgeopt')\n"
        "except StateError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=15, check=False)  # fmt: skip
    assert done.stdout.endswith("cannot open the state database: connection timeout expired\n")


def test_the_cli_reports_an_unreachable_server_in_one_line(free_port: int) -> None:
    for command in (["tune", "ls"], ["deployments", "--json"]):
        result = CliRunner().invoke(cli, ["--state", closed_port_url(free_port), *command])
        assert result.exit_code == 1, result.output
        assert result.stdout == ""
        assert result.stderr == f"Error: {refused(free_port)}\n"


def test_the_cli_reads_history_from_postgresql(url: str) -> None:
    with State(url) as state:
        state.record_tuning("kind-1", "a", "fp1", "1.20.1", "d" * 64, {},
                            {"precision": "fp16", "intra_op_threads": 2}, [], 3.0)  # fmt: skip
        deployment = state.start_deployment("m.onnx", "a" * 64, "digits", "all", {})
    tunings = CliRunner().invoke(cli, ["--state", url, "tune", "ls", "--json"])
    assert tunings.exit_code == 0, tunings.output
    assert [(t["key"], t["best"]["precision"]) for t in json.loads(tunings.stdout)] == [
        ("kind-1", "fp16")
    ]
    history = CliRunner().invoke(cli, ["--state", url, "deployments", "--json"])
    assert history.exit_code == 0, history.output
    assert [(d["id"], d["outcome"]) for d in json.loads(history.stdout)] == [
        (deployment, "running")
    ]
