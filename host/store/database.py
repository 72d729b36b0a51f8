"""Where the state database is, opening it, bringing its schema up to date, and its errors.

SQLite in the user's data directory by default (`$EDGEOPT_STATE` or `--state` names another
file, or a database URL such as `postgresql://...` when a team shares one history). Opening a
database applies the migrations it lacks (`edgeopt.host.store.schema`) in one transaction; a
database written by a newer edgeopt is refused with both versions named rather than misread.
Every database error surfaces as a `StateError` naming the database (password hidden).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import platformdirs
import sqlalchemy as sa

from edgeopt.host.errors import StateError
from edgeopt.host.store.schema import MIGRATIONS, SCHEMA_VERSION, meta_table

__all__ = ["CONNECT_TIMEOUT", "ENV_VAR", "Database", "create_engine", "database_url", "default_url"]

ENV_VAR = "EDGEOPT_STATE"
"""The environment variable that names the state database (a path or a URL)."""

CONNECT_TIMEOUT = 10
"""Seconds a database server has to answer before State gives up (a URL's connect_timeout wins)."""


def default_url() -> str:
    """$EDGEOPT_STATE (a path or a URL), else state.db in the user's data directory."""
    env = os.environ.get(ENV_VAR)
    if env:
        return env
    return str(Path(platformdirs.user_data_dir("edgeopt")) / "state.db")


def database_url(location: str) -> str:
    """SQLAlchemy's URL for a path or a URL; a path's folder is created."""
    if location.startswith(("postgresql://", "postgres://")):
        # SQLAlchemy's default PostgreSQL driver is psycopg2; edgeopt ships psycopg 3.
        return "postgresql+psycopg://" + location.split("://", 1)[1]
    if "://" in location:
        return location
    path = Path(location).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def create_engine(url: str) -> sa.Engine:
    """An engine for `url`; a PostgreSQL server gets `CONNECT_TIMEOUT` unless the URL says."""
    parsed = sa.engine.make_url(url)
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        # Without it psycopg waits 130 s for a server that accepts and never answers.
        connect_args["connect_timeout"] = CONNECT_TIMEOUT
    return sa.create_engine(parsed, connect_args=connect_args)


class Database:
    """An open state database at the newest schema; the repositories run their queries here.

    Raises `StateError` when the database cannot be opened or was written by a newer edgeopt;
    a refused database keeps no connection open.
    """

    def __init__(self, location: str | None = None) -> None:
        self.location = location or default_url()
        """The path or URL as given (or the default)."""
        url = database_url(self.location)
        self.shown = self.location
        """Where the database is, for messages: the path, or the URL with its password hidden."""
        try:
            if "://" in self.location:
                self.shown = sa.engine.make_url(url).render_as_string(hide_password=True)
            self.engine = create_engine(url)
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
    def begin(self) -> Iterator[sa.Connection]:
        """A connection in a transaction, committed on success; errors become `StateError`."""
        try:
            with self.engine.begin() as connection:
                yield connection
        except sa.exc.OperationalError as exc:
            raise StateError(self.shown, f"state database error: {_first_line(exc)}") from exc

    def schema_version(self) -> int:
        """The schema version the database is at."""
        with self.begin() as c:
            value = c.execute(
                sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
            ).scalar_one()
        return int(value)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0][:300]
