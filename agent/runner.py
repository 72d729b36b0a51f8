"""The runner: a child process of the agent that holds the ONNX Runtime sessions.

The agent keeps ONNX Runtime out of its own process: importing it costs ~30 MB, and a model
that crashes it (a segfault in a kernel, an abort in a custom op) must fail one request, not take
the agent down. So loading, smoke-testing and running models happens here, in
`python -m edgeopt.agent.runner`, which the agent talks to over its stdin and stdout with
length-prefixed pickled dicts (both ends are this package; nothing else speaks this protocol).
Tensor bytes travel out of band (pickle protocol 5): written from the sender's buffer and read
into one buffer on the other side, never copied through a pickle.

Parent side: `Runner.call(request)` sends one request and waits for its answer; when the child
died (EOF on its stdout), it raises `RunnerCrashed` with the signal or exit status, and the next
call starts a new child. The agent then loads its active models again (see server.py). A call
that outlives its time limit, or whose caller gave up (`cancel` set), kills the child: ONNX
Runtime cannot be interrupted inside a kernel, and a killed child is the only stop that always
works. It raises `RunnerStopped` (a `RunnerCrashed`) saying which.

Requests ("op" and its fields) and answers ("ok" and fields, or "ok": False, "code", "error"):
- load: key, path, plan (a RunPlan, agent.proto's Plan), smoke (list of tensors or None)
  → load_ms, smoke_ms, memory_bytes, inputs, outputs (signatures)
- unload: key
- infer: key, inputs (list of (name, dtype, shape, buffer)) → outputs, latency_ms
- stats → rss_bytes, loaded (key → memory_bytes)
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Tuple

from edgeopt.proto import tensors as wire
from edgeopt.proto.inputs import made_up_shape
from edgeopt.proto.plan import RunPlan

HEADER = struct.Struct("<QI")
"""A frame: the pickle's length and the number of out-of-band buffers (each length follows)."""
BUFFER = struct.Struct("<Q")
# typing.Tuple: a module-level alias is evaluated, and tuple[...] needs Python 3.9 (the agent
# runs on 3.8).
TensorTuple = Tuple[str, str, Tuple[int, ...], Any]
"""(name, wire dtype name, shape, buffer of the wire bytes): how tensors cross the pipe."""
OUTPUT_LIMIT = 256 << 20
"""Default cap on the bytes of one request's outputs (the agent passes its own)."""


class RunnerCrashed(Exception):
    """The runner process died while (or before) answering."""


class RunnerStopped(RunnerCrashed):
    """The agent killed the runner: the call ran past its time limit, or its caller left."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        """"timeout" or "cancelled"."""


def out_of_band(data: Any) -> Any:
    """Wrap a buffer so that `_send` writes it as it is instead of copying it into the pickle."""
    return pickle.PickleBuffer(data)


def _send(stream: IO[bytes], message: dict[str, Any]) -> None:
    buffers: list[pickle.PickleBuffer] = []
    payload = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    views = [b.raw() for b in buffers]
    stream.write(
        HEADER.pack(len(payload), len(views)) + b"".join(BUFFER.pack(v.nbytes) for v in views)
    )
    stream.write(payload)
    for view in views:
        stream.write(view)
    stream.flush()


def _read_into(stream: IO[bytes], buffer: bytearray) -> bool:
    view, got = memoryview(buffer), 0
    while got < len(buffer):
        n = stream.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            return False
        got += n
    return True


def _read_head(stream: IO[bytes]) -> tuple[bytearray, list[int]] | None:
    """A frame's pickle and the sizes of the buffers that follow it (None at EOF)."""
    head = bytearray(HEADER.size)
    if not _read_into(stream, head):
        return None
    size, count = HEADER.unpack(head)
    sizes = bytearray(BUFFER.size * count)
    payload = bytearray(size)
    if not _read_into(stream, sizes) or not _read_into(stream, payload):
        return None
    return payload, [length for (length,) in BUFFER.iter_unpack(sizes)]


