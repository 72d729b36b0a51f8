"""The artifact cache: one file per (input digest, pass, config, library versions) key.

Lives in `$EDGEOPT_CACHE_DIR`, else the user's cache directory (`~/.cache/edgeopt/artifacts` on
Linux). Entries are written to a temporary name and renamed into place, so a crash never leaves a
half-written artifact under a valid key; each has a JSON sidecar saying what made it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

__all__ = ["ENV_VAR", "ArtifactCache", "CacheEntry", "default_dir"]

ENV_VAR = "EDGEOPT_CACHE_DIR"


def default_dir() -> Path:
    """$EDGEOPT_CACHE_DIR, else the platform's user cache directory for edgeopt."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("edgeopt")) / "artifacts"


@dataclass(frozen=True)
class CacheEntry:
    """One cached artifact."""

    key: str
    """Its key (sha256 hex)."""
    path: Path
    """The model file."""
    size_bytes: int
    """Its size."""
    created: float
    """When it was stored (epoch seconds)."""
    meta: dict[str, Any]
    """What made it: pass and config."""


class ArtifactCache:
    """Content-keyed storage of compressed models."""

    def __init__(self, root: Path | None = None) -> None:
        # Absolute: passes run in a scratch working directory.
        self.root = (root or default_dir()).resolve()

    def _path(self, key: str, suffix: str = ".onnx") -> Path:
        return self.root / key[:2] / f"{key}{suffix}"

    def get(self, key: str) -> Path | None:
        """The artifact stored under `key`, or None."""
        for suffix in (".onnx", ".pt2"):
            path = self._path(key, suffix)
            if path.is_file():
                return path
        return None

    def meta(self, key: str) -> dict[str, Any]:
        """What the sidecar of `key` says (empty when it is missing or unreadable)."""
        for suffix in (".onnx", ".pt2"):
            sidecar = self._path(key, suffix).with_suffix(".json")
            try:
                return dict(json.loads(sidecar.read_text()))
            except (OSError, ValueError):
                continue
        return {}

    def put(self, key: str, src: Path, meta: dict[str, Any]) -> Path:
        """Copy `src` in under `key` atomically and return where it now lives."""
        dst = self._path(key, src.suffix)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
        sidecar = dst.with_suffix(".json")
        sidecar_tmp = sidecar.with_name(f".{sidecar.name}.{os.getpid()}.tmp")
        try:
            shutil.copyfile(src, tmp)
            sidecar_tmp.write_text(json.dumps({**meta, "created": time.time()}, default=str))
            os.replace(sidecar_tmp, sidecar)
            os.replace(tmp, dst)  # last: the model under its key means the entry is whole
        finally:
            tmp.unlink(missing_ok=True)
            sidecar_tmp.unlink(missing_ok=True)
        return dst

    def entries(self) -> Iterator[CacheEntry]:
        """Every stored artifact, oldest first."""
        found = []
        for path in [*self.root.glob("*/*.onnx"), *self.root.glob("*/*.pt2")]:
            sidecar = path.with_suffix(".json")
            try:
                meta = json.loads(sidecar.read_text())
            except (OSError, ValueError):
                meta = {}
            stat = path.stat()
            found.append(
                CacheEntry(path.stem, path, stat.st_size, meta.pop("created", stat.st_mtime), meta)
            )
        yield from sorted(found, key=lambda e: e.created)

    def clear(self) -> tuple[int, int]:
        """Remove every artifact; returns (entries, bytes) removed."""
        count = size = 0
        for entry in list(self.entries()):
            size += entry.size_bytes
            count += 1
            entry.path.unlink(missing_ok=True)
            entry.path.with_suffix(".json").unlink(missing_ok=True)
        return count, size
