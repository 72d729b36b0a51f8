"""The store's manifest: names → versions (digest, size, plan), the active one and its history.

`Version` and `Entry` are its records; `check_name`, `check_version` and `check_digest` say what a
name, a label and a digest may be (no path tricks, no NUL); `read_manifest` and
`write_manifest` keep the file, which is replaced atomically and durably (store.py's docstring
has the layout and the crash-safety argument).
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeopt.agent.refusal import disk_full, invalid, is_disk_full
from edgeopt.proto.fleetstate import NAME_PATTERN, VERSION_PATTERN
from edgeopt.proto.plan import RunPlan

__all__ = [
    "MANIFEST_FORMAT",
    "NAME_PATTERN",
    "SHA256_PATTERN",
    "VERSION_PATTERN",
    "Entry",
    "Version",
    "check_digest",
    "check_name",
    "check_version",
    "fsync_dir",
    "read_manifest",
    "write_manifest",
]

SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
MANIFEST_FORMAT = 1


def check_name(name: str) -> None:
    """Raise INVALID_ARGUMENT unless `name` is a safe model name."""
    if not NAME_PATTERN.fullmatch(name):
        raise invalid(
            f"model name {name!r} is not allowed: use 1 to 128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (no '/', no NUL)"
        )


def check_version(version: str) -> None:
    """Raise INVALID_ARGUMENT unless `version` is a safe version label."""
    if not VERSION_PATTERN.fullmatch(version):
        raise invalid(
            f"version label {version!r} is not allowed: use 1 to 64 letters, digits, '.', '_', "
            "'+' or '-', starting with a letter or digit"
        )


def check_digest(sha256: str) -> None:
    """Raise INVALID_ARGUMENT unless `sha256` is 64 lower-case hex digits."""
    if not SHA256_PATTERN.fullmatch(sha256):
        raise invalid(f"sha256 must be 64 lower-case hex digits, got {sha256!r}")


@dataclass
class Version:
    """One stored version of a name."""

    version: str
    sha256: str
    size: int
    created: float
    plan: RunPlan = field(default_factory=RunPlan)

    def to_dict(self) -> dict[str, Any]:
        """The version as the manifest holds it (`from_dict` reads it back)."""
        return {
            "version": self.version, "sha256": self.sha256, "size": self.size,
            "created": self.created, "plan": self.plan.to_dict(),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Version:
        """A version as the manifest holds it."""
        return cls(**{**data, "plan": RunPlan.from_dict(data.get("plan") or {})})


@dataclass
class Entry:
    """A name: its versions, oldest first, and which one is active."""

    versions: list[Version] = field(default_factory=list)
    active: str = ""
    history: list[str] = field(default_factory=list)
    """Versions activated before the current one, most recent last (for rollback)."""

    def find(self, version: str) -> Version | None:
        """The version with this label, or None."""
        return next((v for v in self.versions if v.version == version), None)


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_manifest(path: Path) -> dict[str, Entry]:
    """The entries a manifest holds (none when there is no manifest yet)."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    entries = {}
    for name, data in raw.get("models", {}).items():
        versions = [Version.from_dict(v) for v in data.get("versions", [])]
        entries[name] = Entry(versions, data.get("active", ""), data.get("history", []))
    return entries


def write_manifest(path: Path, entries: dict[str, Entry]) -> None:
    """Replace the manifest with `entries`, atomically and durably.

    Written to a temporary file, fsynced, renamed over the old one and the folder fsynced:
    after a crash the manifest is the old or the new one. A full disk is RESOURCE_EXHAUSTED
    and leaves the old manifest, with no temporary file behind.
    """
    payload = {
        "format": MANIFEST_FORMAT,
        "models": {
            name: {
                "versions": [v.to_dict() for v in e.versions],
                "active": e.active,
                "history": e.history,
            }
            for name, e in sorted(entries.items())
        },
    }
    tmp = path.with_name(f".manifest.{os.getpid()}.{threading.get_ident()}")
    try:
        with tmp.open("w") as f:
            json.dump(payload, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)  # never leave a half-written manifest behind
        if is_disk_full(exc):
            assert isinstance(exc, OSError)
            raise disk_full(
                exc, "writing the manifest", "the models and active versions are as before"
            ) from exc
        raise
    fsync_dir(path.parent)
