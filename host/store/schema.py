"""The state database's tables and the migrations that build them, one schema version each.

The tables are SQLAlchemy Core, so that one definition serves every database edgeopt speaks.
`MIGRATIONS` is only ever appended to: migration N (1-based) brings a database from schema N-1
to N, and `SCHEMA_VERSION` is their count. A migration creates or alters tables as they stood
at its version, so that a database written by an older edgeopt and a new one take the same
path (the tables below are the newest schema's):

    1  edgeopt_meta, devices, capability_snapshots, deployments, deployment_devices
    2  benchmark_runs (the benchmark cases)
    3  tuning_results
    4  the fleet columns of the cases (`BENCH_V4_COLUMNS`), bench_runs (one row per command run)
    5  benchmark_runs renamed bench_cases: it holds cases, and bench_runs holds the runs

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
    "bench_cases_table",
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


bench_cases_table = sa.Table("bench_cases", metadata, *_case_columns())
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
    sa.Column("traits", sa.Text, nullable=False, server_default="{}"),
)


# --- Migrations ---------------------------------------------------------------------------------

_CASES_V2 = sa.Table("benchmark_runs", sa.MetaData(), *_case_columns())
"""The cases' table under its name of schemas 2 to 4, apart from `metadata` (not of today)."""


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
    # Created with the columns of schema 4 too; _add_bench_matrix then adds nothing to it.
    _CASES_V2.create(connection, checkfirst=True)


_TUNING_V3 = sa.Table(
    tuning_table.name, sa.MetaData(),
    *(c._copy() for c in tuning_table.columns if c.name != "traits"),
)  # fmt: skip
"""The tuning results as schema 3 made them, before they kept the model's traits."""


def _add_tuning_results(connection: sa.Connection) -> None:
    _TUNING_V3.create(connection, checkfirst=True)


def _add_tuning_traits(connection: sa.Connection) -> None:
    # What the planner learns from (edgeopt.host.planning.experience): the tuned model's traits.
    have = {c["name"] for c in sa.inspect(connection).get_columns(tuning_table.name)}
    if "traits" not in have:
        Operations(MigrationContext.configure(connection)).add_column(
            tuning_table.name, sa.Column("traits", sa.Text, nullable=False, server_default="{}")
        )


def _add_bench_matrix(connection: sa.Connection) -> None:
    # ALTER TABLE through Alembic's operations, which speak every dialect SQLAlchemy does.
    have = {c["name"] for c in sa.inspect(connection).get_columns(_CASES_V2.name)}
    operations = Operations(MigrationContext.configure(connection))
    for name in BENCH_V4_COLUMNS:
        if name not in have:
            column = _CASES_V2.c[name]
            operations.add_column(
                _CASES_V2.name,
                sa.Column(name, column.type, nullable=False,
                          server_default=column.server_default.arg),  # type: ignore[union-attr]
            )  # fmt: skip
    metadata.create_all(connection, tables=[bench_runs_table])


def _rename_cases_table(connection: sa.Connection) -> None:
    # ALTER TABLE ... RENAME TO keeps every row, on SQLite and PostgreSQL alike; the names that
    # were derived from the table's follow it, so that the database reads as if created today.
    old, new = _CASES_V2.name, bench_cases_table.name
    operations = Operations(MigrationContext.configure(connection))
    operations.rename_table(old, new)
    inspector = sa.inspect(connection)
    # SQLite cannot rename an index: it is made again (one column, in the same transaction).
    indexes = {i["name"] for i in inspector.get_indexes(new)}
    if f"ix_{old}_device" in indexes:
        operations.drop_index(f"ix_{old}_device", table_name=new)
    if f"ix_{new}_device" not in indexes:
        operations.create_index(f"ix_{new}_device", new, ["device"])
    if connection.dialect.name == "postgresql":
        # SQLite names neither; PostgreSQL named them after the table when it was created.
        if inspector.get_pk_constraint(new).get("name") == f"{old}_pkey":
            connection.execute(sa.text(f"ALTER TABLE {new} RENAME CONSTRAINT {old}_pkey "
                                       f"TO {new}_pkey"))  # fmt: skip
        if f"{old}_id_seq" in inspector.get_sequence_names():
            connection.execute(sa.text(f"ALTER SEQUENCE {old}_id_seq RENAME TO {new}_id_seq"))


MIGRATIONS: list[Callable[[sa.Connection], None]] = [
    _create_v1,
    _add_benchmark_runs,
    _add_tuning_results,
    _add_bench_matrix,
    _rename_cases_table,
    _add_tuning_traits,
]
"""Migration N (1-based) brings a database from schema N-1 to N; only ever appended."""
SCHEMA_VERSION = len(MIGRATIONS)
"""The schema this edgeopt writes; a database at a higher version is refused."""