def _receive(stream: IO[bytes]) -> dict[str, Any] | None:
    read = _read_head(stream)
    if read is None:
        return None
    payload, sizes = read
    buffers = []
    for length in sizes:
        buffers.append(bytearray(length))
        if not _read_into(stream, buffers[-1]):
            return None
    message: dict[str, Any] = pickle.loads(payload, buffers=buffers)
    return message


def _receive_head(stream: IO[bytes]) -> tuple[dict[str, Any], list[int]] | None:
    """A frame's message with each buffer replaced by its size; the bytes are left unread."""
    read = _read_head(stream)
    if read is None:
        return None
    payload, sizes = read
    # Empty stand-ins: the message keeps its shape; its buffers are streamed afterwards.
    message: dict[str, Any] = pickle.loads(payload, buffers=[bytearray() for _ in sizes])
    return message, sizes


class _Died(Exception):
    """The child's pipe ended where an answer was due."""


def rss_bytes(pid: int | str = "self") -> int:
    """Resident memory of a process, from /proc (0 where unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


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
            _send(process.stdin, request)
            answer = _receive(process.stdout)
            while answer is not None and "progress" in answer:
                if progress is not None:
                    progress(answer["progress"])
                answer = _receive(process.stdout)
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
            _send(process.stdin, request)
            request.clear()
            head = _receive_head(process.stdout)
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
            self._process = None
        finally:
            self._lock.release()


# --- the child ------------------------------------------------------------------------------

_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
    "": "ORT_ENABLE_ALL",
}


class RequestError(Exception):
    """A request the runner refuses; `code` is the gRPC status name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Loaded:
    """A session and what it cost."""

    session: Any
    memory_bytes: int


def _signature(args: list[Any]) -> list[dict[str, Any]]:
    out = []
    for arg in args:
        shape = [d if isinstance(d, int) and d > 0 else -1 for d in (arg.shape or [])]
        names = [d if isinstance(d, str) else "" for d in (arg.shape or [])]
        out.append({"name": arg.name, "dtype": _wire_dtype(arg.type), "shape": shape,
                    "dim_names": names})  # fmt: skip
    return out


def _wire_dtype(ort_type: str) -> str:
    """The wire's dtype name of an ONNX Runtime type ("str" for strings)."""
    import numpy as np  # noqa: PLC0415

    if ort_type == "tensor(string)":
        return str(wire.STRING_DTYPE)
    return str(np.dtype(_numpy_dtype(ort_type)).name)


def _numpy_dtype(ort_type: str) -> Any:
    import numpy as np  # noqa: PLC0415

    if ort_type == "tensor(string)":
        return object
    table = {
        "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
        "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16,
        "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(uint16)": np.uint16,
        "tensor(uint32)": np.uint32, "tensor(uint64)": np.uint64, "tensor(bool)": np.bool_,
    }  # fmt: skip
    return table.get(ort_type, np.float32)


def _smoke_inputs(
    session: Any, shapes: dict[str, list[int]] | None = None, max_bytes: int = OUTPUT_LIMIT
) -> dict[str, Any]:
    import numpy as np  # noqa: PLC0415

    rng = np.random.default_rng(0)
    feeds: dict[str, Any] = {}
    total = 0
    for arg in session.get_inputs():
        dims = list(arg.shape or [])
        given = (shapes or {}).get(arg.name)
        if given is not None and len(given) != len(dims):
            raise RequestError(
                "INVALID_ARGUMENT",
                f"input shape for {arg.name!r} has rank {len(given)}, the model's input "
                f"has rank {len(dims)}",
            )
        shape = made_up_shape(dims, given)
        dtype = np.dtype(_numpy_dtype(arg.type))
        if any(d < 0 for d in shape):
            raise RequestError("INVALID_ARGUMENT", f"input shape for {arg.name!r} is negative")
        total += int(np.prod(shape, dtype=object)) * max(dtype.itemsize, 1)
        if total > max_bytes:
            raise RequestError(
                "INVALID_ARGUMENT",
                f"made-up inputs of shape {list(shape)} for {arg.name!r} would take more than "
                f"this agent's limit of {max_bytes} bytes (max_infer_bytes)",
            )
        if dtype.kind == "O":
            feeds[arg.name] = np.full(shape, "", dtype=object)
        elif dtype.kind == "f":
            feeds[arg.name] = rng.random(shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[arg.name] = np.zeros(shape, dtype=dtype)
        else:
            feeds[arg.name] = np.zeros(shape, dtype=dtype)
    return feeds


def _default_threads() -> int:
    """Intra-op threads when the plan names none.

    ONNX Runtime's own default (0: one thread per physical core, each pinned to its core),
    unless this process may use fewer CPUs than the machine has: under taskset, a cpuset or an
    emulator the pins fail ("pthread_setaffinity_np failed") and the pool oversubscribes, so
    there it gets the CPUs it may use, unpinned.
    """
    usable = len(os.sched_getaffinity(0))
    return usable if usable < (os.cpu_count() or usable) else 0


def _session(path: str, plan: RunPlan, profile_prefix: str | None = None) -> Any:
    import onnxruntime as ort  # noqa: PLC0415

    from edgeopt.agent import modelcheck, plancheck  # noqa: PLC0415

    try:
        plancheck.check_plan(plan)
    except (plancheck.PlanRefused, ValueError, TypeError) as exc:
        raise RequestError("INVALID_ARGUMENT", str(exc)) from None
    try:
        modelcheck.check_model(Path(path))
    except modelcheck.ModelRefused as exc:
        raise RequestError("FAILED_PRECONDITION", str(exc)) from None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    options.intra_op_num_threads = plan.intra_op_threads or _default_threads()
    options.inter_op_num_threads = plan.inter_op_threads
    level = plan.graph_optimization_level
    if level not in _LEVELS:
        raise RequestError("INVALID_ARGUMENT", f"unknown graph optimization level {level!r}")
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[level])
    if plan.execution_mode == "parallel":
        options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    provider = plan.execution_provider or "CPUExecutionProvider"
    available = ort.get_available_providers()
    if provider not in available:
        raise RequestError(
            "INVALID_ARGUMENT",
            f"execution provider {provider} is not available on this board; it has "
            f"{', '.join(available)}",
        )
    providers = [(provider, dict(plan.provider_options))]
    if provider != "CPUExecutionProvider":
        providers.append(("CPUExecutionProvider", {}))
    return ort.InferenceSession(path, options, providers=providers)


def _load_session(path: str, plan: RunPlan, profile_prefix: str | None = None) -> tuple[Any, float]:
    """A session with the plan's options, and how long loading took (ms)."""
    start = time.perf_counter()
    try:
        session = _session(path, plan, profile_prefix)
    except RequestError:
        raise
    except Exception as exc:
        raise RequestError(
            "FAILED_PRECONDITION", f"ONNX Runtime cannot load it: {_line(exc)}"
        ) from exc
    return session, (time.perf_counter() - start) * 1e3


def _feeds(request: dict[str, Any], session: Any) -> dict[str, Any]:
    """The request's inputs (given, or in a stored tensor file), else made up from the signature."""
    limit = int(request.get("max_bytes") or OUTPUT_LIMIT)
    inputs = request.get("inputs") or _tensor_file(request.get("inputs_path"), limit)
    if inputs:
        return _to_arrays(inputs, session)
    return _smoke_inputs(session, request.get("shapes"), limit)


def _tensor_file(path: str | None, limit: int) -> list[TensorTuple] | None:
    """The tensors of a stored tensor file (proto/tensors.py), checked against `limit`."""
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            tensors: list[TensorTuple] = wire.read_file(f, limit)
            return tensors
    except wire.TensorError as exc:
        raise RequestError("INVALID_ARGUMENT", f"inputs_sha256: {exc}") from None


