"""`edgeopt deploy`: a model onto every selected board, verified, activated, recorded.

Three phases:
1. **Ask** every device for its capabilities, concurrently; a board that does not answer is
   failed at once and blocks nothing.
2. **Compress** once per distinct plan: the plan is the user's flags plus what the board needs
   (an older ONNX Runtime gets an artifact lowered with `--target-ort`), so a fleet of identical
   boards costs one compression (the artifact cache makes a repeat free). This runs before any
   push so that what the libraries print stays out of the live progress display.
3. **Roll out**: push (only the bytes the agent lacks, resumable), activate with the plan's
   session options and a smoke inference on one sample of the user's data, `parallel` boards at
   a time. With `canary` N, N boards go first; if any fails, the rollout halts, the canaries are
   rolled back (the previous version activated again, or the new one removed when there was
   none), and the other boards are not touched.

Every deployment, with each device's plan, phases, timings and outcome, goes into the host's
state database (`State`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from edgeopt.host.compress import CompressionReport, CompressRequest, compress
from edgeopt.host.config.inventory import Device
from edgeopt.host.errors import (
    AccuracyGateFailed,
    EdgeoptError,
    InvalidRequest,
    NothingQuantized,
)
from edgeopt.host.planning.plan import DevicePlan
from edgeopt.host.store.state import DeviceRecord, State
from edgeopt.host.transport.client import AgentClient, ClientConfig, file_digest
from edgeopt.host.transport.fanout import each, on_agents, open_client
from edgeopt.host.workflows.artifacts import Artifacts
from edgeopt.host.workflows.plans import DeployOptions, fall_back, lowering_target, plan_for
from edgeopt.host.workflows.samples import DEPLOY_REMEDY, explain_made_up, first_sample
from edgeopt.host.workflows.tune import TuneOptions, TuneResult, tune_device
from edgeopt.proto.capabilities import Capabilities, to_dict
from edgeopt.proto.plan import RunPlan

__all__ = ["DeployReport", "Deployer", "DeviceResult", "Progress", "Rollout", "sent_plan"]

T = TypeVar("T")


@dataclass
class DeviceResult:
    """One board's part of a deployment."""

    device: str
    outcome: str = "failed"
    """ok, failed, skipped (halted before it), rolled back (a canary undone)."""
    plan: DevicePlan | None = None
    """The board's plan, once made."""
    version: str = ""
    sha256: str = ""
    bytes_sent: int = 0
    already_present: bool = False
    previous_version: str = ""
    error: str = ""
    canary: bool = False
    phases: dict[str, float] = field(default_factory=dict)
    """Phase → seconds (connect, tune, compress, push, activate)."""
    tuning: dict[str, Any] | None = None
    """What tuning measured and chose, with --tune."""


@dataclass
class DeployReport:
    """What a deployment did."""

    deployment: int
    results: list[DeviceResult]
    compressions: int
    """Compressions actually run (cache misses); cache hits are not counted."""
    artifacts: dict[str, CompressionReport]
    """Plan key → its compression report."""
    outcome: str

    @property
    def ok(self) -> bool:
        """Whether every selected device succeeded."""
        return all(r.outcome == "ok" for r in self.results)


class Progress(Protocol):
    """Where phase changes and bytes go (the CLI draws them)."""

    def phase(self, device: str, phase: str) -> None:
        """A device entered a phase."""

    def sent(self, device: str, done: int, total: int) -> None:
        """Bytes pushed so far."""

    def finished(self, result: DeviceResult) -> None:
        """A device is done."""


class _Quiet:
    def phase(self, device: str, phase: str) -> None:
        pass

    def sent(self, device: str, done: int, total: int) -> None:
        pass

    def finished(self, result: DeviceResult) -> None:
        pass


def sent_plan(plan: DevicePlan, artifact: CompressionReport) -> RunPlan:
    """The plan as pushed and activated: the agent keeps the source and the lowering with it."""
    return plan.sent(source=str(artifact.input), target_ort=plan.target_ort)


