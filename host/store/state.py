"""What the host learns and does, kept across runs: devices, deployments, benchmarks, tunings.

`State` is the one object callers hold: it opens the database (`edgeopt.host.store.database`,
which brings the schema of `edgeopt.host.store.schema` up to date) and hands each call to the
repository of its tables (`deployments`, `bench`, `tunings`). The names callers and tests have
always imported from here (the tables, `MIGRATIONS`, `SCHEMA_VERSION`, `DeviceRecord`,
`StateError`, `ENV_VAR`) are re-exported.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from edgeopt.host.errors import StateError
from edgeopt.host.store.bench import BenchStore, edgeopt_version
from edgeopt.host.store.database import CONNECT_TIMEOUT, ENV_VAR, Database, default_url
from edgeopt.host.store.deployments import DeploymentStore, DeviceRecord
from edgeopt.host.store.schema import (
    BENCH_V4_COLUMNS,
    MIGRATIONS,
    SCHEMA_VERSION,
    bench_cases_table,
    bench_runs_table,
    deployment_devices_table,
    deployments_table,
    devices_table,
    meta_table,
    metadata,
    snapshots_table,
    tuning_table,
)
from edgeopt.host.store.tunings import TuningStore

__all__ = [
    "BENCH_V4_COLUMNS",
    "CONNECT_TIMEOUT",
    "ENV_VAR",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "DeviceRecord",
    "State",
    "StateError",
    "bench_cases_table",
    "bench_runs_table",
    "default_url",
    "deployment_devices_table",
    "deployments_table",
    "devices_table",
    "edgeopt_version",
    "meta_table",
    "metadata",
    "snapshots_table",
    "tuning_table",
]


class State:
    """The host's database. Use as a context manager, or call `close`.

    Raises `StateError` when the database cannot be opened, was written by a newer edgeopt, or
    fails a query.
    """

    def __init__(self, location: str | None = None) -> None:
        self.database = Database(location)
        """The open database the repositories below share."""
        self.location: str = self.database.location
        """The path or URL as given (or the default)."""
        self.shown: str = self.database.shown
        """Where the database is, for messages: the path, or the URL with its password hidden."""
        self.engine: sa.Engine = self.database.engine
        self._deployments = DeploymentStore(self.database)
        self._bench = BenchStore(self.database)
        self._tunings = TuningStore(self.database)

    def __enter__(self) -> State:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the connections."""
        self.database.close()

    def schema_version(self) -> int:
        """The schema version the database is at."""
        return self.database.schema_version()

    # --- devices and deployments (edgeopt.host.store.deployments) ------------------------------

    def record_capabilities(
        self, device: str, address: str, fingerprint: str, device_id: str, report: dict[str, Any]
    ) -> None:
        """Remember a device and a snapshot of what it reported."""
        self._deployments.record_capabilities(device, address, fingerprint, device_id, report)

    def start_deployment(
        self, model: str, model_digest: str, name: str, selection: str, options: dict[str, Any]
    ) -> int:
        """A new deployment row; returns its id."""
        return self._deployments.start_deployment(model, model_digest, name, selection, options)

    def record_device(self, deployment: int, record: DeviceRecord) -> None:
        """A device's part of a deployment (replaced when written again)."""
        self._deployments.record_device(deployment, record)

    def finish_deployment(self, deployment: int, outcome: str) -> None:
        """Close a deployment with its outcome ("ok", "failed", "halted")."""
        self._deployments.finish_deployment(deployment, outcome)

    def deployments(self, limit: int = 50) -> list[dict[str, Any]]:
        """The most recent deployments, newest first, each with its devices."""
        return self._deployments.deployments(limit)

    # --- benchmarks (edgeopt.host.store.bench) -------------------------------------------------

    def record_benchmark(self, run: dict[str, Any]) -> int:
        """One benchmark case of one device; `run` holds the columns (JSON ones as objects)."""
        return self._bench.record_benchmark(run)

    def benchmarks(
        self,
        device: str | None = None,
        limit: int = 100,
        *,
        run: str | None = None,
        model_digest: str | None = None,
    ) -> list[dict[str, Any]]:
        """Benchmark cases, newest first; of one device, command run or model when named."""
        return self._bench.benchmarks(device, limit, run=run, model_digest=model_digest)

    def start_bench_run(
        self, run: str, model: str, model_digest: str, selection: str, options: dict[str, Any]
    ) -> None:
        """A new `edgeopt bench` command run, "running" until `finish_bench_run`."""
        self._bench.start_bench_run(run, model, model_digest, selection, options)

    def finish_bench_run(self, run: str, status: str) -> None:
        """Close a command run: "ok", "partial" (some cases without a measurement), "failed"."""
        self._bench.finish_bench_run(run, status)

    def bench_runs(
        self, limit: int = 50, *, run: str | None = None, model_digest: str | None = None
    ) -> list[dict[str, Any]]:
        """Command runs, newest first (one by id, or those of one model)."""
        return self._bench.bench_runs(limit, run=run, model_digest=model_digest)

    # --- tuning (edgeopt.host.store.tunings) ---------------------------------------------------

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
        self._tunings.record_tuning(key, device, fingerprint, onnxruntime_version, model_digest,
                                    constraints, best, trials, seconds)  # fmt: skip

    def tuning(self, key: str) -> dict[str, Any] | None:
        """The remembered answer for `key`, or None."""
        return self._tunings.tuning(key)

    def tunings(self) -> list[dict[str, Any]]:
        """Every remembered tuning result, newest first."""
        return self._tunings.tunings()
