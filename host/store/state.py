"""What the host learns and does, kept across runs: devices, capability snapshots, deployments.

One database, SQLite in the user's data directory by default (`$EDGEOPT_STATE` or `--state`
names another file, or a database URL such as `postgresql://...` when a team shares one
history). The schema is written with SQLAlchemy Core so that the same tables and queries serve
every database it speaks, and it is versioned: `SCHEMA_VERSION` counts the migrations in
`MIGRATIONS`; opening a database applies the missing ones in a transaction, and a database
written by a newer edgeopt is refused with both versions named rather than misread.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations

from edgeopt.host.errors import StateError

ENV_VAR = "EDGEOPT_STATE"

metadata = sa.MetaData()

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


benchmark_runs_table = sa.Table(
    "benchmark_runs",
    metadata,
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
    # Schema 4 (fleet benchmarking): the command run this case belongs to, the case's settings
    # as columns for history queries, its outcome, and what the report shows beside latency.
    sa.Column("run", sa.String(40), nullable=False, server_default=""),
    sa.Column("threads", sa.Integer, nullable=False, server_default="0"),
    sa.Column("provider", sa.String(64), nullable=False, server_default=""),
    sa.Column("status", sa.String(16), nullable=False, server_default="ok"),
    sa.Column("error", sa.Text, nullable=False, server_default=""),
    sa.Column("size_bytes", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("accuracy", sa.Text, nullable=False, server_default="{}"),
    sa.Column("flags", sa.Text, nullable=False, server_default="[]"),
    sa.Column("edgeopt_version", sa.String(32), nullable=False, server_default=""),
)
BENCH_V4_COLUMNS = ("run", "threads", "provider", "status", "error", "size_bytes", "accuracy",
                    "flags", "edgeopt_version")  # fmt: skip

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


def default_url() -> str:
    """$EDGEOPT_STATE (a path or a URL), else state.db in the user's data directory."""
    env = os.environ.get(ENV_VAR)
    if env:
        return env
    return str(Path(platformdirs.user_data_dir("edgeopt")) / "state.db")


def _url(location: str) -> str:
    if location.startswith(("postgresql://", "postgres://")):
        # SQLAlchemy's default PostgreSQL driver is psycopg2; edgeopt ships psycopg 3.
        return "postgresql+psycopg://" + location.split("://", 1)[1]
    if "://" in location:
        return location
    path = Path(location).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


CONNECT_TIMEOUT = 10
"""Seconds a database server has to answer before State gives up (a URL's connect_timeout wins)."""


def _engine(url: str) -> sa.Engine:
    parsed = sa.engine.make_url(url)
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        # Without it psycopg waits 130 s for a server that accepts and never answers.
        connect_args["connect_timeout"] = CONNECT_TIMEOUT
    return sa.create_engine(parsed, connect_args=connect_args)


def edgeopt_version() -> str:
    """The installed edgeopt's version, recorded with each benchmark run."""
    try:
        return importlib.metadata.version("edgeopt")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass
class DeviceRecord:
    """One device's row of a deployment."""

    device: str
    plan: dict[str, Any]
    outcome: str
    canary: bool = False
    artifact_digest: str = ""
    version: str = ""
    error: str = ""
    phases: dict[str, float] = field(default_factory=dict)
    bytes_sent: int = 0


