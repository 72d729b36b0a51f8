"""What the agent refuses: `Refusal`, carrying the gRPC status name the server answers with.

Every layer below the gRPC service (store, uploads, models, messages) raises it; service.py
turns it into the call's status. A full disk is one refusal (RESOURCE_EXHAUSTED) wherever it is
met, said the same way.
"""

from __future__ import annotations

import errno
import os

__all__ = ["DISK_FULL_ERRNOS", "Refusal", "disk_full", "invalid", "is_disk_full"]

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
"""The errors that say the disk, or the user's quota on it, is full."""


class Refusal(Exception):
    """A request the agent refuses; `code` is the gRPC status name the server answers with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def invalid(message: str) -> Refusal:
    """INVALID_ARGUMENT with `message`."""
    return Refusal("INVALID_ARGUMENT", message)


def disk_full(exc: OSError, doing: str, outcome: str) -> Refusal:
    """RESOURCE_EXHAUSTED for an OSError saying the disk (or the user's disk quota) is full."""
    return Refusal(
        "RESOURCE_EXHAUSTED",
        f"the disk is full ({os.strerror(exc.errno or errno.ENOSPC)}) while {doing}: nothing "
        f"was stored, {outcome}; free disk space on the board or delete versions (DeleteModel)",
    )


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` says the disk (or the user's disk quota) is full."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS
