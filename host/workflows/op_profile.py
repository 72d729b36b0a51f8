"""`edgeopt profile`: where a model's time goes on a board, operator by operator.

Two ways to the same figures: through the agent's Profile RPC (ONNX Runtime's profiler in the
runner, `runs` runs after a discarded warm-up), or one-shot over SSH with the board's own Python
and ONNX Runtime when no agent runs there: the model, its input and a small script are uploaded
to a temporary folder, run, the trace is fetched and the folder removed. Both read the trace with
`edgeopt.proto.profiling`, so the aggregates mean the same. The trace is ONNX Runtime's Chrome
trace JSON, which Perfetto (ui.perfetto.dev) and chrome://tracing open.
"""

from __future__ import annotations

import io
import json
import posixpath
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.boardfacts import system
from edgeopt.host.config.inventory import Device
from edgeopt.host.errors import InvalidRequest, SshError
from edgeopt.host.transport.client import ClientConfig
from edgeopt.host.transport.fanout import open_client
from edgeopt.host.transport.ssh.connection import Connection, printable, quote
from edgeopt.host.transport.wire import ProfileCall, as_record
from edgeopt.host.workflows.samples import explain_made_up, made_up_feed
from edgeopt.proto import profiling
from edgeopt.proto.plan import RunPlan

__all__ = ["MAX_TRACE_BYTES", "ONE_SHOT", "over_ssh", "result_dict", "through_agent"]

ONE_SHOT = r"""
import json, sys
import numpy as np
import onnxruntime as ort
model, feed_path, runs, warmup, threads, prefix = sys.argv[1:7]
options = ort.SessionOptions()
options.enable_profiling = True
options.profile_file_prefix = prefix
options.intra_op_num_threads = int(threads)
options.log_severity_level = 3
try:
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
except Exception as exc:
    sys.stderr.write("ONNX Runtime %s cannot load the model: %s\n" % (ort.__version__, exc))
    sys.exit(3)
with np.load(feed_path) as data:
    feed = {k: data[k] for k in data.files}
for _ in range(int(warmup) + int(runs)):
    session.run(None, feed)
try:
    kernel_arch = open("/proc/sys/kernel/arch").read().strip()
except OSError:
    kernel_arch = ""
import platform
print(json.dumps({"trace": session.end_profiling(), "onnxruntime": ort.__version__,
                  "machine": platform.machine(), "kernel_arch": kernel_arch}))
"""


def over_ssh(
    conn: Connection,
    model: Path,
    feed: Mapping[str, np.ndarray],
    *,
    runs: int,
    warmup: int,
    threads: int,
    python: str = "python3",
) -> tuple[dict[str, Any], bytes, str, str]:
    """Profile with the board's own Python.

    Returns (aggregates, trace bytes, its ONNX Runtime version, how its CPU is emulated or "").

    Everything uploaded goes into one temporary folder on the board, removed at the end
    whatever happens.
    """
    _, out, _ = conn.run("mktemp -d /tmp/edgeopt-profile.XXXXXX", timeout=30)
    folder = out.strip()
    if not folder.startswith("/tmp/edgeopt-profile."):
        raise SshError(f"{conn.target}: mktemp gave {folder!r}")
    try:
        buffer = io.BytesIO()
        np.savez(buffer, **feed)  # type: ignore[arg-type]
        with conn.sftp() as sftp:
            sftp.put(str(model), f"{folder}/model.onnx")
            sftp.putfo(io.BytesIO(buffer.getvalue()), f"{folder}/feed.npz")
            sftp.putfo(io.BytesIO(ONE_SHOT.encode()), f"{folder}/profile.py")
        status, out, err = conn.run(
            f"cd {quote(folder)} && {python} profile.py model.onnx feed.npz {runs} {warmup} "
            f"{threads} {quote(folder + '/trace-' + uuid.uuid4().hex[:8])}",
            timeout=3600, check=False,
        )  # fmt: skip
        if status != 0:
            last = (err.strip().splitlines() or [f"exit status {status}"])[-1]
            if "No module named 'onnxruntime'" in err or "No module named 'numpy'" in err:
                last = f"the board's {python} has no onnxruntime (pip install onnxruntime)"
            raise SshError(f"{conn.target}: profiling failed: {last}")
        answer = _answer(conn, out, folder)
        with conn.sftp() as sftp:
            size = sftp.stat(answer["trace"]).st_size or 0
            if size > MAX_TRACE_BYTES:
                raise SshError(f"{conn.target}: the board's trace is {size} bytes, more than "
                               f"{MAX_TRACE_BYTES}: ask for fewer --runs")  # fmt: skip
            with sftp.open(answer["trace"], "rb") as f:
                trace = f.read(MAX_TRACE_BYTES + 1)[:MAX_TRACE_BYTES]
    finally:
        conn.run(f"rm -rf {quote(folder)}", timeout=60, check=False)
    try:
        events = json.loads(trace)
        if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
            raise ValueError("not a list of trace events")
        figures = profiling.aggregate(events, skip_runs=warmup)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise SshError(f"{conn.target}: the board's trace is not ONNX Runtime's: "
                       f"{printable(str(exc))[:200]}") from None  # fmt: skip
    emulation = system.emulation(answer["kernel_arch"], answer["machine"])
    return figures, trace, answer["onnxruntime"], emulation


