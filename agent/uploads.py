"""One upload into the store: bytes appended to a resumable `.part`, verified, made a blob.

The store (store.py) decides whether an upload may begin and reserves its size against the quota;
an `Upload` then receives the bytes, looks at the free disk again as they arrive, and on `finish`
checks the length and the digest before the part becomes a read-only blob by a rename.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from edgeopt.agent.manifest import fsync_dir
from edgeopt.agent.refusal import Refusal, disk_full, invalid, is_disk_full

if TYPE_CHECKING:
    from edgeopt.agent.store import ModelStore

__all__ = ["DISK_CHECK_EVERY", "Upload"]

DISK_CHECK_EVERY = 16 << 20
"""An upload looks at the free disk again after this many bytes."""


class Upload:
    """An upload in progress: append bytes, then `finish` to verify and store."""

    def __init__(self, store: ModelStore, sha256: str, size: int, offset: int) -> None:
        self.store, self.sha256, self.size = store, sha256, size
        self.part = store.root / "uploads" / f"{sha256}.part"
        self.received = 0
        self._file = self.part.open("r+b" if offset else "wb")
        self._file.truncate(offset)
        # The digest grows with the bytes (no second read of the file at the end); a resumed
        # upload first hashes what it already holds.
        self._hash = hashlib.sha256()
        while self._file.tell() < offset:
            self._hash.update(self._file.read(min(1 << 20, offset - self._file.tell())))
        self._file.seek(offset)
        self.offset = offset
        # The quota was checked for the whole size when the upload began (and the size is
        # reserved until it ends); as bytes arrive only the free disk is looked at again.
        self._next_disk_check = 0

    @property
    def position(self) -> int:
        """Bytes of the artifact held so far."""
        return self.offset + self.received

    def write(self, chunk: bytes) -> None:
        """Append a chunk; refuses bytes past the declared size or over the quota."""
        if self.position + len(chunk) > self.size:
            self.abort(keep=False)
            raise invalid(
                f"chunk past the declared size: {self.position + len(chunk)} bytes sent for an "
                f"artifact of {self.size}; the upload was dropped"
            )
        try:
            if self.position >= self._next_disk_check:
                # What this upload still needs, next to what the others still need: the disk
                # may have filled from elsewhere on the board since the upload began.
                remaining = self.size - self.position
                self.store.check_room(remaining, quota=False, exclude=self.sha256)
                self._next_disk_check = self.position + DISK_CHECK_EVERY
            self._file.write(chunk)
        except Refusal:
            self.abort(keep=False)
            raise
        except OSError as exc:
            self._disk_full(exc)
        self._hash.update(chunk)
        self.received += len(chunk)
        self.store.progress(self.sha256, self.position)

    def _disk_full(self, exc: OSError) -> NoReturn:
        """Re-raise `exc`, as RESOURCE_EXHAUSTED with the part removed when the disk is full."""
        if not is_disk_full(exc):
            raise exc
        self.abort(keep=False)
        raise disk_full(exc, f"receiving {self.sha256}", "the partial upload was removed") from exc

    def abort(self, keep: bool) -> None:
        """Stop here; keep the bytes for a resume, or drop them. Safe to call twice."""
        if not self._file.closed:
            # On a full disk the flush fails, and close() flushes again: a failure here loses
            # nothing the resume offset (the file's size) does not account for.
            with contextlib.suppress(OSError):
                self._file.flush()
                os.fsync(self._file.fileno())
            with contextlib.suppress(OSError):
                self._file.close()
        self.store.release(self.sha256)
        if not keep:
            self.part.unlink(missing_ok=True)

    def finish(self) -> Path:
        """Verify length and digest and move the bytes into blobs/.

        Raises:
            Refusal: DATA_LOSS when the stream ended early (bytes kept for a resume) or the
                digest does not match (bytes dropped).
        """
        if self.position < self.size:
            self.abort(keep=True)
            raise Refusal(
                "DATA_LOSS",
                f"upload incomplete: {self.position} of {self.size} bytes arrived; resume from "
                f"offset {self.position} (GetUploadStatus)",
            )
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        except OSError as exc:
            self._disk_full(exc)
        self.store.release(self.sha256)
        digest = self._hash.hexdigest()
        if digest != self.sha256:
            self.part.unlink(missing_ok=True)
            raise Refusal(
                "DATA_LOSS",
                f"digest mismatch: the bytes received hash to {digest}, the header said "
                f"{self.sha256}; nothing was stored",
            )
        blob = self.store.blob(self.sha256)
        os.chmod(self.part, 0o444)
        os.replace(self.part, blob)
        fsync_dir(blob.parent)
        return blob
