"""What `edgeopt bench` measured: its command runs (`bench_runs`) and their cases (`bench_cases`).

A case is one variant, thread count and provider on one device; its JSON columns (plan,
result, accuracy, flags) are written from and read back as objects. A command run is
"running" until it is finished with its status.
"""

from __future__ import annotations

import importlib.metadata
import json
import time
from typing import Any

import sqlalchemy as sa

from edgeopt.host.store.database import Database
from edgeopt.host.store.schema import bench_cases_table, bench_runs_table

__all__ = ["BenchStore", "edgeopt_version"]

_JSON_COLUMNS = ("plan", "result", "accuracy", "flags")


def edgeopt_version() -> str:
    """The installed edgeopt's version, recorded with each benchmark run."""
    try:
        return importlib.metadata.version("edgeopt")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


class BenchStore:
    """The bench runs and bench cases tables of one open `Database`."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def record_benchmark(self, run: dict[str, Any]) -> int:
        """One benchmark case of one device; `run` holds the columns (JSON ones as objects)."""
        encoded = {k: json.dumps(run[k], default=str) for k in _JSON_COLUMNS if k in run}
        with self.database.begin() as c:
            result = c.execute(
                sa.insert(bench_cases_table).values(
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
        t = bench_cases_table
        query = sa.select(t).order_by(t.c.id.desc())
        for column, value in ((t.c.device, device), (t.c.run, run),
                              (t.c.model_digest, model_digest)):  # fmt: skip
            if value is not None:
                query = query.where(column == value)
        with self.database.begin() as c:
            rows = c.execute(query.limit(limit)).mappings()
            return [_decoded(r) for r in rows]

    def start_bench_run(
        self, run: str, model: str, model_digest: str, selection: str, options: dict[str, Any]
    ) -> None:
        """A new `edgeopt bench` command run, "running" until `finish_bench_run`."""
        with self.database.begin() as c:
            c.execute(
                sa.insert(bench_runs_table).values(
                    id=run, started=time.time(), model=model, model_digest=model_digest,
                    selection=selection, options=json.dumps(options, default=str),
                    status="running", edgeopt_version=edgeopt_version(),
                )
            )  # fmt: skip

    def finish_bench_run(self, run: str, status: str) -> None:
        """Close a command run: "ok", "partial" (some cases without a measurement), "failed"."""
        with self.database.begin() as c:
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
        with self.database.begin() as c:
            rows = c.execute(query.limit(limit)).mappings()
            return [{**dict(r), "options": json.loads(r["options"])} for r in rows]


def _decoded(row: Any) -> dict[str, Any]:
    return {**dict(row), **{k: json.loads(row[k]) for k in _JSON_COLUMNS}}
