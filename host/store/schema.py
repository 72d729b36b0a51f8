"""The state database's tables and the migrations that build them, one schema version each.

The tables are SQLAlchemy Core, so that one definition serves every database edgeopt speaks.
`MIGRATIONS` is only ever appended to: migration N (1-based) brings a database from schema N-1
to N, and `SCHEMA_VERSION` is their count (the tables below are the newest schema's):

    1  edgeopt_meta, devices, capability_snapshots, deployments, deployment_devices
    2  benchmark_runs (the benchmark cases)
    3  tuning_results
    4  the fleet columns of the cases (`BENCH_V4_COLUMNS`), bench_runs (one row per command run)

`edgeopt_meta` holds one row, `schema_version`, written by `edgeopt.host.store.database`.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations

__all__ = [
    "BENCH_V4_COLUMNS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "benchmark_runs_table",
    "bench_runs_table",
    "deployment_devices_table",
    "deployments_table",
    "devices_table",
    "meta_table",
    "metadata",
    "snapshots_table",
    "tuning_table",
]

metadata = sa.MetaData()
"""Every table of the newest schema (and nothing else: the tests compare a database to it)."""

meta_table = sa.Table(
    "edgeopt_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
devices_table = sa.Table(
    "devices",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("address", sa.String(512), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False, default=""),
    sa.Column("device_id", sa.String(128), nullable=False, default=""),
    sa.Column("last_seen", sa.Float, nullable=False),
)
snapshots_table = sa.Table(
    "capability_snapshots",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("device", sa.String(256), nullable=False, index=True),
    sa.Column("taken", sa.Float, nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("report", sa.Text, nullable=False),
)
deployments_table = sa.Table(
    "deployments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("started", sa.Float, nullable=False),
    sa.Column("finished", sa.Float),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("model_digest", sa.String(64), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("selection", sa.Text, nullable=False),
    sa.Column("options", sa.Text, nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
)
deployment_devices_table = sa.Table(
    "deployment_devices",
    metadata,
    sa.Column("deployment", sa.Integer, sa.ForeignKey("deployments.id"), nullable=False),
    sa.Column("device", sa.String(256), nullable=False),
    sa.Column("canary", sa.Boolean, nullable=False, default=False),
    sa.Column("plan", sa.Text, nullable=False),
    sa.Column("artifact_digest", sa.String(64), nullable=False, default=""),
    sa.Column("version", sa.String(64), nullable=False, default=""),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("error", sa.Text, nullable=False, default=""),
    sa.Column("phases", sa.Text, nullable=False),
    sa.Column("bytes_sent", sa.BigInteger, nullable=False, default=0),
    sa.PrimaryKeyConstraint("deployment", "device"),
)


def _case_columns() -> list[sa.Column[object]]:
    """The columns of the benchmark cases' table (new objects each call: a column has one table)."""
    return [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("taken", sa.Float, nullable=False),
        sa.Column("device", sa.String(256), nullable=False, index=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("model_digest", sa.String(64), nullable=False),
        sa.Column("artifact_digest", sa.String(64), nullable=False),
        sa.Column("precision", sa.String(32), nullable=False),
        sa.Column("plan", sa.Text, nullable=False),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("onnxruntime_version", sa.String(32), nullable=False),
        # Schema 4 (fleet benchmarking): the command run this case belongs to, the case's
        # settings as columns for history queries, its outcome, and what the report shows
        # beside latency.
        sa.Column("run", sa.String(40), nullable=False, server_default=""),
        sa.Column("threads", sa.Integer, nullable=False, server_default="0"),
        sa.Column("provider", sa.String(64), nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False, server_default="ok"),
        sa.Column("error", sa.Text, nullable=False, server_default=""),
        sa.Column("size_bytes", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("accuracy", sa.Text, nullable=False, server_default="{}"),
        sa.Column("flags", sa.Text, nullable=False, server_default="[]"),
        sa.Column("edgeopt_version", sa.String(32), nullable=False, server_default=""),
    ]


benchmark_runs_table = sa.Table("benchmark_runs", metadata, *_case_columns())
"""One benchmark case (a variant, threads and provider on one device) per row."""
BENCH_V4_COLUMNS = ("run", "threads", "provider", "status", "error", "size_bytes", "accuracy",
                    "flags", "edgeopt_version")  # fmt: skip
"""The columns of the cases that schema 4 added."""

bench_runs_table = sa.Table(
    "bench_runs",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("started", sa.Float, nullable=False),
    sa.Column("finished", sa.Float),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("model_digest", sa.String(64), nullable=False),
    sa.Column("selection", sa.Text, nullable=False),
    sa.Column("options", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("edgeopt_version", sa.String(32), nullable=False),
)
"""One `edgeopt bench` command run per row; its cases name it in their `run` column."""

tuning_table = sa.Table(
    "tuning_results",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("taken", sa.Float, nullable=False),
    sa.Column("device", sa.String(256), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("onnxruntime_version", sa.String(32), nullable=False),
    sa.Column("model_digest", sa.String(64), nullable=False),
    sa.Column("constraints", sa.Text, nullable=False),
    sa.Column("best", sa.Text, nullable=False),
    sa.Column("trials", sa.Text, nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),
)


# --- Migrations ---------------------------------------------------------------------------------


def _create_v1(connection: sa.Connection) -> None:
    metadata.create_all(
        connection,
        tables=[
            meta_table,
            devices_table,
            snapshots_table,
            deployments_table,
            deployment_devices_table,
        ],
    )


def _add_benchmark_runs(connection: sa.Connection) -> None:
    # Created as the newest schema has it; _add_bench_matrix then adds nothing to it.
    metadata.create_all(connection, tables=[benchmark_runs_table])


def _add_tuning_results(connection: sa.Connection) -> None:
    metadata.create_all(connection, tables=[tuning_table])


def _add_bench_matrix(connection: sa.Connection) -> None:
    # ALTER TABLE through Alembic's operations, which speak every dialect SQLAlchemy does.
    have = {c["name"] for c in sa.inspect(connection).get_columns(benchmark_runs_table.name)}
    operations = Operations(MigrationContext.configure(connection))
    for name in BENCH_V4_COLUMNS:
        if name not in have:
            column = benchmark_runs_table.c[name]
            operations.add_column(
                benchmark_runs_table.name,
                sa.Column(name, column.type, nullable=False,
                          server_default=column.server_default.arg),  # type: ignore[union-attr]
            )  # fmt: skip
    metadata.create_all(connection, tables=[bench_runs_table])


MIGRATIONS: list[Callable[[sa.Connection], None]] = [
    _create_v1,
    _add_benchmark_runs,
    _add_tuning_results,
    _add_bench_matrix,
]
"""Migration N (1-based) brings a database from schema N-1 to N; only ever appended."""
SCHEMA_VERSION = len(MIGRATIONS)
"""The schema this edgeopt writes; a database at a higher version is refused."""
