"""The agent's side of the runner: `Runner` starts the child and sends it one request at a time.

`Runner.call(request)` sends one request and waits for its answer; when the child died (EOF on
its stdout), it raises `RunnerCrashed` with the signal or exit status, and the next call starts a
new child. The agent then loads its active models again (see models.py). A call that outlives its
time limit, or whose caller gave up (`cancel` set), kills the child: ONNX Runtime cannot be
interrupted inside a kernel, and a killed child is the only stop that always works. It raises
`RunnerStopped` (a `RunnerCrashed`) saying which.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

from edgeopt.agent.runner.framing import receive, receive_head, send

__all__ = ["Runner", "RunnerCrashed", "RunnerStopped"]


class RunnerCrashed(Exception):
    """The runner process died while (or before) answering."""


class RunnerStopped(RunnerCrashed):
    """The agent killed the runner: the call ran past its time limit, or its caller left."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        """"timeout" or "cancelled"."""


class _Died(Exception):
    """The child's pipe ended where an answer was due."""


class Runner:
    """The agent's handle on one runner child; one request at a time."""

    def __init__(self, log: Path | None = None) -> None:
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self.generation = 0
        """Counts the children started: a new value means the loaded sessions are gone."""
        self.restarts = 0
        """Children killed for a time limit or a cancelled call."""

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs."""
        process = self._process
        return process.pid if process and process.poll() is None else None

    @property
    def busy(self) -> bool:
        """Whether a request is running (or waiting to)."""
        return self._lock.locked()

    def _start(self) -> subprocess.Popen[bytes]:
        stderr = self._log.open("ab") if self._log else subprocess.DEVNULL
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "edgeopt.agent.runner"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                # Ctrl-C in the agent's terminal is the agent's to handle, not the runner's.
                start_new_session=True,
            )
        finally:
            if self._log and not isinstance(stderr, int):
                stderr.close()

    def ensure_started(self) -> int:
        """Start the child if it is not running; returns the generation."""
        with self._lock:
            return self._ensure()

    def _ensure(self) -> int:
        if self._process is None or self._process.poll() is not None:
            self._process = self._start()
            self.generation += 1
        return self.generation

    def _acquire(self, timeout: float | None, cancel: threading.Event | None) -> None:
        """Take the one-request lock, giving up when the time limit passes or the caller left."""
        end = None if timeout is None else time.monotonic() + timeout
        while not self._lock.acquire(timeout=0.1):
            if cancel is not None and cancel.is_set():
                raise RunnerStopped("cancelled", "the call was cancelled while it waited")
            if end is not None and time.monotonic() >= end:
                raise RunnerStopped(
                    "timeout", f"the runner stayed busy with other work for {timeout:g} s"
                )

    def call(
        self,
        request: dict[str, Any],
        timeout: float | None = None,
        progress: Callable[[dict[str, Any]], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> dict[str, Any]:
        """Send `request`, return the answer; `progress` gets the interim frames of long runs.

        `timeout` bounds the whole call (waiting for the runner included); `cancel`, once set,
        ends it. Either kills the child, since ONNX Runtime cannot be stopped inside a run.

        Raises:
            RunnerStopped: the time limit passed or `cancel` was set; the child was killed.
            RunnerCrashed: the child died; the message says how (signal or exit status).
        """
        with self._session(timeout, cancel) as process:
            assert process.stdin is not None and process.stdout is not None
            send(process.stdin, request)
            answer = receive(process.stdout)
            while answer is not None and "progress" in answer:
                if progress is not None:
                    progress(answer["progress"])
                answer = receive(process.stdout)
            if answer is None:
                raise _Died
            return answer

    def stream(
        self,
        request: dict[str, Any],
        timeout: float | None = None,
        cancel: threading.Event | None = None,
        piece: int = 1 << 20,
    ) -> Generator[Any, None, None]:
        """`call` whose answer's buffers are not held: yields the answer, then their bytes.

        The answer comes first, its out-of-band buffers empty and their sizes, in order, under
        "buffer_sizes"; then the
        buffers' bytes in pieces of at most `piece`, in order, as the child writes them. The
        request's buffers are let go once sent (`request` is emptied), so the agent never holds
        a whole inference's inputs and outputs at once. Closing the generator before the end
        kills the child: what it still had to say would stand in the way of the next request.

        Raises:
            RunnerStopped, RunnerCrashed: as `call`.
        """
        with self._session(timeout, cancel) as process:
            assert process.stdin is not None and process.stdout is not None
            send(process.stdin, request)
            request.clear()
            head = receive_head(process.stdout)
            if head is None:
                raise _Died
            answer, sizes = head
            answer["buffer_sizes"] = sizes
            unread = sum(sizes)
            try:
                yield answer
                for size in sizes:
                    left = size
                    while left:
                        data = process.stdout.read(min(piece, left))
                        if not data:
                            raise _Died
                        left -= len(data)
                        unread -= len(data)
                        yield data
            finally:
                if unread:  # left mid-answer: the pipe is out of step with the protocol
                    process.kill()
                    process.wait()

    @contextlib.contextmanager
    def _session(
        self, timeout: float | None, cancel: threading.Event | None
    ) -> Iterator[subprocess.Popen[bytes]]:
        """The child, held for one request and watched for its time limit and its caller.

        Raises:
            RunnerStopped: the time limit passed or `cancel` was set; the child was killed.
            RunnerCrashed: the child died (a broken pipe, or EOF where an answer was due).
        """
        began = time.monotonic()
        self._acquire(timeout, cancel)
        try:
            self._ensure()
            process = self._process
            assert process is not None
            stopped: list[str] = []
            done = threading.Event()
            left = None if timeout is None else max(0.0, timeout - (time.monotonic() - began))
            watcher = threading.Thread(
                target=self._watch, args=(process, left, cancel, done, stopped),
                name="runner-watch", daemon=True,
            )  # fmt: skip
            watcher.start()
            died = False
            try:
                yield process
            except (_Died, BrokenPipeError, OSError):
                died = True
            finally:
                done.set()
                watcher.join()
            if stopped:
                process.wait()
                self.restarts += 1
                reason = stopped[0]
                what = (
                    f"it ran past the agent's limit of {timeout:g} s (--request-timeout)"
                    if reason == "timeout"
                    else "its caller cancelled it"
                )
                raise RunnerStopped(reason, f"the runner was stopped: {what}")
            if died:
                code = process.wait()
                how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
                raise RunnerCrashed(f"the runner process died ({how})")
        finally:
            self._lock.release()

    @staticmethod
    def _watch(
        process: subprocess.Popen[bytes],
        timeout: float | None,
        cancel: threading.Event | None,
        done: threading.Event,
        stopped: list[str],
    ) -> None:
        """Kill `process` when the time runs out or the caller cancels, unless `done` first."""
        end = None if timeout is None else time.monotonic() + timeout
        while not done.wait(0.05):
            reason = None
            if cancel is not None and cancel.is_set():
                reason = "cancelled"
            elif end is not None and time.monotonic() >= end:
                reason = "timeout"
            if reason:
                stopped.append(reason)
                process.kill()
                return

    def kill(self) -> None:
        """Kill the child now, without waiting for the request it runs (shutdown)."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()

    def stop(self, wait: float = 5.0) -> None:
        """End the child (it exits on EOF); killed when busy past `wait` seconds."""
        if not self._lock.acquire(timeout=wait):
            self.kill()
            return
        try:
            if self._process is not None and self._process.poll() is None:
                assert self._process.stdin is not None
                self._process.stdin.close()
                try:
                    self._process.wait(timeout=wait)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            if self._process is not None:  # its pipes go with it (an agent stops many runners)
                for pipe in (self._process.stdin, self._process.stdout):
                    if pipe is not None:
                        pipe.close()
            self._process = None
        finally:
            self._lock.release()
