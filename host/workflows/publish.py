"""`edgeopt publish`: a model for boards that pull, through an OCI registry.

The same three phases as a deploy (deploy.py), with the registry between host and boards:
1. **Know** each board without dialing it: its capabilities from `--profile`, else the status
   its agent last pushed to the registry, else the host's last snapshot of it, else its
   inventory profile. A board with none of these fails at once, saying so.
2. **Compress** once per distinct plan (deploy's code, the same artifact cache).
3. **Publish**: each distinct (artifact, plan) is uploaded once as an OCI artifact (the model blob
   by digest, so what the registry has is not sent again, and two plans share it), then each
   board's desired state names it. With `canary` N, N boards get theirs first and the publish
   waits (up to `wait`) for their statuses: if one refuses or does not converge, their desired
   states are pointed back and the rest are not touched. With `wait`, every board's
   convergence is awaited too.

Every publish is a deployment in the host's state database, like a deploy.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from edgeopt.host.compress import CompressionReport, CompressRequest, compress
from edgeopt.host.config.device_profiles import DeviceProfile, as_capabilities
from edgeopt.host.config.inventory import Device
from edgeopt.host.errors import EdgeoptError, RegistryFailed
from edgeopt.host.planning.plan import DevicePlan
from edgeopt.host.store.state import State
from edgeopt.host.transport.registry import DeviceView, FleetRegistry, Published
from edgeopt.host.transport.wire import write_tensor_file
from edgeopt.host.workflows.deploy import Deployer, DeviceResult, Progress, Rollout, sent_plan
from edgeopt.host.workflows.plans import DeployOptions
from edgeopt.host.workflows.samples import first_sample
from edgeopt.proto import fleetstate as fs
from edgeopt.proto.capabilities import Capabilities, from_dict

__all__ = ["PublishOptions", "Publisher", "rollback_desired", "wait_converged"]


@dataclass(frozen=True)
class PublishOptions:
    """What publish adds to a deploy's options."""

    profile: DeviceProfile | None = None
    """Plan every board as this profile (boards that never reported)."""
    profiles: Mapping[str, DeviceProfile] = field(default_factory=dict)
    """The known profiles, for a board whose inventory entry names one."""
    wait: float = 0.0
    """Seconds to wait for every board to converge (0: only the canaries are waited for)."""
    canary_wait: float = 600.0
    """Seconds to wait for the canaries."""
    poll: float = 1.0
    """Seconds between two reads of the statuses while waiting."""


class Publisher(Deployer):
    """One publish: see the module docstring."""

    def __init__(
        self,
        devices: Sequence[Device],
        options: DeployOptions,
        state: State,
        registry: FleetRegistry,
        publish: PublishOptions | None = None,
        *,
        progress: Progress | None = None,
        compress_fn: Callable[[CompressRequest], CompressionReport] = compress,
    ) -> None:
        super().__init__(devices, options, state, progress=progress, compress_fn=compress_fn)
        self.registry = registry
        self.publish = publish or PublishOptions()
        self._published: dict[tuple[str, str], Published] = {}
        self._lock = asyncio.Lock()
        self.bytes_uploaded = 0

    async def _ask(self, run: Rollout) -> list[tuple[Device, Capabilities]]:
        """Capabilities without dialing any board (see the module docstring)."""
        ready = []
        for device in self.devices:
            result = run.results[device.name]
            self.progress.phase(device.name, "know")
            start = time.monotonic()
            try:
                caps, source = await asyncio.to_thread(self._known, device)
            except EdgeoptError as exc:
                caps, source = None, str(exc)
            result.phases["know"] = time.monotonic() - start
            if caps is None:
                result.error = source
                self._finish(run, result)
                continue
            ready.append((device, caps))
        return ready

    def _known(self, device: Device) -> tuple[Capabilities | None, str]:
        """A board's capabilities and where they came from (or None and why not)."""
        if self.publish.profile is not None:
            return as_capabilities(self.publish.profile), f"profile {self.publish.profile.name}"
        fs.check_device(device.name)
        view = self.registry.view(device.name)
        caps = view.capabilities()
        if caps is not None:
            return caps, "its status in the registry"
        report = self.state.last_capabilities(device.name)
        if report is not None:
            try:
                return from_dict(report), "the host's last snapshot"
            except (TypeError, ValueError, KeyError):
                pass
        if device.profile is not None:
            profile = self.publish.profiles.get(device.profile)
            if profile is not None:
                return as_capabilities(profile), f"inventory profile {profile.name}"
        return None, (
            f"nothing is known of {device.name}: it has pushed no status to {self.registry} and "
            "the host never reached it; give --profile NAME (or a profile in the inventory)"
        )

    async def _roll_out(self, run: Rollout, devices: list[Device]) -> None:
        """Publish each board's artifact (once per distinct one) and its desired state."""

        async def one(device: Device) -> None:
            key, plan = run.plans[device.name]
            result = run.results[device.name]
            try:
                await self._publish_one(run, device, run.artifacts[key], plan, result)
                result.outcome = "ok"
            except EdgeoptError as exc:
                result.error = str(exc)
            except Exception as exc:  # one board's failure must not end the others
                result.error = f"{type(exc).__name__}: {exc}"

        for device in devices:  # artifacts upload one at a time: the uplink is the limit
            await one(device)
        waited = [d for d in devices if run.results[d.name].outcome == "ok"]
        limit = self.publish.canary_wait if any(run.results[d.name].canary for d in devices) else (
            self.publish.wait
        )  # fmt: skip
        if waited and limit > 0:
            views = await asyncio.to_thread(
                wait_converged, self.registry, [d.name for d in waited], limit, self.publish.poll,
                self.progress.phase,
            )  # fmt: skip
            for device in waited:
                result = run.results[device.name]
                view = views[device.name]
                result.phases["converge"] = view[1]
                if view[0].state != "converged":
                    result.outcome = "failed"
                    result.error = _why_not(view[0], limit)
        for device in devices:
            self._finish(run, run.results[device.name])

    async def _publish_one(
        self,
        run: Rollout,
        device: Device,
        artifact: CompressionReport,
        plan: DevicePlan,
        result: DeviceResult,
    ) -> None:
        options = self.options
        sent = sent_plan(plan, artifact)
        version = options.version or f"d{run.deployment}"
        self.progress.phase(device.name, "upload")
        start = time.monotonic()
        async with self._lock:
            key = (str(artifact.artifact), repr(sent))
            published = self._published.get(key)
            if published is None:
                smoke = first_sample(options.smoke or options.request.validation
                                     or options.request.calibration, artifact.artifact)  # fmt: skip
                inputs = None
                if smoke:
                    buffer = io.BytesIO()
                    write_tensor_file(buffer, smoke)
                    inputs = buffer.getvalue()
                published = await asyncio.to_thread(
                    self.registry.publish_artifact, artifact.artifact, sent, options.name,
                    version, inputs,
                )  # fmt: skip
                self._published[key] = published
                self.bytes_uploaded += published.bytes_sent
                result.bytes_sent = published.bytes_sent
        result.phases["upload"] = time.monotonic() - start
        result.version, result.sha256 = version, published.model_digest.split(":", 1)[1]
        self.progress.phase(device.name, "desired")
        wanted = fs.DesiredModel(options.name, version, published.artifact, sent.precision)
        desired, _ = await asyncio.to_thread(self.registry.set_desired, device.name, [wanted],
                                             run.deployment)  # fmt: skip
        now = next(m for m in desired.models if m.name == options.name)
        result.previous_version = now.previous_version

    async def _undo(self, run: Rollout, canaries: list[Device]) -> None:
        """Point the canaries' desired states back to what they named before."""
        for device in canaries:
            result = run.results[device.name]
            if not result.version:
                continue
            try:
                await asyncio.to_thread(rollback_desired, self.registry, device.name,
                                        self.options.name, first_removes=True)  # fmt: skip
                result.outcome = "rolled back"
                result.error = result.error or "rolled back: another canary failed"
            except EdgeoptError as exc:
                result.outcome = "failed"
                result.error = f"rollback failed: {exc}"
            self._finish(run, result)


