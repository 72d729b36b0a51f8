"""Keep what ONNX Runtime, onnx and torch print away from the user's terminal.

The libraries compression drives print to the process's file descriptors directly (C++ logs,
`traceback.print_exc()`, root-logger warnings such as "Consider rerun with option
--skip_optimization"); none of it is meant for our users, whose terminal should hold edgeopt's
own lines only. `captured` points file descriptors 1 and 2 at a log file for a while and restores
them afterwards, whatever happened; edgeopt's own findings travel back in reports (as notes) and
in exceptions, and are printed by the CLI after the capture ended.

The log lives in `$EDGEOPT_LOG_DIR` or the user's log directory (`~/.local/state/edgeopt/log`
on Linux), file `compress.log`; `--verbose` lets everything through instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import platformdirs

__all__ = ["ENV_VAR", "OutputLog", "captured", "default_log"]

ENV_VAR = "EDGEOPT_LOG_DIR"


def default_log() -> Path:
    """$EDGEOPT_LOG_DIR/compress.log, else the platform's user log directory."""
    env = os.environ.get(ENV_VAR)
    folder = Path(env).expanduser() if env else Path(platformdirs.user_log_dir("edgeopt"))
    return folder / "compress.log"


@dataclass(frozen=True)
class OutputLog:
    """Where library output goes during compression."""

    path: Path | None = None
    """The log file (None: `default_log()`)."""
    passthrough: bool = False
    """Let everything reach the terminal (`--verbose`)."""

    @property
    def file(self) -> Path:
        """The log file in use."""
        return self.path or default_log()


@contextlib.contextmanager
def captured(log: OutputLog, title: str) -> Iterator[None]:
    """Send what is printed to fds 1 and 2 (and Python's logging) to `log` while inside.

    Nested use is fine: the inner capture writes to the same file and restores the outer one.
    A log file that cannot be opened (read-only home) falls back to discarding the output,
    never to failing the compression.
    """
    edgeopt_logger = logging.getLogger("edgeopt")
    if log.passthrough:
        previous = edgeopt_logger.level
        edgeopt_logger.setLevel(logging.INFO)
        handler = logging.StreamHandler(sys.stderr)
        edgeopt_logger.addHandler(handler)
        try:
            yield
        finally:
            edgeopt_logger.removeHandler(handler)
            edgeopt_logger.setLevel(previous)
        return
    try:
        log.file.parent.mkdir(parents=True, exist_ok=True)
        sink = os.open(log.file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        sink = os.open(os.devnull, os.O_WRONLY)
    os.write(sink, f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {title}\n".encode())
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    # sys.stdout/sys.stderr may not be fds 1 and 2 at all (click's CliRunner, an embedding
    # application): Python-level writes are pointed at the file as well.
    text = open(os.dup(sink), "w", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
    handler = logging.StreamHandler(text)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s: %(message)s"))
    previous_level = edgeopt_logger.level
    edgeopt_logger.setLevel(logging.INFO)
    edgeopt_logger.addHandler(handler)
    try:
        os.dup2(sink, 1)
        os.dup2(sink, 2)
        with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
            yield
    finally:
        with contextlib.suppress(Exception):
            text.flush()
        edgeopt_logger.removeHandler(handler)
        edgeopt_logger.setLevel(previous_level)
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, sink):
            os.close(fd)
        text.close()