@dataclass
class Rollout:
    """The state of one deployment while it runs."""

    deployment: int
    results: dict[str, DeviceResult]
    plans: dict[str, tuple[str, DevicePlan]] = field(default_factory=dict)
    artifacts: dict[str, CompressionReport] = field(default_factory=dict)
    compressions: int = 0
    tuned: dict[str, DevicePlan] = field(default_factory=dict)


class Deployer:
    """One deployment: see the module docstring."""

    def __init__(
        self,
        devices: Sequence[Device],
        options: DeployOptions,
        state: State,
        *,
        config: ClientConfig | None = None,
        progress: Progress | None = None,
        compress_fn: Callable[[CompressRequest], CompressionReport] = compress,
    ) -> None:
        self.devices = list(devices)
        self.options = options
        self.state = state
        self.config = config or ClientConfig()
        self.progress = progress or _Quiet()
        self._compress = compress_fn

    def run(self, selection: str) -> DeployReport:
        """Deploy; blocking (the CLI's entry)."""
        return asyncio.run(self.deploy(selection))

    async def deploy(self, selection: str) -> DeployReport:
        """Deploy to every device; see the module docstring."""
        options = self.options
        source = Path(options.request.model)
        digest = file_digest(source) if source.is_file() else str(options.request.model)
        deployment = self.state.start_deployment(
            str(options.request.model), digest, options.name, selection,
            {"precision": options.request.precision, "threads": options.threads,
             "provider": options.provider, "canary": options.canary,
             "parallel": options.parallel},
        )  # fmt: skip
        run = Rollout(deployment, {d.name: DeviceResult(d.name) for d in self.devices})
        try:
            return await self._run(run)
        except BaseException:
            self.state.finish_deployment(deployment, "failed")
            raise

    async def _run(self, run: Rollout) -> DeployReport:
        options, deployment = self.options, run.deployment
        ready = await self._ask(run)
        if options.tune is not None:
            ready = await self._tune_all(run, ready)
        runnable = await self._compress_all(run, ready)
        canaries, rest = runnable[: options.canary], runnable[options.canary :]
        for device in canaries:
            run.results[device.name].canary = True
        outcome = "ok"
        await self._roll_out(run, canaries)
        failed = [r for r in (run.results[d.name] for d in canaries) if r.outcome != "ok"]
        if failed:
            outcome = "halted"
            reason = f"rollout halted: canary {failed[0].device} failed: {failed[0].error}"
            await self._undo(run, canaries)
            for device in rest:
                run.results[device.name].outcome = "skipped"
                run.results[device.name].error = reason
                self._finish(run, run.results[device.name])
        else:
            await self._roll_out(run, rest)
        ordered = [run.results[d.name] for d in self.devices]
        if outcome == "ok" and not all(r.outcome == "ok" for r in ordered):
            outcome = "failed"
        self.state.finish_deployment(deployment, outcome)
        return DeployReport(deployment, ordered, run.compressions, run.artifacts, outcome)

    async def _ask(self, run: Rollout) -> list[tuple[Device, Capabilities]]:
        """Capabilities of every device, concurrently; the silent ones fail at once."""
        for device in self.devices:
            self.progress.phase(device.name, "connect")
        asked = await on_agents(self.devices, AgentClient.capabilities, self.config,
                                parallel=self.options.parallel)  # fmt: skip
        ready = []
        for answer in asked:
            device, caps = answer.device, answer.value
            result = run.results[device.name]
            result.phases["connect"] = answer.seconds
            if caps is None:
                result.error = answer.reason
                self._finish(run, result)
                continue
            self.state.record_capabilities(
                device.name, device.address, caps.fingerprint, caps.device_id, to_dict(caps)
            )
            ready.append((device, caps))
        return ready

    async def _tune_all(
        self, run: Rollout, ready: list[tuple[Device, Capabilities]]
    ) -> list[tuple[Device, Capabilities]]:
        """Tune each board (concurrently, each on its own); a board with no winner fails."""
        settings, options = self.options.tune, self.options
        assert settings is not None and options.traits is not None
        tune_options = TuneOptions(
            request=options.request, name=options.name, traits=options.traits,
            budget_s=settings.budget_s, top_k=settings.top_k, retune=settings.retune,
            threads=options.threads, provider=options.provider,
        )  # fmt: skip

        async def one(device: Device, caps: Capabilities) -> TuneResult | None:
            self.progress.phase(device.name, "tune")
            start = time.monotonic()
            target = lowering_target(options.request.target_ort, caps)
            try:
                return await tune_device(
                    device, caps, tune_options, self.state, config=self.config, target=target,
                    progress=lambda d, text: self.progress.phase(d, f"tune: {text}"),
                    compress_fn=self._compress,
                )  # fmt: skip
            except EdgeoptError as exc:
                run.results[device.name].error = f"tuning failed: {exc}"
                return None
            finally:
                run.results[device.name].phases["tune"] = time.monotonic() - start

        # Devices of one kind share an answer: the first of each kind measures, the others
        # reuse it (unless --retune).
        by_kind: dict[str, list[tuple[Device, Capabilities]]] = {}
        for device, caps in ready:
            by_kind.setdefault(caps.fingerprint or device.name, []).append((device, caps))
        firsts = [group[0] for group in by_kind.values()]
        first_results = await self._on_each(firsts, one)
        rest = [pair for group in by_kind.values() for pair in group[1:]]
        rest_results = await self._on_each(rest, one)
        kept = []
        for (device, caps), result in zip([*firsts, *rest], [*first_results, *rest_results],
                                          strict=True):  # fmt: skip
            outcome = run.results[device.name]
            if result is None:
                self._finish(run, outcome)
                continue
            outcome.tuning = result.record()
            if result.best is None:
                lost = "; ".join(
                    f"{t.plan.label} ({t.plan.threads} threads): {t.error}" for t in result.trials
                )
                outcome.error = f"tuning found no candidate that passes the gate: {lost}"
                self._finish(run, outcome)
                continue
            run.tuned[device.name] = result.best
            kept.append((device, caps))
        return kept

    async def _compress_all(
        self, run: Rollout, ready: list[tuple[Device, Capabilities]]
    ) -> list[Device]:
        """One compression per distinct request; returns the devices that have an artifact."""
        artifacts = Artifacts(self._compress)
        requests: dict[str, CompressRequest] = {}
        for device, caps in ready:
            try:
                request, plan = plan_for(
                    self.options, caps, device.name, run.tuned.get(device.name), self.state
                )
                requests[device.name] = request
            except EdgeoptError as exc:  # PlanError included
                run.results[device.name].error = str(exc)
                self._finish(run, run.results[device.name])
                continue
            run.plans[device.name] = (Artifacts.key(request), plan)
            run.results[device.name].plan = plan
            if artifacts.started(request):
                continue
            self.progress.phase(device.name, "compress")
            start = time.monotonic()
            with contextlib.suppress(Exception):  # kept by `artifacts`, said per board below
                await artifacts.get(request)
            run.results[device.name].phases["compress"] = time.monotonic() - start
        runnable = []
        for device, caps in ready:
            if device.name not in run.plans:
                continue  # no plan: already failed and recorded
            key, plan = run.plans[device.name]
            failure = artifacts.made[key].exception()
            # A precision the planner chose that fails the gate or changes nothing: its next.
            while isinstance(failure, (AccuracyGateFailed, NothingQuantized)) and (
                device.name not in run.tuned
            ):
                made = (requests[device.name], plan)
                found = fall_back(self.options, caps, made, str(failure), self.state)
                if found is None:
                    break
                requests[device.name], plan = found
                run.plans[device.name] = (Artifacts.key(found[0]), plan)
                run.results[device.name].plan = plan
                self.progress.phase(device.name, f"compress ({plan.precision})")
                with contextlib.suppress(Exception):  # kept by `artifacts`, said below
                    await artifacts.get(found[0])
                failure = artifacts.made[Artifacts.key(found[0])].exception()
            if failure is not None:
                run.results[device.name].error = (
                    str(failure)
                    if isinstance(failure, EdgeoptError)
                    # one plan's failure must not end the others
                    else f"compression failed: {type(failure).__name__}: {failure}"
                )
                self._finish(run, run.results[device.name])
                continue
            runnable.append(device)
        run.artifacts, run.compressions = artifacts.reports(), artifacts.compressions
        return runnable

    def _finish(self, run: Rollout, result: DeviceResult) -> None:
        self.state.record_device(
            run.deployment,
            DeviceRecord(
                device=result.device, plan=result.plan.record() if result.plan else {},
                outcome=result.outcome,
                canary=result.canary, artifact_digest=result.sha256, version=result.version,
                error=result.error, phases=result.phases, bytes_sent=result.bytes_sent,
            ),
        )  # fmt: skip
        self.progress.finished(result)

    @staticmethod
    async def _on_each(
        pairs: list[tuple[Device, Capabilities]],
        work: Callable[[Device, Capabilities], Awaitable[T]],
    ) -> list[T | None]:
        """`work` on every (device, report) pair at once, through the fan-out."""
        reports = {id(d): caps for d, caps in pairs}  # a Device holds dicts: not hashable
        done = await each([d for d, _ in pairs], lambda d: work(d, reports[id(d)]),
                          parallel=max(1, len(pairs)))  # fmt: skip
        return [o.value for o in done]

    async def _roll_out(self, run: Rollout, devices: list[Device]) -> None:
        async def one(device: Device) -> None:
            key, plan = run.plans[device.name]
            result = run.results[device.name]
            try:
                await self._push_activate(device, run.artifacts[key], plan, result)
                result.outcome = "ok"
            except EdgeoptError as exc:
                result.error = str(exc)
            except Exception as exc:  # one board's failure must not end the others
                result.error = f"{type(exc).__name__}: {exc}"
            self._finish(run, result)

        await each(devices, one, parallel=self.options.parallel)

    async def _push_activate(
        self,
        device: Device,
        artifact: CompressionReport,
        plan: DevicePlan,
        result: DeviceResult,
    ) -> None:
        options = self.options
        async with open_client(device, self.config) as client:
            self.progress.phase(device.name, "push")
            start = time.monotonic()
            pushed = await client.push(
                artifact.artifact, options.name, version=options.version,
                plan=sent_plan(plan, artifact),
                progress=lambda done, total: self.progress.sent(device.name, done, total),
            )  # fmt: skip
            result.phases["push"] = time.monotonic() - start
            result.version, result.sha256 = pushed.version, pushed.sha256
            result.bytes_sent = pushed.bytes_received
            result.already_present = pushed.already_present
            self.progress.phase(device.name, "activate")
            start = time.monotonic()
            request = options.request
            smoke = first_sample(
                options.smoke or request.validation or request.calibration, artifact.artifact
            )
            # The plan goes with the activation too: a version the board already had keeps
            # the plan it was pushed with otherwise.
            try:
                activated = await client.activate(
                    options.name, pushed.version, plan=sent_plan(plan, artifact),
                    smoke_inputs=smoke, timeout=max(60.0, self.config.deadline),
                )  # fmt: skip
            except InvalidRequest as exc:
                explained = smoke is None and explain_made_up(
                    exc, artifact.artifact, remedy=DEPLOY_REMEDY
                )
                if not explained:
                    raise
                raise explained from exc
            result.phases["activate"] = time.monotonic() - start
            result.previous_version = activated.previous_version

    async def _undo(self, run: Rollout, canaries: list[Device]) -> None:
        """Roll back the canaries that did activate."""
        for device in canaries:
            result = run.results[device.name]
            if result.outcome != "ok":
                continue
            try:
                async with open_client(device, self.config) as client:
                    if result.previous_version == result.version:
                        pass  # it was already active: nothing changed there
                    elif result.previous_version:
                        await client.activate(self.options.name, result.previous_version)
                    elif not result.already_present:
                        await client.delete(self.options.name, result.version, force=True)
                result.outcome = "rolled back"
                result.error = "rolled back: another canary failed"
            except EdgeoptError as exc:
                result.outcome = "failed"
                result.error = f"rollback failed: {exc}"
            self._finish(run, result)
