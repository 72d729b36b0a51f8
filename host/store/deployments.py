"""Devices, the capability snapshots they reported, and deployments with each device's part.

`record_capabilities` keeps one row per device (its newest address and fingerprint) and every
snapshot; a deployment is one row, "running" until it is finished, with one `DeviceRecord` per
device written as the device's part ends.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from edgeopt.host.store.database import Database
from edgeopt.host.store.schema import (
    deployment_devices_table,
    deployments_table,
    devices_table,
    snapshots_table,
)

__all__ = ["DeploymentStore", "DeviceRecord"]


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


class DeploymentStore:
    """The devices, capabilities and deployments tables of one open `Database`."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def record_capabilities(
        self, device: str, address: str, fingerprint: str, device_id: str, report: dict[str, Any]
    ) -> None:
        """Remember a device and a snapshot of what it reported."""
        now = time.time()
        with self.database.begin() as c:
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

    def last_capabilities(self, device: str) -> dict[str, Any] | None:
        """The newest snapshot of what `device` reported, or None when it never reported."""
        with self.database.begin() as c:
            row = c.execute(
                sa.select(snapshots_table.c.report)
                .where(snapshots_table.c.device == device)
                .order_by(snapshots_table.c.taken.desc(), snapshots_table.c.id.desc())
                .limit(1)
            ).first()
        if row is None:
            return None
        try:
            report = json.loads(row[0])
        except ValueError:
            return None
        return report if isinstance(report, dict) else None

    def start_deployment(
        self, model: str, model_digest: str, name: str, selection: str, options: dict[str, Any]
    ) -> int:
        """A new deployment row; returns its id."""
        with self.database.begin() as c:
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
        with self.database.begin() as c:
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
        with self.database.begin() as c:
            c.execute(
                sa.update(deployments_table)
                .where(deployments_table.c.id == deployment)
                .values(finished=time.time(), outcome=outcome)
            )

    def deployments(self, limit: int = 50) -> list[dict[str, Any]]:
        """The most recent deployments, newest first, each with its devices."""
        with self.database.begin() as c:
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