def _to_arrays(tensors: list[TensorTuple], session: Any) -> dict[str, Any]:
    """Check tensors against the session's inputs and turn them into arrays."""
    import numpy as np  # noqa: PLC0415

    wanted = {arg.name: arg for arg in session.get_inputs()}
    given = {t[0]: t for t in tensors}
    missing = sorted(set(wanted) - set(given))
    extra = sorted(set(given) - set(wanted))
    if missing or extra:
        raise RequestError(
            "INVALID_ARGUMENT",
            f"inputs do not match the model's {sorted(wanted)}: missing {missing or 'none'}, "
            f"unexpected {extra or 'none'}",
        )
    feeds = {}
    for name, arg in wanted.items():
        _, dtype, shape, data = given[name]
        want = _wire_dtype(arg.type)
        if dtype != want:
            raise RequestError(
                "INVALID_ARGUMENT", f"input {name!r} is {dtype}, the model wants {want}"
            )
        dims = list(arg.shape or [])
        if len(shape) != len(dims) or any(
            isinstance(d, int) and d > 0 and d != s for d, s in zip(dims, shape)
        ):
            shown = [d if isinstance(d, int) and d > 0 else "?" for d in dims]
            raise RequestError(
                "INVALID_ARGUMENT",
                f"input {name!r} has shape {list(shape)}, the model wants {shown}",
            )
        size = len(memoryview(data).cast("B"))
        if want != wire.STRING_DTYPE and size != int(np.prod(shape, dtype=object)) * wire.itemsize(
            want
        ):
            raise RequestError(
                "INVALID_ARGUMENT", f"input {name!r}: {size} bytes do not fill {list(shape)}"
            )
        try:
            feeds[name] = wire.from_wire(want, shape, data)
        except wire.TensorError as exc:
            raise RequestError("INVALID_ARGUMENT", f"input {name!r}: {exc}") from None
    return feeds


def _tuples(names: list[str], arrays: list[Any], limit: int = OUTPUT_LIMIT) -> list[TensorTuple]:
    """Outputs as wire tensors, their bytes out of band (no copy of a C-ordered array).

    Raises:
        RequestError: FAILED_PRECONDITION for an output that is not a tensor (a sequence of
            maps, as ZipMap gives) or outputs over `limit` bytes.
    """
    out = []
    total = 0
    for name, value in zip(names, arrays):
        if isinstance(value, (list, dict)):
            kind = "a sequence of maps (ZipMap)" if value and isinstance(value[0], dict) else (
                "a sequence" if isinstance(value, list) else "a map")  # fmt: skip
            raise RequestError(
                "FAILED_PRECONDITION",
                f"output {name!r} is {kind}, not a tensor: the wire carries tensors only; "
                "convert the model without ZipMap (skl2onnx: options={'zipmap': False})",
            )
        try:
            dtype, shape, data = wire.to_wire(value)
        except wire.TensorError as exc:
            raise RequestError("FAILED_PRECONDITION", f"output {name!r}: {exc}") from None
        total += len(memoryview(data).cast("B"))
        if total > limit:
            raise RequestError(
                "RESOURCE_EXHAUSTED",
                f"the outputs take more than this agent's limit of {limit} bytes "
                "(max_infer_bytes): split the batch across calls",
            )
        out.append((name, dtype, shape, out_of_band(data)))
    return out


