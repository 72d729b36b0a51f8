"""Uploads to an agent: artifacts resumed where they broke off, large inputs pushed aside.

A push sends only what the agent lacks: an artifact it holds costs one status call and a
header, an interrupted one resumes from the offset the agent kept. Inputs too large for one
message (agents take none over 4 MiB) travel as a pushed tensor file named by its digest.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from edgeopt.host.transport.channel import Channel
from edgeopt.host.transport.wire import (
    from_tensors,
    plan_message,
    write_tensor_file,
)
from edgeopt.proto.plan import RunPlan
from edgeopt.proto.v1 import agent_pb2

__all__ = ["CHUNK_SIZE", "INLINE_INPUTS_BYTES", "Uploads", "file_digest"]

CHUNK_SIZE = 1 << 20
"""Bytes per push or InferStream message: large enough for throughput, far below gRPC's 4 MiB
default and the agents' limit."""
INLINE_INPUTS_BYTES = 3 << 20
"""Inputs of a Benchmark, Profile or Activate larger than this travel as a pushed tensor file
(`inputs_sha256`): agents refuse messages over 4 MiB."""
_DIGESTS: dict[tuple[str, int, int, int], str] = {}


class Uploads(Channel):
    """Pushes and the status of uploads; the base of `AgentClient`."""

    async def upload_status(self, sha256: str) -> agent_pb2.UploadStatus:
        """How much of an artifact the agent holds."""
        request = agent_pb2.UploadStatusRequest(sha256=sha256)

        async def attempt(timeout: float) -> agent_pb2.UploadStatus:
            reply: agent_pb2.UploadStatus = await self._stub.GetUploadStatus(
                request, timeout=timeout, metadata=self._metadata
            )
            return reply

        return await self._call("GetUploadStatus", attempt)

    async def push(
        self,
        path: Path,
        name: str,
        *,
        version: str = "",
        plan: RunPlan | agent_pb2.Plan | None = None,
        chunk_size: int = CHUNK_SIZE,
        progress: Callable[[int, int], None] | None = None,
        resumes: int = 3,
    ) -> agent_pb2.PushResult:
        """Upload `path` as (name, version), sending only what the agent lacks.

        An artifact the agent has already costs one status call and a header. An interrupted
        upload (the agent restarted, the link dropped) resumes from the offset the agent
        holds, up to `resumes` times. `progress(sent, total)` is called as bytes go out. The
        deadline grows with the size: `config.deadline` plus one second per MiB.

        Raises:
            AgentError: the agent refused (quota, digest, name) or could not be reached.
        """
        size = path.stat().st_size
        sha256 = file_digest(path)
        budget = self.config.deadline + size / (1 << 20)
        for attempt_number in range(resumes + 1):
            status = await self.upload_status(sha256)
            offset = 0 if status.complete else status.offset
            header = agent_pb2.PushHeader(
                name=name, version=version, sha256=sha256, size=size, offset=offset,
                plan=plan_message(plan) or agent_pb2.Plan(),
            )  # fmt: skip
            try:
                return await self._stream_push(
                    path, header, complete=status.complete, chunk_size=chunk_size,
                    progress=progress, budget=budget,
                )  # fmt: skip
            except grpc.aio.AioRpcError as exc:
                # A connection cut mid-stream surfaces as UNAVAILABLE, CANCELLED or, from
                # grpc's core, INTERNAL ("Internal error from Core", seen here); the agent
                # kept what arrived, and the status call tells where to resume.
                resumable = exc.code() in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.CANCELLED,
                    grpc.StatusCode.INTERNAL,
                ) or (
                    exc.code() == grpc.StatusCode.DATA_LOSS and "incomplete" in str(exc.details())
                )
                if not resumable or attempt_number == resumes:
                    raise self._translate("PushModel", exc) from None
                if exc.code() == grpc.StatusCode.INTERNAL:
                    # Also what gRPC's core reports when the agent refused the header (a full
                    # quota, say) while chunks were still on their way: the header alone carries
                    # no such race and brings the agent's own answer.
                    verdict = await self._header_alone(header, budget)
                    if verdict is not None:
                        return verdict
                await asyncio.sleep(self.config.backoff_initial * 2**attempt_number)
        raise AssertionError("unreachable")

    async def _header_alone(
        self, header: agent_pb2.PushHeader, budget: float
    ) -> agent_pb2.PushResult | None:
        """Send a push's header with no chunk: the agent's verdict on it, without a race.

        Returns the result when the agent has the artifact already; None when it would take
        the bytes (it answers that the upload is incomplete, and keeps what it held).

        Raises:
            AgentError: the agent refuses the header (quota, name, label, digest).
        """

        async def requests() -> AsyncIterator[agent_pb2.PushRequest]:
            yield agent_pb2.PushRequest(header=header)

        try:
            reply: agent_pb2.PushResult = await self._stub.PushModel(
                requests(), timeout=budget, metadata=self._metadata
            )
        except grpc.aio.AioRpcError as exc:
            incomplete = exc.code() == grpc.StatusCode.DATA_LOSS and "incomplete" in str(
                exc.details()
            )
            if incomplete or exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL):
                return None
            raise self._translate("PushModel", exc) from None
        return reply

    async def _stream_push(
        self,
        path: Path,
        header: agent_pb2.PushHeader,
        *,
        complete: bool,
        chunk_size: int,
        progress: Callable[[int, int], None] | None,
        budget: float,
    ) -> agent_pb2.PushResult:
        async def requests() -> AsyncIterator[agent_pb2.PushRequest]:
            yield agent_pb2.PushRequest(header=header)
            if complete:
                return
            sent = header.offset
            with path.open("rb") as f:
                f.seek(header.offset)
                while chunk := f.read(chunk_size):
                    yield agent_pb2.PushRequest(chunk=chunk)
                    sent += len(chunk)
                    if progress is not None:
                        progress(sent, header.size)

        reply: agent_pb2.PushResult = await self._stub.PushModel(
            requests(), timeout=budget, metadata=self._metadata
        )
        return reply

    async def _inputs_aside(self, request: Any, field: str) -> None:
        """Move a request's large inputs into a pushed tensor file named by `inputs_sha256`.

        An agent takes no message over 4 MiB; a tensor file travels in chunks like a model
        (and is not sent again while the agent has it).
        """
        tensors = getattr(request, field)
        if sum(len(t.data) for t in tensors) <= INLINE_INPUTS_BYTES:
            return
        arrays = from_tensors(tensors)
        with tempfile.NamedTemporaryFile(prefix="edgeopt-inputs-", suffix=".tensors") as f:
            write_tensor_file(f, arrays)
            f.flush()
            pushed = await self.push(Path(f.name), "")
        del tensors[:]
        request.inputs_sha256 = pushed.sha256


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, hex.

    Remembered per (path, inode, size, mtime) for the life of the process: a fleet deploy
    pushes one artifact to many boards and hashes it once.
    """
    stat = path.stat()
    key = (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    known = _DIGESTS.get(key)
    if known is not None:
        return known
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    if len(_DIGESTS) > 256:
        _DIGESTS.clear()
    _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]
