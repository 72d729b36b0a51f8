"""What the agent does with models, apart from gRPC: store, activate, roll back, delete, infer.

`Models` joins the store (agent/store.py) and the runner process (agent/runner/):
- activation loads a version in the runner with its plan, runs a smoke inference, and only then
  records it as active; on any failure the previous version stays active and loaded;
- when the runner dies (ONNX Runtime crashed), the request that was running fails, a new runner
  starts, and the active models are loaded into it again before the answer goes out;
- after an agent restart, `restore` loads every active version again;
- every runner request has a time limit (`Bounds.request_timeout`), and a request whose caller
  left is stopped: both kill the runner (the only stop ONNX Runtime cannot ignore), which then
  starts again with the active models;
- benchmarks and profiles run in a runner of their own (`Measurements`, measuring.py), so that
  serving (Infer) never waits behind a measurement and a measurement killed for its time never
  unloads the served models.

What the two sides share (a runner's answer, stop or crash as a `Refusal`) is calls.py's.

Every refusal is a `Refusal` carrying the gRPC status name; service.py turns it into the status.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeopt.agent import active
from edgeopt.agent.calls import answered, inputs_path, runner_refusals, wrapped
from edgeopt.agent.hooks import ActivationHook, Switch
from edgeopt.agent.manifest import Version, check_name, check_version
from edgeopt.agent.measuring import Measurements
from edgeopt.agent.refusal import Refusal
from edgeopt.agent.runner import (
    Runner,
    RunnerCrashed,
    TensorTuple,
    rss_bytes,
)
from edgeopt.agent.store import Limits, ModelStore
from edgeopt.proto.plan import RunPlan

__all__ = ["Activation", "Bounds", "LoadedModel", "Models", "PushOutcome", "chunks_of"]

log = logging.getLogger("edgeopt.agent")


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
        self,
        root: Path,
        limits: Limits | None = None,
        bounds: Bounds | None = None,
        hook: ActivationHook | None = None,
    ) -> None:
        self.store = ModelStore(root, limits)
        self.hook = hook
        """Told of every switch (--on-activate), after it is made."""
        self.bounds = bounds or Bounds()
        self.runner = Runner(log=root / "runner.log")
        self.measurements = Measurements(self.store, self.bounds, root / "runner.log")
        """Benchmarks and profiles, in a runner of their own (measuring.py)."""
        self._closing = threading.Event()
        self._loaded: dict[str, LoadedModel] = {}
        self._generation = -1  # the runner child the sessions in _loaded live in
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
                "smoke": wrapped(smoke) if isinstance(smoke, list) else smoke,
                "inputs_path": inputs_path(self.store, inputs_sha256),
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

    def _call(
        self,
        request: dict[str, Any],
        during: str,
        progress: Callable[[dict[str, Any]], None] | None = None,
        *,
        cancel: threading.Event | None = None,
    ) -> dict[str, Any]:
        """One runner request; a crash or a stop restarts the runner, active models reloaded."""
        self._fresh()
        with runner_refusals(during, self._fresh):
            answer = self.runner.call(request, self.bounds.request_timeout, progress, cancel)
        return answered(answer)

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
            self._tell(name, previous)
            return Activation(name, target.version, target.sha256, previous, load_ms, smoke_ms,
                              loaded)  # fmt: skip

    def _tell(self, name: str, previous: str) -> None:
        """Run the --on-activate hook for the switch just made (it runs in its own thread)."""
        if self.hook is None:
            return
        record = self.store.version(name, self.store.entry(name).active)
        folder = active.folder_of(self.store.root, name, record)
        self.hook.fire(Switch(
            name, record.version, record.sha256, previous, str(folder / "model.onnx"),
            str(folder / "plan.json"), str(active.model_path(self.store.root, name)),
        ))  # fmt: skip

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
                        "inputs": wrapped(inputs),
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
                "op": "infer", "key": f"{name}@{wanted}", "inputs": wrapped(inputs),
                "max_bytes": self.bounds.max_infer_bytes,
            }  # fmt: skip
            inputs.clear()  # the wrapped list in `request` is the last reference to the bytes
            pieces = self.runner.stream(request, self.bounds.request_timeout, cancel)
            try:
                with runner_refusals(during, self._fresh):
                    answer = next(pieces)
            except BaseException:
                if transient:
                    self._unload(f"{name}@{wanted}")
                raise
        # Not under the models' lock while the outputs flow at the client's pace: the runner's
        # lock (held by `pieces`) keeps any other request, an unload included, waiting.
        try:
            sizes = answered(answer).pop("buffer_sizes")
            outputs = [(n, d, s, size) for (n, d, s, _), size in zip(answer["outputs"], sizes)]
            yield {"version": wanted, **answer, "outputs": outputs}
            with runner_refusals(during, self._fresh):
                yield from pieces
        finally:
            pieces.close()
            if transient:
                self._unload(f"{name}@{wanted}")

    def benchmark(
        self,
        request: dict[str, Any],
        progress: Callable[[dict[str, Any]], None],
        cancel: threading.Event | None = None,
    ) -> dict[str, Any]:
        """Measure a stored model (agent.proto, Benchmark): `Measurements.benchmark`."""
        return self.measurements.benchmark(request, progress, cancel)

    def profile(
        self, request: dict[str, Any], cancel: threading.Event | None = None
    ) -> dict[str, Any]:
        """Profile a stored model (agent.proto, Profile): `Measurements.profile`."""
        return self.measurements.profile(request, cancel)

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
        """Stop the runners (a busy one is killed rather than waited for) and the hook."""
        self._closing.set()
        if self.hook is not None:
            self.hook.close()
        self.measurements.close()
        self.runner.kill() if self.runner.busy else self.runner.stop()

    def kill(self) -> None:
        """Kill both runners now (shutdown): a request they run fails at once."""
        self._closing.set()
        self.measurements.runner.kill()
        self.runner.kill()


def chunks_of(requests: Iterable[Any]) -> Iterator[bytes]:
    """The chunk payloads of PushRequest messages; INVALID_ARGUMENT for a second header."""
    for request in requests:
        if request.WhichOneof("part") != "chunk":
            raise Refusal("INVALID_ARGUMENT", "a push has one header, first; then only chunks")
        yield request.chunk
