"""A TCP proxy on loopback that drops the first connection after a number of bytes.

For resume tests and benchmarks: the host talks to the agent through the proxy; the first
connection is closed (both ways) once `cut` bytes went from the host to the agent, as a dropped
Wi-Fi link would; every later connection passes untouched.
"""

from __future__ import annotations

import asyncio


class CuttingProxy:
    """Forwards 127.0.0.1:port to the agent; drops the first connection after `cut` bytes.

    Use `await start()`, then `await close()` before the event loop ends.
    """

    def __init__(self, target: str, cut: int) -> None:
        self.host, port = target.rsplit(":", 1)
        self.target_port = int(port)
        self.cut = cut
        self.cuts = 0
        self.port = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen on a free loopback port (`self.port`)."""
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and close every connection."""
        self.server.close()
        for writer in self._writers:
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._handle(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.append(up_writer)
        cut_this = self.cuts == 0
        if cut_this:
            self.cuts += 1
        forwarded = 0

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, count: bool) -> None:
            nonlocal forwarded
            try:
                while data := await src.read(65536):
                    if count and cut_this:
                        forwarded += len(data)
                        if forwarded > self.cut:
                            break
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError, asyncio.CancelledError):
                pass
            finally:
                for w in (writer, up_writer):
                    w.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))
