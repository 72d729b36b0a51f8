"""What the agent does with models, apart from gRPC: store, activate, roll back, delete, infer.

`Models` joins the store (agent/store.py) and the runner process (agent/runner.py):
- activation loads a version in the runner with its plan, runs a smoke inference, and only then
  records it as active; on any failure the previous version stays active and loaded;
- when the runner dies (ONNX Runtime crashed), the request that was running fails, a new runner
  starts, and the active models are loaded into it again before the answer goes out;
- after an agent restart, `restore` loads every active version again;
- every runner request has a time limit (`Bounds.request_timeout`), and a request whose caller
  left is stopped: both kill the runner (the only stop ONNX Runtime cannot ignore), which then
  starts again with the active models;
- benchmarks and profiles run in a runner of their own, so that serving (Infer) never waits
  behind a measurement and a measurement killed for its time never unloads the served models.

Every refusal is a `Refusal` carrying the gRPC status name; server.py turns it into the status.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeopt.agent.manifest import Version, check_digest, check_name, check_version
from edgeopt.agent.refusal import Refusal
from edgeopt.agent.runner import (
    Runner,
    RunnerCrashed,
    RunnerStopped,
    TensorTuple,
    out_of_band,
    rss_bytes,
)
from edgeopt.agent.store import Limits, ModelStore
from edgeopt.proto.plan import RunPlan

log = logging.getLogger("edgeopt.agent")

MAX_BENCH_QUEUE = 4
"""Benchmarks that may wait behind the running one; more are refused (RESOURCE_EXHAUSTED)."""
HEAVY_IDLE_SECONDS = 30.0
"""The benchmark runner ends after this long without work (its memory goes back to the board)."""
MAX_WARMUP = 10_000
MAX_REPEATS = 10_000_000
MAX_PROFILE_RUNS = 10_000


@dataclass(frozen=True)
class Bounds:
    """How much work one request may cause."""

    request_timeout: float = 120.0
    """Seconds one runner request may take (a load, a smoke test, one inference)."""
    max_benchmark_seconds: float = 600.0
    """Longest timed phase a Benchmark may ask for; its runner limit adds request_timeout."""
    max_infer_bytes: int = 64 << 20
    """Largest sum of tensor bytes one inference takes in, and gives out."""
    max_message_bytes: int = 4 << 20
    """Largest gRPC message (a profile's trace must fit one)."""


def _number(request: dict[str, Any], key: str, low: float, high: float) -> float:
    """A Benchmark/Profile parameter within [low, high]; INVALID_ARGUMENT outside, never clamped."""
    value = float(request.get(key) or 0)
    if not (low <= value <= high):  # also false for NaN
        raise Refusal(
            "INVALID_ARGUMENT", f"{key} = {value:g} is out of range: use {low:g} to {high:g}"
        )
    return value


@dataclass
class LoadedModel:
    """A version the runner holds."""

    version: str
    sha256: str
    memory_bytes: int
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Activation:
    """What an activation did."""

    name: str
    version: str
    sha256: str
    previous: str
    load_ms: float
    smoke_ms: float
    loaded: LoadedModel


@dataclass(frozen=True)
class PushOutcome:
    """What a push stored."""

    version: Version
    bytes_received: int
    already_present: bool


class Models:
    """The agent's models: one store, one runner."""

    def __init__(
        self, root: Path, limits: Limits | None = None, bounds: Bounds | None = None
    ) -> None:
        self.store = ModelStore(root, limits)
        self.bounds = bounds or Bounds()
        self.runner = Runner(log=root / "runner.log")
        self.heavy = Runner(log=root / "runner.log")
        """Benchmarks and profiles: a child of their own (see the module docstring)."""
        self._heavy_idle: threading.Timer | None = None
        self._closing = threading.Event()
        self._loaded: dict[str, LoadedModel] = {}
        self._generation = -1  # the runner child the sessions in _loaded live in
        self._bench_lock = threading.Lock()  # one benchmark at a time: two would skew both
        self._queue_lock = threading.Lock()
        self._waiting = 0
        self._lock = threading.RLock()  # activation, rollback, delete and reloads, one at a time

    # --- push ---------------------------------------------------------------------------

    def push(
        self,
        header: dict[str, Any],
        chunks: Iterator[bytes],
    ) -> PushOutcome:
        """Store an artifact from a header and its chunks (see agent.proto, PushModel)."""
        name, version, sha256 = header["name"], header["version"], header["sha256"]
        size, offset, plan = int(header["size"]), int(header["offset"]), header["plan"]
        if name or version:  # no name: the artifact alone, for a Benchmark by digest
            check_name(name)
            self._check_label(name, version, sha256)
        if size <= 0:
            raise Refusal("INVALID_ARGUMENT", "the header's size must be positive")
        with self.store.digest_lock(sha256):
            complete, _ = self.store.upload_offset(sha256)
            received = 0
            if not complete:
                upload = self.store.begin_upload(sha256, size, offset)
                try:
                    for chunk in chunks:
                        upload.write(chunk)
                except BaseException:  # refused, or the client went away: keep what is good
                    upload.abort(keep=True)
                    raise
                upload.finish()
                received = upload.received
            else:
                for chunk in chunks:  # nothing should follow; never store it
                    received += len(chunk)
                size = self.store.blob(sha256).stat().st_size  # not the header's word for it
            if not name:
                return PushOutcome(Version("", sha256, size, time.time(), plan), received, complete)
            try:
                stored = self.store.add_version(name, version, sha256, size, plan)
            except Refusal as exc:
                if not complete and exc.code == "RESOURCE_EXHAUSTED":  # the disk is full:
                    self.store.drop_unnamed(sha256)  # the artifact this push brought goes too
                raise
        return PushOutcome(stored, received, complete)

    def _check_label(self, name: str, version: str, sha256: str) -> None:
        """ALREADY_EXISTS before any byte is sent when the label names another artifact."""
        if not version:
            return
        check_version(version)
        entry = self.store.entries().get(name)
        existing = entry.find(version) if entry else None
        if existing is not None and existing.sha256 != sha256:
            raise Refusal(
                "ALREADY_EXISTS",
                f"{name} {version} already holds another artifact ({existing.sha256[:12]}); "
                "push under a new version label",
            )

    # --- activation ---------------------------------------------------------------------

    def _load(
        self,
        name: str,
        version: Version,
        plan: RunPlan,
        smoke: list[TensorTuple] | bool | None,
        *,
        inputs_sha256: str = "",
        cancel: threading.Event | None = None,
    ) -> tuple[LoadedModel, float, float]:
        answer = self._call(
            {
                "op": "load",
                "key": f"{name}@{version.version}",
                "path": str(self.store.blob(version.sha256)),
                "plan": plan,
                "smoke": _wrapped(smoke) if isinstance(smoke, list) else smoke,
                "inputs_path": self._inputs_path(inputs_sha256),
                "max_bytes": self.bounds.max_infer_bytes,
            },
            during=f"loading {name} {version.version}",
            cancel=cancel,
        )
        loaded = LoadedModel(
            version.version, version.sha256, answer["memory_bytes"],
            answer["inputs"], answer["outputs"],
        )  # fmt: skip
        return loaded, answer["load_ms"], answer["smoke_ms"]

    def _fresh(self) -> None:
        """Reload the active models when the runner child is not the one that loaded them.

        That happens when it died between requests (killed, out of memory). Not while the agent
        shuts down: a runner killed then stays dead (starting one and loading every active
        model again only delays the exit).
        """
        if self._closing.is_set():
            raise Refusal("UNAVAILABLE", "the agent is shutting down; try again when it is back")
        with self._lock:
            if self.runner.ensure_started() != self._generation:
                self._loaded.clear()
                self._generation = self.runner.generation
                self.restore()

    def _inputs_path(self, sha256: str) -> str | None:
        """The stored tensor file a request names by digest, checked; None for none."""
        if not sha256:
            return None
        check_digest(sha256)
        path = self.store.blob(sha256)
        if not path.is_file():
            raise Refusal("NOT_FOUND", f"no tensor file {sha256} in this agent's store; push it")
        return str(path)

    def _call(
        self,
        request: dict[str, Any],
        during: str,
        progress: Callable[[dict[str, Any]], None] | None = None,
        *,
        cancel: threading.Event | None = None,
        runner: Runner | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """One runner request; a crash or a stop restarts the runner, active models reloaded."""
        runner = runner or self.runner
        serving = runner is self.runner
        if serving:
            self._fresh()
        with self._stopped_or_crashed(during, restart=serving):
            answer = runner.call(request, timeout or self.bounds.request_timeout, progress, cancel)
        return _answered(answer)

    def activate(
        self,
        name: str,
        version: str = "",
        plan: RunPlan | None = None,
        smoke: list[TensorTuple] | None = None,
        *,
        rollback: bool = False,
        inputs_sha256: str = "",
        cancel: threading.Event | None = None,
    ) -> Activation:
        """Load, smoke-test and switch; on failure the previous version stays active."""
        with self._lock:
            target = self.store.version(name, version)
            previous = self.store.entry(name).active
            effective = plan if plan is not None else target.plan
            try:
                loaded, load_ms, smoke_ms = self._load(
                    name, target, effective, smoke, inputs_sha256=inputs_sha256, cancel=cancel
                )
            except Refusal as exc:
                kept = f"; {name} {previous} stays active" if previous else ""
                message = f"{name} {target.version} was not activated: {exc}{kept}"
                raise Refusal(exc.code, message) from exc
            old = self._loaded.get(name)
            if plan is not None:  # the plan it now runs with: the one to restore after a restart
                self.store.set_plan(name, target.version, plan)
            self.store.set_active(name, target.version, rollback=rollback)
            self._loaded[name] = loaded
            if old is not None and old.version != target.version:
                self._unload(f"{name}@{old.version}")
            return Activation(name, target.version, target.sha256, previous, load_ms, smoke_ms,
                              loaded)  # fmt: skip

    def rollback(self, name: str) -> Activation:
        """Activate the version that was active before the current one."""
        with self._lock:
            return self.activate(name, self.store.rollback_target(name), rollback=True)

    def _unload(self, key: str) -> None:
        try:
            self.runner.call({"op": "unload", "key": key}, self.bounds.request_timeout)
        except RunnerCrashed:
            self._loaded.clear()

    def restore(self) -> list[str]:
        """Load every active version into the runner (after a restart); returns failures.

        A model whose load kills the runner is skipped and the others are loaded again into
        the next runner: the sessions of the dead one are gone with it.
        """
        failures = []
        crashed: set[str] = set()
        with self._lock:
            while True:
                if self.runner.ensure_started() != self._generation:
                    self._loaded.clear()
                    self._generation = self.runner.generation
                try:
                    for name, entry in self.store.entries().items():
                        version = entry.find(entry.active) if entry.active else None
                        if version is None or name in self._loaded or name in crashed:
                            continue
                        answer = self.runner.call(
                            {
                                "op": "load",
                                "key": f"{name}@{version.version}",
                                "path": str(self.store.blob(version.sha256)),
                                "plan": version.plan,
                                "smoke": False,  # it passed its smoke test when activated
                            },
                            self.bounds.request_timeout,
                        )
                        if answer.get("ok"):
                            self._loaded[name] = LoadedModel(
                                version.version, version.sha256, answer["memory_bytes"],
                                answer["inputs"], answer["outputs"],
                            )  # fmt: skip
                        else:
                            crashed.add(name)
                            failures.append(f"{name} {version.version}: {answer.get('error')}")
                    break
                except RunnerCrashed as exc:
                    crashed.add(name)
                    failures.append(f"{name} {version.version if version else ''}: {exc}")
        for failure in failures:
            log.warning("could not load the active model again: %s", failure)
        return failures

    # --- the rest -----------------------------------------------------------------------

    def delete(self, name: str, version: str, force: bool) -> tuple[list[str], int]:
        """Remove versions; the active one only with `force` (it is unloaded then)."""
        with self._lock:
            removed, freed = self.store.delete(name, version, force)
            loaded = self._loaded.get(name)
            if loaded is not None and loaded.version in removed:
                self._loaded.pop(name)
                self._unload(f"{name}@{loaded.version}")
            return removed, freed

    def _ready(self, name: str, version: str, cancel: threading.Event | None) -> tuple[str, bool]:
        """Make sure `version` (default: the active one) is loaded; (its label, transient).

        A version that is not the active one is loaded for one call only (transient). Called
        with the lock held.
        """
        entry = self.store.entry(name)
        wanted = version or entry.active
        if not wanted:
            raise Refusal(
                "FAILED_PRECONDITION", f"{name} has no active version; activate one first"
            )
        loaded = self._loaded.get(name)
        if loaded is not None and loaded.version == wanted:
            return wanted, False
        target = self.store.version(name, wanted)
        if wanted == entry.active:
            self._loaded[name], _, _ = self._load(name, target, target.plan, False, cancel=cancel)
            return wanted, False
        self._load(name, target, target.plan, False, cancel=cancel)
        return wanted, True

    def infer(
        self,
        name: str,
        version: str,
        inputs: list[TensorTuple],
        cancel: threading.Event | None = None,
    ) -> dict[str, Any]:
        """Run the active version (or `version`, loading it if needed) on `inputs`.

        The answer's outputs are (name, dtype, shape, buffer) with the buffers as the runner
        sent them.
        """
        self._fresh()
        with self._lock:
            wanted, transient = self._ready(name, version, cancel)
            # Under the lock: an activation or a forced delete cannot unload it meanwhile.
            try:
                answer = self._call(
                    {
                        "op": "infer",
                        "key": f"{name}@{wanted}",
                        "inputs": _wrapped(inputs),
                        "max_bytes": self.bounds.max_infer_bytes,
                    },
                    during=f"running {name} {wanted}",
                    cancel=cancel,
                )
            finally:
                if transient:
                    self._unload(f"{name}@{wanted}")
        return {"version": wanted, **answer}

    def infer_stream(
        self,
        name: str,
        version: str,
        inputs: list[TensorTuple],
        cancel: threading.Event | None = None,
    ) -> Generator[Any, None, None]:
        """`infer` for large tensors: yields the answer, then the outputs' bytes in pieces.

        The answer's outputs carry their size in place of their bytes. `inputs` is emptied
        once the runner has them, and the outputs pass through in pieces as the runner writes
        them: the agent never holds one inference's inputs and outputs whole (its memory stays
        flat). The model stays locked until the last piece is taken.

        Raises:
            Refusal: as `infer`, raised where the generator is advanced.
        """
        self._fresh()
        with self._lock:  # held until the runner has the request: then its own lock holds it
            wanted, transient = self._ready(name, version, cancel)
            during = f"running {name} {wanted}"
            request = {
                "op": "infer", "key": f"{name}@{wanted}", "inputs": _wrapped(inputs),
                "max_bytes": self.bounds.max_infer_bytes,
            }  # fmt: skip
            inputs.clear()  # the wrapped list in `request` is the last reference to the bytes
            pieces = self.runner.stream(request, self.bounds.request_timeout, cancel)
            try:
                with self._stopped_or_crashed(during):
                    answer = next(pieces)
            except BaseException:
                if transient:
                    self._unload(f"{name}@{wanted}")
                raise
        # Not under the models' lock while the outputs flow at the client's pace: the runner's
        # lock (held by `pieces`) keeps any other request, an unload included, waiting.
        try:
            sizes = _answered(answer).pop("buffer_sizes")
            outputs = [(n, d, s, size) for (n, d, s, _), size in zip(answer["outputs"], sizes)]
            yield {"version": wanted, **answer, "outputs": outputs}
            with self._stopped_or_crashed(during):
                yield from pieces
        finally:
            pieces.close()
            if transient:
                self._unload(f"{name}@{wanted}")

    @contextlib.contextmanager
    def _stopped_or_crashed(self, during: str, *, restart: bool = True) -> Iterator[None]:
        """Turn a runner's stop or death into a Refusal.

        The serving runner is restarted (`restart`) with the active models; the benchmark
        runner starts again with its next request.
        """
        try:
            yield
        except RunnerStopped as exc:
            log.warning("%s while %s", exc, during)
            if restart:
                self._fresh()
            code = "DEADLINE_EXCEEDED" if exc.reason == "timeout" else "CANCELLED"
            raise Refusal(code, f"{during} stopped: {exc}") from exc
        except RunnerCrashed as exc:
            log.warning("%s while %s; restarting it", exc, during)
            if restart:
                self._fresh()
            raise Refusal(
                "FAILED_PRECONDITION", f"ONNX Runtime crashed while {during}: {exc}"
            ) from exc

    def benchmark(
        self,
        request: dict[str, Any],
        progress: Callable[[dict[str, Any]], None],
        cancel: threading.Event | None = None,
    ) -> dict[str, Any]:
        """Measure a stored model in the runner (agent.proto, Benchmark); one at a time.

        Raises:
            Refusal: RESOURCE_EXHAUSTED when `MAX_BENCH_QUEUE` callers already wait, NOT_FOUND
                for an unknown model, and what the runner refuses.
        """
        _number(request, "warmup", 0, MAX_WARMUP)
        low = _number(request, "min_repeats", 0, MAX_REPEATS)
        high = _number(request, "max_repeats", 0, MAX_REPEATS)
        if high and low > high:
            raise Refusal(
                "INVALID_ARGUMENT", f"min_repeats {low:g} is more than max_repeats {high:g}"
            )
        _number(request, "target_ci", 0, 1)
        seconds = _number(request, "max_seconds", 0, self.bounds.max_benchmark_seconds)
        timeout = (seconds or 10.0) + self.bounds.request_timeout
        return self._heavy(
            request, "bench", "benchmarking", progress, cancel=cancel, timeout=timeout
        )

    def profile(
        self, request: dict[str, Any], cancel: threading.Event | None = None
    ) -> dict[str, Any]:
        """Profile a stored model in the runner (agent.proto, Profile); in the Benchmark queue."""
        _number(request, "runs", 0, MAX_PROFILE_RUNS)
        _number(request, "warmup", 0, MAX_WARMUP)
        request = {**request, "max_trace_bytes": self.bounds.max_message_bytes - (64 << 10)}
        return self._heavy(
            request, "profile", "profiling", lambda _: None, cancel=cancel,
            timeout=self.bounds.request_timeout,
        )  # fmt: skip

    def _heavy(
        self,
        request: dict[str, Any],
        op: str,
        doing: str,
        progress: Callable[[dict[str, Any]], None],
        *,
        cancel: threading.Event | None,
        timeout: float,
    ) -> dict[str, Any]:
        """A benchmark or profile: the model resolved, then run alone in the heavy runner."""
        inputs_path = self._inputs_path(request.get("inputs_sha256") or "")
        if request.get("sha256"):
            sha256 = request["sha256"]
            check_digest(sha256)  # before it names a file: a digest is never a path
            if not self.store.blob(sha256).is_file():
                raise Refusal("NOT_FOUND", f"no artifact {sha256} in this agent's store")
            what, plan = sha256[:12], RunPlan()
        else:
            entry = self.store.entry(request.get("name", ""))
            version = self.store.version(request["name"], request.get("version") or entry.active)
            sha256, what, plan = (
                version.sha256,
                f"{request['name']} {version.version}",
                version.plan,
            )
        if request.get("plan") is not None:  # the request's own plan wins
            plan = request["plan"]
        with self._queue_lock:
            if self._waiting >= MAX_BENCH_QUEUE:
                raise Refusal(
                    "RESOURCE_EXHAUSTED",
                    f"{self._waiting} benchmarks are already waiting on this agent (at most "
                    f"{MAX_BENCH_QUEUE}); try again when they are done",
                )
            self._waiting += 1
        try:
            while not self._bench_lock.acquire(timeout=0.1):
                if cancel is not None and cancel.is_set():
                    raise Refusal("CANCELLED", f"{doing} {what}: cancelled while queued")
        finally:  # running now (or never will): no longer waiting
            with self._queue_lock:
                self._waiting -= 1
        try:
            if self._heavy_idle is not None:
                self._heavy_idle.cancel()
            answer = self._call(
                {
                    **request,
                    "op": op,
                    "path": str(self.store.blob(sha256)),
                    "plan": plan,
                    "inputs": _wrapped(request.get("inputs")),
                    "inputs_path": inputs_path,
                    "max_bytes": self.bounds.max_infer_bytes,
                },
                during=f"{doing} {what}",
                progress=progress,
                cancel=cancel,
                runner=self.heavy,
                timeout=timeout,
            )
        finally:
            self._heavy_idle = threading.Timer(HEAVY_IDLE_SECONDS, self.heavy.stop)
            self._heavy_idle.daemon = True
            self._heavy_idle.start()
            self._bench_lock.release()
        return {**answer, "sha256": sha256, "plan": plan}

    def loaded(self) -> dict[str, LoadedModel]:
        """Active versions the runner holds, by name.

        Never waits: a copy of the dict is atomic, and ListModels must answer while the runner
        is busy (an activation or inference holds the lock for as long as the runner works).
        """
        return dict(self._loaded)

    def memory(self) -> tuple[int, int]:
        """(agent RSS, runner RSS) in bytes."""
        pid = self.runner.pid
        return rss_bytes(), rss_bytes(pid) if pid else 0

    def close(self) -> None:
        """Stop the runners; a busy one is killed rather than waited for."""
        self._closing.set()
        if self._heavy_idle is not None:
            self._heavy_idle.cancel()
        for runner in (self.heavy, self.runner):
            runner.kill() if runner.busy else runner.stop()

    def kill(self) -> None:
        """Kill both runners now (shutdown): a request they run fails at once."""
        self._closing.set()
        self.heavy.kill()
        self.runner.kill()


def _answered(answer: dict[str, Any]) -> dict[str, Any]:
    """The runner's answer, or its refusal raised as one."""
    if not answer.get("ok"):
        raise Refusal(answer.get("code", "INTERNAL"), answer.get("error", "runner error"))
    return answer


def _wrapped(tensors: list[TensorTuple] | None) -> list[TensorTuple] | None:
    """Tensors with their bytes marked to travel out of band to the runner (no copy)."""
    if not tensors:
        return tensors
    return [(n, d, s, out_of_band(b)) for n, d, s, b in tensors]


def chunks_of(requests: Iterable[Any]) -> Iterator[bytes]:
    """The chunk payloads of PushRequest messages; INVALID_ARGUMENT for a second header."""
    for request in requests:
        if request.WhichOneof("part") != "chunk":
            raise Refusal("INVALID_ARGUMENT", "a push has one header, first; then only chunks")
        yield request.chunk
