"""Headless Chromium for tests: a page's screenshot and every console message it logged.

Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON
messages separated by NUL bytes on file descriptors 3 and 4), which needs no websocket client.
The protocol is used rather than `--enable-logging=stderr`, whose CONSOLE lines carry no level
(console.log and console.error look the same) and leave out failed loads ("Failed to load
resource: net::ERR_FILE_NOT_FOUND"), which DevTools reports as errors. Here errors come from
three places: uncaught exceptions (Runtime.exceptionThrown), console.error/assert
(Runtime.consoleAPICalled) and the browser's own log at level "error" (Log.entryAdded: failed
loads, Content-Security-Policy violations). Every run has a deadline and is killed past it.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("/usr/bin/chromium", "chromium", "chromium-browser")
FLAGS = (
    "--headless",
    "--no-sandbox",  # tests run as root on CI machines
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)


def chromium_path() -> str | None:
    """The Chromium executable, or None when none is installed."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass(frozen=True)
class ConsoleMessage:
    """One thing the page logged."""

    level: str
    """"error", "warning", "info", "log", "debug" (exceptions are "error")."""
    source: str
    """"exception", "console", "dialog" (alert, confirm, prompt; answered at once) or the
    browser log's source ("network", "security", ...)."""
    text: str


@dataclass
class Rendered:
    """What Chromium made of a page."""

    screenshot: bytes
    """PNG of the whole page at the given width."""
    messages: list[ConsoleMessage] = field(default_factory=list)
    """Everything logged, in order."""
    images: list[dict[str, Any]] = field(default_factory=list)
    """Per <img>: src (first 40 characters), complete, naturalWidth, naturalHeight."""
    stderr: str = ""
    """Chromium's own log, for failure messages."""

    @property
    def errors(self) -> list[ConsoleMessage]:
        """The messages DevTools would show as errors."""
        return [m for m in self.messages if m.level == "error"]


class BrowserError(RuntimeError):
    """Chromium did not do what was asked in time."""