class Child:
    """The runner's side: sessions by key."""

    def __init__(self) -> None:
        self.loaded: dict[str, Loaded] = {}

    def handle(
        self, request: dict[str, Any], emit: Callable[[dict[str, Any]], None] = lambda _: None
    ) -> dict[str, Any]:
        """Answer one request; `emit` sends interim progress frames."""
        op = request.get("op")
        if op == "load":
            smoke = request.get("smoke")
            if smoke is None and request.get("inputs_path"):
                smoke = _tensor_file(request["inputs_path"], int(request.get("max_bytes") or 0))
            return self.load(request["key"], request["path"], request.get("plan") or RunPlan(),
                             smoke, int(request.get("max_bytes") or OUTPUT_LIMIT))  # fmt: skip
        if op == "unload":
            self.loaded.pop(request["key"], None)
            return {"ok": True}
        if op == "infer":
            return self.infer(request["key"], request["inputs"],
                              int(request.get("max_bytes") or OUTPUT_LIMIT))  # fmt: skip
        if op == "bench":
            return self.bench(request, emit)
        if op == "profile":
            return self.profile(request)
        if op == "stats":
            return {"ok": True, "rss_bytes": rss_bytes(),
                    "loaded": {k: v.memory_bytes for k, v in self.loaded.items()}}  # fmt: skip
        raise RequestError("INVALID_ARGUMENT", f"unknown runner request {op!r}")

    def load(
        self,
        key: str,
        path: str,
        plan: RunPlan,
        smoke: list[TensorTuple] | bool | None,
        max_bytes: int = OUTPUT_LIMIT,
    ) -> dict[str, Any]:
        """Load a model, run the smoke inference, keep the session under `key`.

        `smoke` False skips the smoke inference: a version that passed it when activated is
        loaded again after a restart, or for one inference, without made-up inputs (which
        may not suit a model that wants particular sizes).
        """
        import numpy as np  # noqa: PLC0415

        before = rss_bytes()
        session, load_ms = _load_session(path, plan)
        if smoke is False:
            memory = max(0, rss_bytes() - before)
            self.loaded[key] = Loaded(session, memory)
            return {
                "ok": True, "load_ms": load_ms, "smoke_ms": 0.0, "memory_bytes": memory,
                "inputs": _signature(session.get_inputs()),
                "outputs": _signature(session.get_outputs()),
            }  # fmt: skip
        feeds = (
            _to_arrays(smoke, session)
            if isinstance(smoke, list) and smoke
            else _smoke_inputs(session, None, max_bytes)
        )
        start = time.perf_counter()
        try:
            outputs = session.run(None, feeds)
        except Exception as exc:
            raise RequestError(
                "FAILED_PRECONDITION", f"smoke inference failed: {_line(exc)}"
            ) from exc
        smoke_ms = (time.perf_counter() - start) * 1e3
        names = [o.name for o in session.get_outputs()]
        _tuples(names, outputs, max_bytes)  # an output the wire cannot carry fails here
        for name, value in zip(names, outputs):
            array = np.asarray(value)
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise RequestError(
                    "FAILED_PRECONDITION",
                    f"smoke inference gave non-finite values (inf/NaN) in output {name!r}",
                )
        memory = max(0, rss_bytes() - before)
        self.loaded[key] = Loaded(session, memory)
        return {
            "ok": True, "load_ms": load_ms, "smoke_ms": smoke_ms, "memory_bytes": memory,
            "inputs": _signature(session.get_inputs()),
            "outputs": _signature(session.get_outputs()),
        }  # fmt: skip

    def bench(
        self, request: dict[str, Any], emit: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any]:
        """Measure a model; see agent.proto, Benchmark. Emits progress twice a second."""
        import numpy as np  # noqa: PLC0415
        import onnxruntime as ort  # noqa: PLC0415

        plan = request.get("plan") or RunPlan()
        warmup = int(request.get("warmup") or 5)
        min_repeats = int(request.get("min_repeats") or 10)
        max_repeats = int(request.get("max_repeats") or 100_000)
        target = float(request.get("target_ci") or 0.02)
        budget = float(request.get("max_seconds") or 10.0)
        before = conditions()
        session, load_ms = _load_session(request["path"], plan)
        feeds = _feeds(request, session)
        try:
            start = time.perf_counter()
            session.run(None, feeds)
            first_ms = (time.perf_counter() - start) * 1e3
            for _ in range(warmup):
                session.run(None, feeds)
            busy = CpuClock()
            samples, peak, reason = _timed_runs(
                session, feeds, (min_repeats, max_repeats, target, budget), emit
            )
            others = busy.others()
        except Exception as exc:
            raise RequestError("INVALID_ARGUMENT", f"inference failed: {_line(exc)}") from exc
        peak = max(peak, rss_bytes())
        after = conditions()
        array = np.asarray(samples)
        low, high, median = median_ci(samples)
        first = next(iter(feeds.values()), None)
        batch = first.shape[0] if first is not None and first.ndim else 1
        return {
            "ok": True,
            "latency": {
                "samples": len(samples), "min_ms": float(array.min()), "p50_ms": median,
                "p90_ms": float(np.percentile(array, 90)),
                "p99_ms": float(np.percentile(array, 99)),
                "mean_ms": float(array.mean()), "std_ms": float(array.std(ddof=1))
                if len(samples) > 1 else 0.0,
                "ci_low_ms": low, "ci_high_ms": high,
            },
            "throughput": batch * 1000.0 / median if median else 0.0,
            "session_load_ms": load_ms, "first_inference_ms": first_ms,
            "peak_rss_bytes": peak, "stop_reason": reason,
            "input_shapes": {k: list(v.shape) for k, v in feeds.items()},
            "conditions": {
                "onnxruntime_version": ort.__version__, "cpu_governor": before["governor"],
                "temperatures_before": before["temperatures"],
                "temperatures_after": after["temperatures"],
                "load_average": before["load_average"], "usable_cores": before["usable_cores"],
                "other_cpu_load": others,
                "throttled_before": before["throttled"], "throttled_after": after["throttled"],
            },
        }  # fmt: skip

    def profile(self, request: dict[str, Any]) -> dict[str, Any]:
        """Profile a model with ONNX Runtime's profiler; see agent.proto, Profile."""
        import tempfile  # noqa: PLC0415

        import onnxruntime as ort  # noqa: PLC0415

        from edgeopt.proto import profiling  # noqa: PLC0415

        plan = request.get("plan") or RunPlan()
        runs = int(request.get("runs") or 20)
        warmup = int(request.get("warmup") or 3)
        with tempfile.TemporaryDirectory(prefix="edgeopt-profile-") as folder:
            session, _ = _load_session(request["path"], plan,
                                       profile_prefix=f"{folder}/trace")  # fmt: skip
            feeds = _feeds(request, session)
            try:
                for _ in range(warmup + runs):
                    session.run(None, feeds)
            except Exception as exc:
                raise RequestError("INVALID_ARGUMENT", f"inference failed: {_line(exc)}") from exc
            trace_path = session.end_profiling()
            trace = Path(trace_path).read_bytes()
        limit = int(request.get("max_trace_bytes") or OUTPUT_LIMIT)
        if request.get("include_trace") and len(trace) > limit:
            raise RequestError(
                "RESOURCE_EXHAUSTED",
                f"the trace is {len(trace)} bytes, over this agent's message limit of {limit}: "
                "ask without the trace, or for fewer runs",
            )
        figures = profiling.aggregate(json.loads(trace), skip_runs=warmup)
        return {"ok": True, **figures, "onnxruntime_version": ort.__version__,
                "trace": trace if request.get("include_trace") else b""}  # fmt: skip

    def infer(
        self, key: str, inputs: list[TensorTuple], max_bytes: int = OUTPUT_LIMIT
    ) -> dict[str, Any]:
        """Run a loaded model; its outputs may take at most `max_bytes`."""
        loaded = self.loaded.get(key)
        if loaded is None:
            raise RequestError("FAILED_PRECONDITION", f"{key} is not loaded")
        feeds = _to_arrays(inputs, loaded.session)
        start = time.perf_counter()
        try:
            outputs = loaded.session.run(None, feeds)
        except Exception as exc:
            raise RequestError("INVALID_ARGUMENT", f"inference failed: {_line(exc)}") from exc
        latency = (time.perf_counter() - start) * 1e3
        names = [o.name for o in loaded.session.get_outputs()]
        return {"ok": True, "outputs": _tuples(names, outputs, max_bytes), "latency_ms": latency}