def _why_not(view: DeviceView, limit: float) -> str:
    if view.status_error:
        return f"its status cannot be read: {view.status_error}"
    if view.status is None:
        return f"no status from the board within {limit:.0f} s"
    refused = [f"{m.name}: {m.error}" for m in view.status.models if m.state != "active"]
    if view.status.desired == view.desired_digest and refused:
        return "the board refused it: " + "; ".join(refused)
    if view.status.error:
        return f"not converged within {limit:.0f} s; the board says: {view.status.error}"
    return f"not converged within {limit:.0f} s (the board has not applied it yet)"


def wait_converged(
    registry: FleetRegistry,
    devices: list[str],
    limit: float,
    poll: float = 1.0,
    progress: Callable[[str, str], None] | None = None,
) -> dict[str, tuple[DeviceView, float]]:
    """Read the devices' statuses until each converged or failed, or `limit` seconds passed.

    Returns each device's last view and the seconds it took to settle (or `limit`).
    """
    start = time.monotonic()
    settled: dict[str, tuple[DeviceView, float]] = {}
    while True:
        for name in devices:
            if name in settled:
                continue
            view = registry.view(name)
            if view.state in ("converged", "failed"):
                settled[name] = (view, time.monotonic() - start)
                if progress is not None:
                    progress(name, view.state)
        elapsed = time.monotonic() - start
        if len(settled) == len(devices) or elapsed >= limit:
            break
        time.sleep(min(poll, max(0.0, limit - elapsed)))
    for name in devices:
        settled.setdefault(name, (registry.view(name), time.monotonic() - start))
    return settled


def rollback_desired(
    registry: FleetRegistry, device: str, name: str, *, first_removes: bool = False
) -> fs.DesiredModel | None:
    """Point `name` on `device` back to the artifact its desired state named before.

    The desired state remembers the one it replaced (`previous`), so a rollback needs no host
    database; rolling back twice returns to where it started. With `first_removes`, a model
    with nothing before it (a canary's first publish) is taken out of the desired state
    (returns None): the board keeps what it has, and a new desired state asks nothing of it.

    Raises:
        RegistryFailed: the device's desired state names no such model, or nothing before it.
    """
    current, _ = registry.desired(device)
    now = next((m for m in (current.models if current else ()) if m.name == name), None)
    if now is None:
        raise RegistryFailed(f"{device}'s desired state names no model {name!r}")
    if not now.previous and first_removes:
        registry.set_desired(device, [], remove=[name])
        return None
    if not now.previous:
        raise RegistryFailed(
            f"{device}'s desired state has no version of {name} before {now.version} to go back "
            "to; publish the one you want"
        )
    back = fs.DesiredModel(name, now.previous_version, now.previous, "", now.artifact,
                           now.version)  # fmt: skip
    registry.set_desired(device, [back], keep_previous=True)
    return back