class _Pipe:
    """The DevTools protocol over Chromium's pipe: commands out, replies and events in."""

    def __init__(self, process: subprocess.Popen[bytes], out_fd: int, in_fd: int, deadline: float):
        self.process = process
        self.out_fd = out_fd
        self.in_fd = in_fd
        self.deadline = deadline
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("chromium did not answer before the deadline")
            ready, _, _ = select.select([self.in_fd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(self.in_fd, 1 << 20)
                if not chunk:
                    raise BrowserError(f"chromium closed its pipe (exit {self.process.poll()})")
                self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def _send(self, method: str, session: str | None, params: dict[str, Any]) -> int:
        self.next_id += 1
        command: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session is not None:
            command["sessionId"] = session
        data = json.dumps(command).encode() + b"\0"
        while data:
            data = data[os.write(self.out_fd, data) :]
        return self.next_id

    def _event(self, message: dict[str, Any]) -> None:
        self.events.append(message)
        if message["method"] == "Page.javascriptDialogOpening":
            # An alert() would block the page (and this helper) until answered.
            self._send("Page.handleJavaScriptDialog", message.get("sessionId"), {"accept": True})

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send a command and return its result; events that arrive meanwhile are kept."""
        sent = self._send(method, session, params)
        while True:
            message = self._read_message()
            if message.get("id") == sent:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            if "method" in message:
                self._event(message)

    def wait_for(self, method: str) -> dict[str, Any]:
        """The first event named `method` (received already or next)."""
        for event in self.events:
            if event["method"] == method:
                return event
        while True:
            message = self._read_message()
            if "method" in message:
                self._event(message)
                if message["method"] == method:
                    return message

    def drain(self, quiet: float) -> None:
        """Keep reading events until none arrives for `quiet` seconds."""
        while True:
            ready, _, _ = select.select([self.in_fd], [], [], quiet)
            if not ready or time.monotonic() > self.deadline:
                break
            chunk = os.read(self.in_fd, 1 << 20)
            if not chunk:
                break
            self.buffer += chunk
            while b"\0" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "method" in message:
                    self._event(message)


def _messages(events: list[dict[str, Any]]) -> list[ConsoleMessage]:
    messages = []
    for event in events:
        params = event.get("params", {})
        if event["method"] == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text", "")
            messages.append(ConsoleMessage("error", "exception", text))
        elif event["method"] == "Runtime.consoleAPICalled":
            level = {"assert": "error", "warning": "warning"}.get(params["type"], params["type"])
            text = " ".join(
                str(a.get("value", a.get("description", ""))) for a in params.get("args", [])
            )
            messages.append(ConsoleMessage(level, "console", text))
        elif event["method"] == "Log.entryAdded":
            entry = params["entry"]
            text = entry.get("text", "") + (f" ({entry['url']})" if entry.get("url") else "")
            messages.append(ConsoleMessage(entry["level"], entry.get("source", "other"), text))
        elif event["method"] == "Page.javascriptDialogOpening":
            text = f"{params['type']}: {params['message']}"
            messages.append(ConsoleMessage("error", "dialog", text))
    return messages


def _above_ten(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


def _stop(process: subprocess.Popen[bytes], deadline: float) -> None:
    """Wait for Chromium to exit until the deadline (at most 10 s), then kill what is left.

    Chromium runs in a session of its own, so its process group holds the browser this module
    started and its helpers, nothing else.
    """
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=max(0.0, min(10.0, deadline - time.monotonic())))
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # helpers may outlive the browser process
    process.wait(timeout=10)


_IMAGES = """JSON.stringify(Array.from(document.images).map(i => ({
    src: i.getAttribute("src").slice(0, 40), complete: i.complete,
    naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight})))"""


def render(
    url: str | Path,
    *,
    width: int = 1280,
    height: int = 2000,
    timeout: float = 60.0,
    executable: str | None = None,
) -> Rendered:
    """Load `url` (a file path or URL) in a fresh headless Chromium and photograph it.

    The window is `width` by `height`; the screenshot covers the whole page (at most 8000 pixels
    tall). Waits for the load event, then for every image to be decoded, then for 0.5 s without
    events, so late errors are caught too.

    Raises:
        BrowserError: Chromium is missing, failed, or took longer than `timeout` seconds.
    """
    executable = executable or chromium_path()
    if executable is None:
        raise BrowserError("no chromium executable")
    target = url.resolve().as_uri() if isinstance(url, Path) else url
    deadline = time.monotonic() + timeout
    commands_r, commands_w = os.pipe()
    replies_r, replies_w = os.pipe()
    # Chromium wants the pipe on descriptors 3 (commands) and 4 (replies). Moved to 10 and up
    # first, the child's ends cannot collide with 3 and 4 while bash puts them in place.
    commands_r, replies_w = (_above_ten(fd) for fd in (commands_r, replies_w))
    with tempfile.TemporaryDirectory(prefix="chromium-", ignore_cleanup_errors=True) as profile:
        log_path = Path(profile) / "stderr.log"
        cmd = [
            "/bin/bash", "-c",
            f'exec "$@" 3<&{commands_r} 4>&{replies_w} {commands_r}<&- {replies_w}>&-',
            "sh", executable, *FLAGS, f"--user-data-dir={profile}/data",
            f"--window-size={width},{height}", "about:blank",
        ]  # fmt: skip
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(commands_r, replies_w),
                start_new_session=True,
            )
        os.close(commands_r)
        os.close(replies_w)
        pipe = _Pipe(process, commands_w, replies_r, deadline)
        try:
            target_id = pipe.call("Target.createTarget", url="about:blank")["targetId"]
            session = pipe.call("Target.attachToTarget", targetId=target_id, flatten=True)[
                "sessionId"
            ]
            for domain in ("Page", "Runtime", "Log"):
                pipe.call(f"{domain}.enable", session)
            pipe.call(
                "Emulation.setDeviceMetricsOverride",
                session,
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
            pipe.events.clear()  # what about:blank said is not the page's
            navigated = pipe.call("Page.navigate", session, url=target)
            if navigated.get("errorText"):
                raise BrowserError(f"cannot open {target}: {navigated['errorText']}")
            pipe.wait_for("Page.loadEventFired")
            images = pipe.call(
                "Runtime.evaluate",
                session,
                expression="Promise.all(Array.from(document.images).map("
                "i => i.decode().catch(() => null))).then(() => " + _IMAGES + ")",
                awaitPromise=True,
                returnByValue=True,
            )["result"]["value"]
            pipe.drain(quiet=0.5)
            metrics = pipe.call("Page.getLayoutMetrics", session)["cssContentSize"]
            full = min(max(height, int(metrics["height"])), 8000)
            shot = pipe.call(
                "Page.captureScreenshot",
                session,
                format="png",
                captureBeyondViewport=True,
                clip={"x": 0, "y": 0, "width": width, "height": full, "scale": 1},
            )
            events = list(pipe.events)
            with contextlib.suppress(BrowserError):  # it may close the pipe before it answers
                pipe.call("Browser.close")
        except BrowserError as exc:
            _stop(process, time.monotonic())  # no waiting: it is stuck or gone
            raise BrowserError(f"{exc}\n{log_path.read_text(errors='replace')[-3000:]}") from None
        finally:
            os.close(commands_w)
            os.close(replies_r)
            _stop(process, deadline)
        stderr = log_path.read_text(errors="replace")
    return Rendered(
        screenshot=base64.b64decode(shot["data"]),
        messages=_messages(events),
        images=json.loads(images),
        stderr=stderr,
    )
