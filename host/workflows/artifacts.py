"""Each distinct compression request made once, even when many boards need it at once.

Deploy, bench and tune all turn a board's plan into a `CompressRequest`; boards of one kind ask
for the same one. `Artifacts` keys a request by its `repr` (a frozen dataclass: every field that
changes the artifact is in it), runs the first ask in a worker thread and lets every later ask,
concurrent or not, await that same result; a failure is remembered too and raised again to each
board that needs the artifact. The artifact cache under the compression makes a repeat across
commands free as well; this is the in-run half.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from edgeopt.host.compress import CompressionReport, CompressRequest

__all__ = ["Artifacts"]


class Artifacts:
    """The compressions of one run, by request."""

    def __init__(self, compress_fn: Callable[[CompressRequest], CompressionReport]) -> None:
        self.compress_fn = compress_fn
        self.made: dict[str, asyncio.Task[CompressionReport]] = {}

    @staticmethod
    def key(request: CompressRequest) -> str:
        """What tells two requests apart: every field of the frozen request."""
        return repr(request)

    def started(self, request: CompressRequest) -> bool:
        """Whether this request was asked for before in this run."""
        return self.key(request) in self.made

    async def get(self, request: CompressRequest) -> CompressionReport:
        """The request's artifact, compressed now if nobody asked for it before."""
        key = self.key(request)
        if key not in self.made:
            self.made[key] = asyncio.ensure_future(asyncio.to_thread(self.compress_fn, request))
        return await asyncio.shield(self.made[key])

    def reports(self) -> dict[str, CompressionReport]:
        """Key → report of every compression that finished and succeeded."""
        return {
            key: task.result()
            for key, task in self.made.items()
            if task.done() and not task.cancelled() and task.exception() is None
        }

    @property
    def compressions(self) -> int:
        """Compressions actually run (cache misses); cache hits are not counted."""
        return sum(not report.cached for report in self.reports().values())