def _timed_runs(
    session: Any,
    feeds: dict[str, Any],
    limits: tuple[int, int, float, float],
    emit: Callable[[dict[str, Any]], None],
) -> tuple[list[float], int, str]:
    """Run until the median's CI is tight enough, or the budget or count runs out.

    Returns the latencies (ms), the peak RSS seen, and why it stopped.
    """
    min_repeats, max_repeats, target, budget = limits
    samples: list[float] = []
    peak = rss_bytes()
    began = last_emit = time.perf_counter()
    while len(samples) < max_repeats:
        t0 = time.perf_counter()
        session.run(None, feeds)
        now = time.perf_counter()
        samples.append((now - t0) * 1e3)
        n = len(samples)
        if n % 16 == 0:
            peak = max(peak, rss_bytes())
        if n >= min_repeats and (n < 200 or n % 10 == 0):
            low, high, median = median_ci(samples)
            if median > 0 and (high - low) / 2 / median <= target:
                return samples, peak, "target_ci"
        if now - began >= budget and n >= min(min_repeats, 3):
            return samples, peak, "max_seconds"
        if now - last_emit >= 0.5:
            low, high, median = median_ci(samples)
            emit({"repeats": n, "elapsed_s": now - began, "p50_ms": median,
                  "ci_relative": (high - low) / 2 / median if median else 0.0})  # fmt: skip
            last_emit = now
    return samples, peak, "max_repeats"