class State:
    """The host's database. Use as a context manager, or call `close`."""

    def __init__(self, location: str | None = None) -> None:
        self.location = location or default_url()
        url = _url(self.location)
        self.shown = self.location
        """Where the database is, for messages: the path, or the URL with its password hidden."""
        try:
            if "://" in self.location:
                self.shown = sa.engine.make_url(url).render_as_string(hide_password=True)
            self.engine = _engine(url)
            try:
                with self.engine.begin() as connection:
                    self._migrate(connection)
            except BaseException:
                self.engine.dispose()  # a refused database keeps no connection open
                raise
        except sa.exc.SQLAlchemyError as exc:
            raise StateError(
                self.shown, f"cannot open the state database: {_first_line(exc)}"
            ) from exc

    def __enter__(self) -> State:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()

    def _migrate(self, connection: sa.Connection) -> None:
        inspector = sa.inspect(connection)
        version = 0
        if inspector.has_table(meta_table.name):
            row = connection.execute(
                sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
            ).first()
            version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise StateError(
                self.shown,
                f"written by a newer edgeopt (schema version {version}; this edgeopt knows up "
                f"to {SCHEMA_VERSION}): upgrade edgeopt, or use another --state",
            )
        for step in MIGRATIONS[version:]:
            step(connection)
        if version < SCHEMA_VERSION:
            connection.execute(sa.delete(meta_table).where(meta_table.c.key == "schema_version"))
            connection.execute(
                sa.insert(meta_table).values(key="schema_version", value=str(SCHEMA_VERSION))
            )

    @contextmanager
    def _begin(self) -> Iterator[sa.Connection]:
        try:
            with self.engine.begin() as connection:
                yield connection
        except sa.exc.OperationalError as exc:
            raise StateError(self.shown, f"state database error: {_first_line(exc)}") from exc

    def schema_version(self) -> int:
        """The schema version the database is at."""
        with self._begin() as c:
            value = c.execute(
                sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
            ).scalar_one()
        return int(value)

    def record_capabilities(
        self, device: str, address: str, fingerprint: str, device_id: str, report: dict[str, Any]
    ) -> None:
        """Remember a device and a snapshot of what it reported."""
        now = time.time()
        with self._begin() as c:
            c.execute(sa.delete(devices_table).where(devices_table.c.name == device))
            c.execute(
                sa.insert(devices_table).values(
                    name=device, address=address, fingerprint=fingerprint,
                    device_id=device_id, last_seen=now,
                )
            )  # fmt: skip
            c.execute(
                sa.insert(snapshots_table).values(
                    device=device, taken=now, fingerprint=fingerprint,
                    report=json.dumps(report, default=str),
                )
            )  # fmt: skip

    def start_deployment(
        self, model: str, model_digest: str, name: str, selection: str, options: dict[str, Any]
    ) -> int:
        """A new deployment row; returns its id."""
        with self._begin() as c:
            result = c.execute(
                sa.insert(deployments_table).values(
                    started=time.time(), model=model, model_digest=model_digest, name=name,
                    selection=selection, options=json.dumps(options, default=str),
                    outcome="running",
                )
            )  # fmt: skip
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def record_device(self, deployment: int, record: DeviceRecord) -> None:
        """A device's part of a deployment (replaced when written again)."""
        with self._begin() as c:
            c.execute(
                sa.delete(deployment_devices_table).where(
                    (deployment_devices_table.c.deployment == deployment)
                    & (deployment_devices_table.c.device == record.device)
                )
            )
            c.execute(
                sa.insert(deployment_devices_table).values(
                    deployment=deployment, device=record.device, canary=record.canary,
                    plan=json.dumps(record.plan), artifact_digest=record.artifact_digest,
                    version=record.version, outcome=record.outcome, error=record.error,
                    phases=json.dumps(record.phases), bytes_sent=record.bytes_sent,
                )
            )  # fmt: skip

    def finish_deployment(self, deployment: int, outcome: str) -> None:
        """Close a deployment with its outcome ("ok", "failed", "halted")."""
        with self._begin() as c:
            c.execute(
                sa.update(deployments_table)
                .where(deployments_table.c.id == deployment)
                .values(finished=time.time(), outcome=outcome)
            )

    def record_benchmark(self, run: dict[str, Any]) -> int:
        """One benchmark case of one device; `run` holds the columns (JSON ones as objects)."""
        encoded = {k: json.dumps(run[k], default=str) for k in _JSON_COLUMNS if k in run}
        with self._begin() as c:
            result = c.execute(
                sa.insert(benchmark_runs_table).values(
                    taken=time.time(),
                    **{k: v for k, v in run.items() if k not in _JSON_COLUMNS},
                    **encoded,
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def benchmarks(
        self,
        device: str | None = None,
        limit: int = 100,
        *,
        run: str | None = None,
        model_digest: str | None = None,
    ) -> list[dict[str, Any]]:
        """Benchmark cases, newest first; of one device, command run or model when named."""
        t = benchmark_runs_table
        query = sa.select(t).order_by(t.c.id.desc())
        for column, value in ((t.c.device, device), (t.c.run, run),
                              (t.c.model_digest, model_digest)):  # fmt: skip
            if value is not None:
                query = query.where(column == value)
        with self._begin() as c:
            rows = c.execute(query.limit(limit)).mappings()
            return [_decoded(r) for r in rows]

    def start_bench_run(
        self, run: str, model: str, model_digest: str, selection: str, options: dict[str, Any]
    ) -> None:
        """A new `edgeopt bench` command run, "running" until `finish_bench_run`."""
        with self._begin() as c:
            c.execute(
                sa.insert(bench_runs_table).values(
                    id=run, started=time.time(), model=model, model_digest=model_digest,
                    selection=selection, options=json.dumps(options, default=str),
                    status="running", edgeopt_version=edgeopt_version(),
                )
            )  # fmt: skip

    def finish_bench_run(self, run: str, status: str) -> None:
        """Close a command run: "ok", "partial" (some cases without a measurement), "failed"."""
        with self._begin() as c:
            c.execute(
                sa.update(bench_runs_table)
                .where(bench_runs_table.c.id == run)
                .values(finished=time.time(), status=status)
            )

    def bench_runs(
        self, limit: int = 50, *, run: str | None = None, model_digest: str | None = None
    ) -> list[dict[str, Any]]:
        """Command runs, newest first (one by id, or those of one model)."""
        t = bench_runs_table
        query = sa.select(t).order_by(t.c.started.desc())
        if run is not None:
            query = query.where(t.c.id == run)
        if model_digest is not None:
            query = query.where(t.c.model_digest == model_digest)
        with self._begin() as c:
            rows = c.execute(query.limit(limit)).mappings()
            return [{**dict(r), "options": json.loads(r["options"])} for r in rows]

    def record_tuning(  # noqa: PLR0917  (one row's columns)
        self,
        key: str,
        device: str,
        fingerprint: str,
        onnxruntime_version: str,
        model_digest: str,
        constraints: dict[str, Any],
        best: dict[str, Any],
        trials: list[dict[str, Any]],
        seconds: float,
    ) -> None:
        """Remember what tuning chose for a kind of board (replacing an earlier answer)."""
        with self._begin() as c:
            c.execute(sa.delete(tuning_table).where(tuning_table.c.key == key))
            c.execute(
                sa.insert(tuning_table).values(
                    key=key, taken=time.time(), device=device, fingerprint=fingerprint,
                    onnxruntime_version=onnxruntime_version, model_digest=model_digest,
                    constraints=json.dumps(constraints), best=json.dumps(best),
                    trials=json.dumps(trials, default=str), seconds=seconds,
                )
            )  # fmt: skip

    def tuning(self, key: str) -> dict[str, Any] | None:
        """The remembered answer for `key`, or None."""
        with self._begin() as c:
            row = c.execute(sa.select(tuning_table).where(tuning_table.c.key == key)).mappings()
            found = row.first()
        return _tuning_row(found) if found is not None else None

    def tunings(self) -> list[dict[str, Any]]:
        """Every remembered tuning result, newest first."""
        with self._begin() as c:
            rows = c.execute(
                sa.select(tuning_table).order_by(tuning_table.c.taken.desc())
            ).mappings()
            return [_tuning_row(r) for r in rows]

    def deployments(self, limit: int = 50) -> list[dict[str, Any]]:
        """The most recent deployments, newest first, each with its devices."""
        with self._begin() as c:
            rows = c.execute(
                sa.select(deployments_table).order_by(deployments_table.c.id.desc()).limit(limit)
            ).mappings()
            out = []
            for row in rows:
                devices = c.execute(
                    sa.select(deployment_devices_table)
                    .where(deployment_devices_table.c.deployment == row["id"])
                    .order_by(deployment_devices_table.c.device)
                ).mappings()
                out.append(
                    {
                        **dict(row),
                        "options": json.loads(row["options"]),
                        "devices": [
                            {
                                **dict(d),
                                "plan": json.loads(d["plan"]),
                                "phases": json.loads(d["phases"]),
                            }
                            for d in devices
                        ],
                    }
                )
            return out


_JSON_COLUMNS = ("plan", "result", "accuracy", "flags")


def _decoded(row: Any) -> dict[str, Any]:
    return {**dict(row), **{k: json.loads(row[k]) for k in _JSON_COLUMNS}}


def _tuning_row(row: Any) -> dict[str, Any]:
    return {
        **dict(row),
        "constraints": json.loads(row["constraints"]),
        "best": json.loads(row["best"]),
        "trials": json.loads(row["trials"]),
    }


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0][:300]
