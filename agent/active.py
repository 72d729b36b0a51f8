"""The stable place where the board's own applications find each active model.

    STORE/active/NAME            a symbolic link to the folder of the active version
    STORE/active/.NAME@VERSION.PLAN/
        model.onnx               the artifact (a hard link to blobs/SHA256: no copy, read-only)
        plan.json                name, version, sha256 and the plan it was activated with

The link is switched by renaming a new link over it, which is atomic: a reader that opens
`active/NAME/model.onnx` gets the old version or the new one, never half of either. A reader
that wants the model and its plan of one version resolves `active/NAME` once
(`os.path.realpath`) and reads both from that folder; the folder of the version before stays
until the next switch, so a reader that resolved it just before a switch still finds it.
Older folders are removed. Nothing here can fail an activation: the manifest is what the agent
runs by, and this is rebuilt from it at start-up (`sync`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path

from edgeopt.agent.manifest import Version, fsync_dir

__all__ = ["ACTIVE", "folder_of", "link", "model_path", "sync", "unlink"]

ACTIVE = "active"
_LEFTOVER = re.compile(r"\.tmp[0-9]+$")
"""What a switch names its folder or link while it builds them (a pid at the end)."""
log = logging.getLogger("edgeopt.agent")


def model_path(root: Path, name: str) -> Path:
    """The stable path of `name`'s active model (whether or not there is one)."""
    return root / ACTIVE / name / "model.onnx"


def folder_of(root: Path, name: str, version: Version) -> Path:
    """The folder a version is published in.

    Its plan is part of the name: a version activated again with another plan gets a new
    folder, never a changed one.
    """
    plan = json.dumps(version.plan.to_dict(), sort_keys=True).encode()
    return root / ACTIVE / f".{name}@{version.version}.{hashlib.sha256(plan).hexdigest()[:8]}"


def link(root: Path, name: str, version: Version) -> Path | None:
    """Point `active/NAME` at `version` (built first if needed); returns the model's real path.

    Never raises: a failure is logged and None returned (the activation stands).
    """
    try:
        return _link(root, name, version)
    except OSError as exc:
        log.warning("could not publish %s %s under %s/: %s", name, version.version, ACTIVE, exc)
        return None


def _link(root: Path, name: str, version: Version) -> Path:
    base = root / ACTIVE
    base.mkdir(mode=0o755, exist_ok=True)
    target = folder_of(root, name, version)
    if not (target / "plan.json").is_file():
        building = target.with_name(f"{target.name}.tmp{os.getpid()}")
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(mode=0o755)
        blob = root / "blobs" / version.sha256
        try:
            os.link(blob, building / "model.onnx")
        except OSError:  # a file system without hard links: a relative symbolic link then
            os.symlink(os.path.relpath(blob, building), building / "model.onnx")
        record = {"name": name, "version": version.version, "sha256": version.sha256,
                  "plan": version.plan.to_dict()}  # fmt: skip
        with (building / "plan.json").open("w", encoding="utf-8") as f:
            json.dump(record, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        shutil.rmtree(target, ignore_errors=True)
        os.replace(building, target)
    fresh = base / f".{name}.link.tmp{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        fresh.unlink()
    os.symlink(target.name, fresh)
    os.replace(fresh, base / name)
    fsync_dir(base)
    _prune(base, name, keep={target.name, _previous(base, name, target.name)})
    return target / "model.onnx"


def _previous(base: Path, name: str, current: str) -> str:
    """The newest other folder of `name`: kept one switch longer for readers mid-open."""
    others = [p for p in base.glob(f".{name}@*") if p.is_dir() and p.name != current
              and not _LEFTOVER.search(p.name)]  # fmt: skip
    return max(others, key=lambda p: p.stat().st_mtime).name if others else ""


def _prune(base: Path, name: str, keep: set[str]) -> None:
    for old in base.glob(f".{name}@*"):
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)


def unlink(root: Path, name: str, versions: tuple[str, ...] = ()) -> None:
    """Remove the published folders of `versions`, and the link when it points at one of them.

    No versions: all of them (the name is gone). Never raises.
    """
    base = root / ACTIVE
    try:
        current = os.readlink(base / name) if (base / name).is_symlink() else ""
        for folder in base.glob(f".{name}@*"):
            label = folder.name[len(name) + 2 :].rsplit(".", 1)[0]
            if versions and label not in versions:
                continue
            if folder.name == current:
                (base / name).unlink()
            shutil.rmtree(folder, ignore_errors=True)
        if not versions and (base / name).is_symlink():
            (base / name).unlink()
    except OSError as exc:
        log.warning("could not tidy %s/%s: %s", ACTIVE, name, exc)


def sync(root: Path, active: dict[str, Version]) -> None:
    """Make `active/` match the manifest (at start-up).

    Links for the active versions, nothing for names that have none.
    """
    base = root / ACTIVE
    if base.is_dir():  # what a switch killed midway left: a half-built folder, a new link
        for stray in base.iterdir():
            if not _LEFTOVER.search(stray.name):
                continue
            if stray.is_dir() and not stray.is_symlink():
                shutil.rmtree(stray, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    stray.unlink()
    for name, version in active.items():
        link(root, name, version)
    if base.is_dir():
        for entry in base.iterdir():
            if entry.is_symlink() and entry.name not in active:
                unlink(root, entry.name)