def median_ci(samples: list[float]) -> tuple[float, float, float]:
    """(low, high, median): the 95 % confidence interval of the median.

    From order statistics (ranks n/2 -+ 1.96 sqrt(n)/2): distribution-free, which latency
    samples (skewed, with a long tail) need.
    """
    ordered = sorted(samples)
    n = len(ordered)
    median = (ordered[(n - 1) // 2] + ordered[n // 2]) / 2
    half = 1.96 * math.sqrt(n) / 2
    low = max(0, math.floor(n / 2 - half) - 1)
    high = min(n - 1, math.ceil(n / 2 + half) - 1)
    return ordered[low], ordered[high], median


def conditions() -> dict[str, Any]:
    """What may skew a measurement: governor, temperatures, load, usable CPUs."""
    from edgeopt.boardfacts import thermal  # noqa: PLC0415

    zones: dict[str, tuple[str | None, str | None]] = {}
    for zone in sorted(Path("/sys/class/thermal").glob("thermal_zone*")):
        zones[zone.name] = (_read(zone / "type"), _read(zone / "temp"))
    governor = thermal.governor(
        _read(Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"))
    )
    load = _read(Path("/proc/loadavg"))
    return {
        "governor": governor,
        "temperatures": [
            {"zone": t.zone, "type": t.type, "celsius": t.celsius}
            for t in thermal.temperatures(zones)
        ],
        "load_average": float(load.split()[0]) if load else 0.0,
        "usable_cores": len(os.sched_getaffinity(0)),
        "throttled": _throttle_flags(),
    }


def _throttle_flags() -> int | None:
    """A Raspberry Pi's firmware throttle flags (thermal.THROTTLE_FILES), None elsewhere."""
    from edgeopt.boardfacts import thermal  # noqa: PLC0415

    for pattern in thermal.THROTTLE_FILES:
        for path in sorted(Path("/").glob(pattern)):
            flags = thermal.throttled(_read(path))
            if flags is not None:
                return flags
    return None


class CpuClock:
    """CPU time other processes use from now on, as a share of the whole machine."""

    def __init__(self) -> None:
        self.start = self._now()

    @staticmethod
    def _now() -> tuple[float, float, float] | None:
        """(wall s, busy s of all CPUs, this process's CPU s), or None without /proc/stat."""
        text = _read(Path("/proc/stat"))
        if not text or not text.startswith("cpu "):
            return None
        ticks = [int(v) for v in text.splitlines()[0].split()[1:]]
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
        hz = os.sysconf("SC_CLK_TCK")
        own = os.times()
        return time.monotonic(), (sum(ticks[:8]) - idle) / hz, own.user + own.system

    def others(self) -> float:
        """Share (0 to 1) of all CPUs' time used by other processes since creation."""
        end = self._now()
        if self.start is None or end is None:
            return 0.0
        wall = end[0] - self.start[0]
        cpus = os.cpu_count() or 1
        if wall <= 0:
            return 0.0
        other = (end[1] - self.start[1]) - (end[2] - self.start[2])
        return min(1.0, max(0.0, other / (wall * cpus)))


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:500]


def main() -> int:
    """Serve requests from stdin until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stdin = sys.stdin.buffer
    # Whatever a library prints to fd 1 (ONNX Runtime's C++ logs) must not corrupt the
    # protocol: the protocol gets its own descriptor, and fd 1 becomes a second stderr.
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    child = Child()
    while (request := _receive(stdin)) is not None:
        try:
            answer = child.handle(request, lambda p: _send(stdout, {"progress": p}))
        except RequestError as exc:
            answer = {"ok": False, "code": exc.code, "error": str(exc)}
        except Exception as exc:  # a bug here must not kill the runner
            answer = {"ok": False, "code": "INTERNAL", "error": f"{type(exc).__name__}: {exc}"}
        _send(stdout, answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
