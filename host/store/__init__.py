"""The host's state database: devices, deployments, benchmark runs and cases, tunings.

May import: edgeopt.host.errors, edgeopt.host.config (nothing above them). SQLite by default,
PostgreSQL by URL. Callers hold a `State` (`edgeopt.host.store.state`); the modules below it
import only downwards (state ──> deployments, bench, tunings ──> database ──> schema):

    state        the facade: opens the database, one method per query, re-exports the names
    database     where the database is (path, URL, $EDGEOPT_STATE), opening, migrating, errors
    schema       the tables, MIGRATIONS (only appended) and SCHEMA_VERSION, the meta table
    deployments  devices, capability snapshots, deployments and each device's part
    bench        `edgeopt bench` command runs (bench_runs) and their cases (bench_cases)
    tunings      what measured tuning chose for a kind of board
"""

__all__ = ["bench", "database", "deployments", "schema", "state", "tunings"]
