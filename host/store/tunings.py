"""What measured tuning chose for a kind of board, keyed so that the next run can reuse it.

One row per key (a newer answer replaces the older), with the constraints it was chosen
under, the best settings, every trial and the tuned model's traits (what the planner learns
from, edgeopt.host.planning.experience), read back as objects.
"""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa

from edgeopt.host.store.database import Database
from edgeopt.host.store.schema import tuning_table

__all__ = ["TuningStore"]


class TuningStore:
    """The tuning results table of one open `Database`."""

    def __init__(self, database: Database) -> None:
        self.database = database

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
        traits: dict[str, Any] | None = None,
    ) -> None:
        """Remember what tuning chose for a kind of board (replacing an earlier answer)."""
        with self.database.begin() as c:
            c.execute(sa.delete(tuning_table).where(tuning_table.c.key == key))
            c.execute(
                sa.insert(tuning_table).values(
                    key=key, taken=time.time(), device=device, fingerprint=fingerprint,
                    onnxruntime_version=onnxruntime_version, model_digest=model_digest,
                    constraints=json.dumps(constraints), best=json.dumps(best),
                    trials=json.dumps(trials, default=str), seconds=seconds,
                    traits=json.dumps(traits or {}),
                )
            )  # fmt: skip

    def tuning(self, key: str) -> dict[str, Any] | None:
        """The remembered answer for `key`, or None."""
        with self.database.begin() as c:
            row = c.execute(sa.select(tuning_table).where(tuning_table.c.key == key)).mappings()
            found = row.first()
        return _tuning_row(found) if found is not None else None

    def tunings(self, fingerprint: str | None = None) -> list[dict[str, Any]]:
        """Every remembered tuning result (of one kind of board, if given), newest first."""
        query = sa.select(tuning_table).order_by(tuning_table.c.taken.desc())
        if fingerprint is not None:
            query = query.where(tuning_table.c.fingerprint == fingerprint)
        with self.database.begin() as c:
            return [_tuning_row(r) for r in c.execute(query).mappings()]


def _tuning_row(row: Any) -> dict[str, Any]:
    return {
        **dict(row),
        "constraints": json.loads(row["constraints"]),
        "best": json.loads(row["best"]),
        "trials": json.loads(row["trials"]),
        "traits": json.loads(row["traits"]),
    }