MAX_TRACE_BYTES = 256 << 20
"""The largest trace the host fetches from a board."""


def _answer(conn: Connection, out: str, folder: str) -> dict[str, str]:
    """The one-shot script's last line, checked: the board may print anything.

    The trace it names must be the file the script was told to write, inside `folder`.

    Raises:
        SshError: not the script's JSON, or a trace path outside the folder.
    """
    lines = out.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except ValueError:
        answer = None
    fields = ("trace", "onnxruntime", "kernel_arch", "machine")
    if not isinstance(answer, dict) or not all(
        isinstance(answer.get(k, ""), str) and len(answer.get(k, "")) < 4096 for k in fields
    ):
        shown = printable(lines[-1] if lines else "")[:200]
        raise SshError(f"{conn.target}: the profiling script's answer is not what it prints: "
                       f"{shown!r}")  # fmt: skip
    trace = posixpath.normpath(str(answer.get("trace", "")))
    if posixpath.dirname(trace) != folder or not posixpath.basename(trace).startswith("trace-"):
        raise SshError(f"{conn.target}: the board named a trace outside its profiling folder: "
                       f"{printable(trace)[:200]!r}")  # fmt: skip
    return {"trace": trace, "onnxruntime": printable(str(answer.get("onnxruntime", "")))[:64],
            "kernel_arch": str(answer.get("kernel_arch", "")),
            "machine": str(answer.get("machine", ""))}  # fmt: skip


def result_dict(reply: Any) -> dict[str, Any]:
    """A ProfileResult as the aggregates dict `report` and `plot` take."""
    out = as_record(reply)
    out.pop("trace", None)
    return out


async def through_agent(
    device: Device,
    config: ClientConfig,
    model: Path,
    *,
    threads: int,
    provider: str,
    runs: int,
    warmup: int,
    feed: dict[str, np.ndarray] | None,
    input_shape: tuple[int, ...] | None,
    trace: bool,
) -> tuple[dict[str, Any], bytes, str, str]:
    """Profile `model` through the device's agent: (aggregates, trace, its ONNX Runtime, emulation).

    The model is pushed aside (unlisted, by digest); without a feed the agent makes inputs up,
    with `input_shape` for every input's dims when given.
    """
    plan = RunPlan(intra_op_threads=threads, execution_provider=provider)
    names = [] if feed or input_shape is None else list(made_up_feed(model, input_shape))
    shapes = {n: input_shape for n in names if input_shape is not None}
    try:
        async with open_client(device, config) as client:
            emulation = (await client.capabilities()).emulation
            pushed = await client.push(model, "")
            reply = await client.profile(ProfileCall(
                sha256=pushed.sha256, plan=plan, inputs=feed or {}, input_shapes=shapes,
                runs=runs, warmup=warmup, include_trace=trace))  # fmt: skip
    except InvalidRequest as exc:
        given = {names[0]: input_shape} if names and input_shape else None
        explained = feed is None and explain_made_up(exc, model, given)
        if not explained:
            raise
        raise explained from exc
    return result_dict(reply), reply.trace, reply.onnxruntime_version, emulation
