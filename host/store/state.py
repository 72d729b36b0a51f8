"""What the host learns and does, kept across runs: devices, deployments, benchmarks, tunings.

`State` is the one object callers hold: it opens the database (`edgeopt.host.store.database`,
which brings the schema of `edgeopt.host.store.schema` up to date) and has the methods of the
repositories of its tables (`deployments`, `bench`, `tunings`), whose classes it combines.
The names callers and tests have always imported from here (the tables, `MIGRATIONS`,
`SCHEMA_VERSION`, `DeviceRecord`, `StateError`, `ENV_VAR`) are re-exported.
"""

from __future__ import annotations

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


class State(DeploymentStore, BenchStore, TuningStore):
    """The host's database. Use as a context manager, or call `close`.

    Each family of tables is a repository class of its own module (`DeploymentStore`,
    `BenchStore`, `TuningStore`, whose methods it inherits); `State` is the three over one open
    `Database`, so a caller holds one object and no method is written twice.

    Raises `StateError` when the database cannot be opened, was written by a newer edgeopt, or
    fails a query.
    """

    def __init__(self, location: str | None = None) -> None:
        # The repositories' only state is the open database, which all three share: set here
        # once rather than through each of their constructors.
        self.database = Database(location)
        """The open database the repositories share."""
        self.location: str = self.database.location
        """The path or URL as given (or the default)."""
        self.shown: str = self.database.shown
        """Where the database is, for messages: the path, or the URL with its password hidden."""
        self.engine: sa.Engine = self.database.engine

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
