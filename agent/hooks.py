"""`--on-activate CMD`: tell the board's own applications that a model switched.

After every switch (an activation, a rollback, a pull), the command runs through `/bin/sh -c`
with, in its environment:

    EDGEOPT_MODEL_NAME        the model's name
    EDGEOPT_MODEL_VERSION     the version now active
    EDGEOPT_MODEL_SHA256      its artifact's digest
    EDGEOPT_PREVIOUS_VERSION  the version active before ("" for none)
    EDGEOPT_MODEL_PATH        the version's own model.onnx (stays while it is active, and one
                              switch longer): load this to get exactly this version
    EDGEOPT_MODEL_PLAN        the plan.json beside it (threads, provider, options)
    EDGEOPT_MODEL_LINK        the stable path, STORE/active/NAME/model.onnx

Runs go one at a time, in the order of the switches (a queue and one thread), so an
application sees them in order; each has a time limit, past which its process group is killed.
A failure (an exit status other than 0, the limit, a command that cannot start) is logged and
kept for `ListModels` (`HookRun`); it never undoes the switch. The command is the operator's
own configuration, not anything a peer sends.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

__all__ = ["ActivationHook", "HookRun", "Switch"]

log = logging.getLogger("edgeopt.agent")
OUTPUT_KEPT = 2000


@dataclass(frozen=True)
class Switch:
    """One switch the hook is told of."""

    name: str
    version: str
    sha256: str
    previous: str
    path: str
    plan: str
    link: str


@dataclass(frozen=True)
class HookRun:
    """How the hook's run for one switch went."""

    version: str
    ok: bool
    error: str
    seconds: float
    finished: float


class ActivationHook:
    """Runs `command` for each switch, in order, in a thread of its own."""

    def __init__(self, command: str, timeout: float = 30.0) -> None:
        self.command = command
        self.timeout = timeout
        self.runs: dict[str, HookRun] = {}
        """The last run per model name."""
        self._queue: queue.Queue[Switch | None] = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._work, name="on-activate", daemon=True)
        self._thread.start()

    def fire(self, switch: Switch) -> None:
        """Queue a run for `switch` (returns at once)."""
        self._idle.clear()
        self._queue.put(switch)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every queued run ended; whether they did within `timeout`."""
        return self._idle.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Let the queued runs end (up to `timeout`), then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _work(self) -> None:
        while True:
            switch = self._queue.get()
            if switch is None:
                return
            self.runs[switch.name] = self._run(switch)
            if self._queue.empty():
                self._idle.set()

    def _run(self, switch: Switch) -> HookRun:
        env = {
            **os.environ,
            "EDGEOPT_MODEL_NAME": switch.name,
            "EDGEOPT_MODEL_VERSION": switch.version,
            "EDGEOPT_MODEL_SHA256": switch.sha256,
            "EDGEOPT_PREVIOUS_VERSION": switch.previous,
            "EDGEOPT_MODEL_PATH": switch.path,
            "EDGEOPT_MODEL_PLAN": switch.plan,
            "EDGEOPT_MODEL_LINK": switch.link,
        }
        start = time.monotonic()
        error = ""
        try:
            process = subprocess.Popen(
                ["/bin/sh", "-c", self.command], env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            error = f"the hook could not start: {exc}"
        else:
            try:
                output, _ = process.communicate(timeout=self.timeout)
                if process.returncode != 0:
                    tail = output.decode("utf-8", "replace").strip()[-OUTPUT_KEPT:]
                    error = f"exit status {process.returncode}" + (f": {tail}" if tail else "")
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
                error = f"killed after its time limit of {self.timeout:g} s"
        took = time.monotonic() - start
        if error:
            log.warning("--on-activate for %s %s failed: %s", switch.name, switch.version, error)
        return HookRun(switch.version, not error, error, took, time.time())
