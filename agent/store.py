"""The agent's model store: content-addressed artifacts and a manifest, safe against `kill -9`.

Layout under the store directory:

    blobs/<sha256>            whole artifacts, named by their digest, read-only
    active/NAME               the active version's model.onnx and plan.json, for the board's
                              own applications (active.py)
    uploads/<sha256>.part     bytes of an upload in progress or interrupted (resumable)
    manifest.json             names -> versions -> digest, size, plan; the active version and
                              the activation history of each name

Crash safety: an artifact becomes a blob only after its digest was verified, by a rename of the
fsynced `.part` file; the manifest is written to a temporary file, fsynced, renamed over the old
one and the directory fsynced. So after a crash at any instant the manifest is the old or the new
one, every blob it names is whole, and a `.part` is either resumable or dropped at start-up
(`recover`). A name is only visible once its manifest entry is written, after its blob.

Limits: a per-artifact maximum, a quota on the bytes of blobs and partial uploads together, and
the free disk (with a margin), all checked against the header before any byte is written and
again as bytes arrive. The free-disk check counts the bytes still to come of every other upload
in flight, so concurrent pushes cannot together overrun the disk. Names are checked against
`NAME_PATTERN` (no path tricks, no NUL). Pushes of one digest are serialized, and so are changes
to the manifest.

A full disk (ENOSPC, EDQUOT) is RESOURCE_EXHAUSTED and leaves nothing half-written: an upload
that hits it is removed (keeping it would keep the board's disk full, and no resume can succeed
before room is made anyway), and a manifest write that hits it leaves the old manifest, on disk
and in memory, with no temporary file behind.

Abandoned uploads: a `.part` nobody is sending is dropped once untouched for
`Limits.upload_expiry` (24 h by default; at start-up and whenever an upload asks for room), and
when the quota or the free disk would refuse a push, parts untouched for
`Limits.evict_idle_after` (10 min) that no upload is sending are evicted first, oldest first.

`ModelStore` is here (blobs, room and quota, the manifest's changes); the manifest's records and
its file are manifest.py's, one upload's bytes uploads.py's, and `Refusal` is refusal.py's.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edgeopt.agent import active
from edgeopt.agent.manifest import (
    Entry,
    Version,
    check_digest,
    check_name,
    check_version,
    fsync_dir,
    read_manifest,
    write_manifest,
)
from edgeopt.agent.refusal import Refusal, invalid
from edgeopt.agent.uploads import Upload
from edgeopt.proto.plan import RunPlan

__all__ = [
    "EVICT_IDLE_SECONDS",
    "FREE_DISK_MARGIN",
    "UPLOAD_EXPIRY_SECONDS",
    "Limits",
    "ModelStore",
]

FREE_DISK_MARGIN = 64 << 20
"""Bytes the store leaves free on its file system, so the board keeps working."""
UPLOAD_EXPIRY_SECONDS = 24 * 3600
"""An interrupted upload untouched this long is dropped (a day; `--upload-expiry`)."""
EVICT_IDLE_SECONDS = 10 * 60
"""An interrupted upload untouched this long may be evicted to make room for a new push."""

log = logging.getLogger("edgeopt.agent")


@dataclass(frozen=True)
class Limits:
    """What the store accepts."""

    max_store_bytes: int | None = None
    """Quota on artifacts and partial uploads together (None: the free disk is the limit)."""
    max_artifact_bytes: int = 4 << 30
    """Largest single artifact."""
    upload_expiry: float = UPLOAD_EXPIRY_SECONDS
    """Seconds an interrupted upload may stay untouched before it is dropped."""
    evict_idle_after: float = EVICT_IDLE_SECONDS
    """Seconds untouched after which an interrupted upload may be evicted to make room."""


class ModelStore:
    """Artifacts by digest, and names and versions in a manifest."""

    def __init__(self, root: Path, limits: Limits | None = None) -> None:
        self.root = root
        self.limits = limits or Limits()
        for sub in ("blobs", "uploads"):
            (root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.RLock()
        self._digest_locks: dict[str, threading.Lock] = {}
        self._reserved: dict[str, int] = {}
        """Uploads in flight → their whole size, held against the quota until they end."""
        self._held: dict[str, int] = {}
        """Uploads in flight → bytes of them on disk so far (the rest is still to come)."""
        self._entries = read_manifest(self.manifest_path)

    # --- the manifest -------------------------------------------------------------------

    @property
    def manifest_path(self) -> Path:
        """Where the manifest lives."""
        return self.root / "manifest.json"

    @contextlib.contextmanager
    def _mutating(self) -> Iterator[None]:
        """Change the entries, then write the manifest.

        If the write fails (a full disk), the entries in memory go back to what the manifest
        on disk says.
        """
        with self._lock:
            before = copy.deepcopy(self._entries)
            try:
                yield
                write_manifest(self.manifest_path, self._entries)
            except BaseException:
                self._entries = before
                raise

    def recover(self, stale_after: float | None = None) -> list[str]:
        """Tidy after a crash: drop stray temporary files and blobs no version names.

        Partial uploads stay (they are resumable) unless untouched for `stale_after` seconds
        (default: `Limits.upload_expiry`): an abandoned upload must not hold the quota forever.
        Returns what was removed.
        """
        with self._lock:
            removed = self.expire_uploads(stale_after)
            for stray in self.root.glob(".manifest.*"):
                stray.unlink(missing_ok=True)
                removed.append(stray.name)
            named = {v.sha256 for e in self._entries.values() for v in e.versions}
            for blob in (self.root / "blobs").iterdir():
                if blob.name not in named and not blob.name.startswith("."):
                    blob.unlink(missing_ok=True)
                    removed.append(f"blobs/{blob.name}")
        return removed

    # --- reading ------------------------------------------------------------------------

    def blob(self, sha256: str) -> Path:
        """Where the artifact with this digest lives (whether or not it exists)."""
        return self.root / "blobs" / sha256

    def entries(self) -> dict[str, Entry]:
        """A snapshot of every name."""
        with self._lock:
            return {
                name: Entry(list(e.versions), e.active, list(e.history))
                for name, e in self._entries.items()
            }

    def entry(self, name: str) -> Entry:
        """The name's entry; NOT_FOUND when the store has no such name."""
        check_name(name)
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                known = ", ".join(sorted(self._entries)) or "none"
                raise Refusal("NOT_FOUND", f"no model named {name!r} (stored: {known})")
            return Entry(list(entry.versions), entry.active, list(entry.history))

    def version(self, name: str, version: str = "") -> Version:
        """A version of a name ("" = the newest); NOT_FOUND when missing."""
        entry = self.entry(name)
        if not entry.versions:
            raise Refusal("NOT_FOUND", f"{name} has no versions")
        if not version:
            return entry.versions[-1]
        found = entry.find(version)
        if found is None:
            labels = ", ".join(v.version for v in entry.versions)
            raise Refusal("NOT_FOUND", f"{name} has no version {version!r} (it has {labels})")
        return found

    def uploads_in_flight(self) -> int:
        """Uploads being received now (pushes and pulls)."""
        with self._lock:
            return len(self._reserved)

    def used_bytes(self) -> int:
        """Bytes of blobs and partial uploads."""
        total = 0
        for sub in ("blobs", "uploads"):
            for path in (self.root / sub).iterdir():
                with contextlib.suppress(OSError):
                    total += path.stat().st_size
        return total

    def _idle_parts(self, idle_for: float, keep: str = "") -> list[tuple[float, Path]]:
        """(mtime, path) of the partial uploads no upload is sending, untouched for `idle_for`.

        Oldest first; `keep` names a digest to leave out (the upload asking for room).
        """
        now = time.time()
        found = []
        with self._lock:
            for part in (self.root / "uploads").glob("*.part"):
                digest = part.name[: -len(".part")]
                if digest in self._reserved or digest == keep:
                    continue
                with contextlib.suppress(OSError):
                    mtime = part.stat().st_mtime
                    if now - mtime > idle_for:
                        found.append((mtime, part))
        return sorted(found)

    def expire_uploads(self, after: float | None = None) -> list[str]:
        """Drop partial uploads no upload is sending, untouched for `after` seconds.

        Default: `Limits.upload_expiry`. Returns what was removed (`uploads/<name>`).
        """
        after = self.limits.upload_expiry if after is None else after
        removed = []
        with self._lock:
            for _, part in self._idle_parts(after):
                with contextlib.suppress(FileNotFoundError):
                    part.unlink()
                    removed.append(f"uploads/{part.name}")
        return removed

    def upload_offset(self, sha256: str) -> tuple[bool, int]:
        """(complete, bytes held of an interrupted upload)."""
        check_digest(sha256)
        if self.blob(sha256).is_file():
            return True, 0
        part = self.root / "uploads" / f"{sha256}.part"
        return False, part.stat().st_size if part.is_file() else 0

    # --- writing ------------------------------------------------------------------------

    def progress(self, sha256: str, held: int) -> None:
        """Record how many bytes of an upload in flight are on disk."""
        with self._lock:
            if sha256 in self._reserved:
                self._held[sha256] = held

    def still_to_come(self, exclude: str = "") -> int:
        """Bytes the uploads in flight (but `exclude`) have reserved and not yet written."""
        with self._lock:
            return sum(
                max(0, size - self._held.get(sha256, 0))
                for sha256, size in self._reserved.items()
                if sha256 != exclude
            )

    def check_room(
        self,
        incoming: int,
        *,
        used: int | None = None,
        quota: bool = True,
        exclude: str = "",
        disk_incoming: int | None = None,
    ) -> None:
        """RESOURCE_EXHAUSTED unless `incoming` more bytes fit the quota and the free disk.

        `used` is what counts against the quota (default: the store's bytes on disk); `quota`
        False checks the free disk only. The free disk must hold `disk_incoming` (default
        `incoming`) and the bytes still to come of every upload in flight but `exclude`, and
        keep `FREE_DISK_MARGIN` over.
        """
        limit = self.limits.max_store_bytes if quota else None
        if limit is not None:
            used = self.used_bytes() if used is None else used
            if used + incoming > limit:
                raise Refusal(
                    "RESOURCE_EXHAUSTED",
                    f"store quota exceeded: {used + incoming} bytes needed of {limit} allowed "
                    f"({used} in use); delete versions (DeleteModel) or raise --max-store-bytes",
                )
        incoming = incoming if disk_incoming is None else disk_incoming
        free = shutil.disk_usage(self.root).free
        pending = self.still_to_come(exclude)
        if free - incoming - pending < FREE_DISK_MARGIN:
            others = f", {pending} still to come for other uploads in flight" if pending else ""
            raise Refusal(
                "RESOURCE_EXHAUSTED",
                f"not enough free disk for {incoming} more bytes: {free} free{others}, and the "
                f"store keeps {FREE_DISK_MARGIN} free for the board",
            )

    @contextlib.contextmanager
    def digest_lock(self, sha256: str, timeout: float | None = None) -> Iterator[None]:
        """Serialize uploads of one artifact (two hosts pushing the same file at once).

        With `timeout`, go on without the lock once it has passed (a reader that can live
        with a moving figure).
        """
        with self._lock:
            lock = self._digest_locks.setdefault(sha256, threading.Lock())
        acquired = lock.acquire(timeout=-1 if timeout is None else timeout)
        try:
            yield
        finally:
            if acquired:
                lock.release()

    def begin_upload(self, sha256: str, size: int, offset: int) -> Upload:
        """Start or resume an upload; checks the limits against the whole size first.

        Raises:
            Refusal: INVALID_ARGUMENT for an offset the store does not hold,
                RESOURCE_EXHAUSTED when the artifact cannot fit.
        """
        check_digest(sha256)
        if size > self.limits.max_artifact_bytes:
            raise Refusal(
                "RESOURCE_EXHAUSTED",
                f"artifact of {size} bytes is over this agent's limit of "
                f"{self.limits.max_artifact_bytes} (--max-artifact-bytes)",
            )
        _, held = self.upload_offset(sha256)
        if offset not in (0, held):
            raise invalid(
                f"offset {offset} does not match the {held} bytes the agent holds of {sha256}; "
                "ask GetUploadStatus and resume from there"
            )
        with self._lock:
            self.expire_uploads()
            while True:
                # Bytes on disk, less the partial files of uploads in flight, plus the whole
                # size each of those reserved: two concurrent pushes cannot both squeeze under
                # the quota. The disk needs only what is not held yet.
                parts = sum(self.upload_offset(s)[1] for s in self._reserved)
                committed = (
                    self.used_bytes() - parts - (held if sha256 not in self._reserved else 0)
                )
                try:
                    self.check_room(
                        size,
                        used=committed + sum(self._reserved.values()),
                        exclude=sha256,
                        disk_incoming=size - offset,
                    )
                    break
                except Refusal:
                    # Make room from abandoned uploads before refusing, the oldest first.
                    idle = self._idle_parts(self.limits.evict_idle_after, keep=sha256)
                    if not idle:
                        raise
                    _, oldest = idle[0]
                    oldest.unlink(missing_ok=True)
                    log.warning("evicted the abandoned upload uploads/%s for room", oldest.name)
            self._reserved[sha256] = size
            self._held[sha256] = offset
        try:
            return Upload(self, sha256, size, offset)
        except BaseException:
            self.release(sha256)
            raise

    def release(self, sha256: str) -> None:
        """End an upload's reservation of quota."""
        with self._lock:
            self._reserved.pop(sha256, None)
            self._held.pop(sha256, None)

    def drop_unnamed(self, sha256: str) -> bool:
        """Remove the blob of `sha256` unless a version names it; True when it was removed.

        For a push whose manifest write failed: the artifact it just stored is not kept.
        """
        with self._lock:
            if any(v.sha256 == sha256 for e in self._entries.values() for v in e.versions):
                return False
            blob = self.blob(sha256)
            if not blob.is_file():
                return False
            blob.unlink()
            fsync_dir(blob.parent)
            return True

    def add_version(
        self, name: str, version: str, sha256: str, size: int, plan: RunPlan
    ) -> Version:
        """Record (name, version) → blob; idempotent for the same digest.

        Raises:
            Refusal: ALREADY_EXISTS when the label names another digest.
        """
        check_name(name)
        check_digest(sha256)
        if version:
            check_version(version)
        with self._mutating():
            # Under the lock: a delete of the last version naming this blob cannot slip in.
            if not self.blob(sha256).is_file():
                raise Refusal("FAILED_PRECONDITION", f"artifact {sha256} is not in the store")
            entry = self._entries.setdefault(name, Entry())
            same = next((v for v in entry.versions if v.sha256 == sha256 and not version), None)
            if same is not None:
                return same
            if not version:
                numbers = [
                    int(v.version[1:])
                    for v in entry.versions
                    if v.version.startswith("v") and v.version[1:].isdigit()
                ]
                version = f"v{max(numbers, default=0) + 1}"
            existing = entry.find(version)
            if existing is not None:
                if existing.sha256 == sha256:
                    return existing
                raise Refusal(
                    "ALREADY_EXISTS",
                    f"{name} {version} already holds another artifact ({existing.sha256[:12]}); "
                    "push under a new version label",
                )
            record = Version(version, sha256, size, time.time(), plan)
            entry.versions.append(record)
        return record

    def set_active(self, name: str, version: str, *, rollback: bool = False) -> str:
        """Make `version` active; returns the previously active version ("" for none).

        Then `active/NAME` points at it (active.py), for the board's applications.
        """
        with self._mutating():
            entry = self._entries[name]
            previous = entry.active
            if rollback:
                if entry.history and entry.history[-1] == version:
                    entry.history.pop()
            elif previous and previous != version:
                entry.history.append(previous)
            entry.active = version
            record = entry.find(version)
        if record is not None:
            active.link(self.root, name, record)
        return previous

    def sync_active(self) -> None:
        """Make `active/` match the manifest (at start-up, after a crash mid-switch)."""
        with self._lock:
            current = {n: e.find(e.active) for n, e in self._entries.items() if e.active}
        active.sync(self.root, {n: v for n, v in current.items() if v is not None})

    def set_plan(self, name: str, version: str, plan: RunPlan) -> None:
        """Record the plan a version runs with."""
        with self._mutating():
            found = self._entries[name].find(version)
            if found is not None:
                found.plan = plan

    def rollback_target(self, name: str) -> str:
        """The version a rollback would activate; FAILED_PRECONDITION when there is none."""
        entry = self.entry(name)
        for version in reversed(entry.history):
            if entry.find(version) is not None and version != entry.active:
                return version
        raise Refusal(
            "FAILED_PRECONDITION",
            f"{name} has no earlier active version to roll back to (active: "
            f"{entry.active or 'none'})",
        )

    def delete(self, name: str, version: str, force: bool) -> tuple[list[str], int]:
        """Remove a version ("" = all); returns (labels removed, bytes freed)."""
        entry = self.entry(name)
        doomed = [v for v in entry.versions if not version or v.version == version]
        if version and not doomed:
            self.version(name, version)  # raises NOT_FOUND with the labels
        if entry.active in {v.version for v in doomed} and not force:
            raise Refusal(
                "FAILED_PRECONDITION",
                f"{name} {entry.active} is the active version; activate another first, or "
                "pass force to remove it anyway",
            )
        with self._mutating():
            live = self._entries[name]
            gone = {v.version for v in doomed}
            live.versions = [v for v in live.versions if v.version not in gone]
            live.history = [h for h in live.history if h not in gone]
            if live.active in gone:
                live.active = ""
            if not live.versions:
                del self._entries[name]
        active.unlink(self.root, name, () if name not in self._entries else tuple(gone))
        with self._lock:
            still = {v.sha256 for e in self._entries.values() for v in e.versions}
            freed = 0
            for v in doomed:
                blob = self.blob(v.sha256)
                lock = self._digest_locks.get(v.sha256)
                if lock is not None and lock.locked():
                    continue  # a push of this very artifact is under way: it needs the blob
                if v.sha256 not in still and blob.is_file():
                    freed += blob.stat().st_size
                    blob.unlink()
        return [v.version for v in doomed], freed
