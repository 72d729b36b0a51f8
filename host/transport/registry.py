"""The host's side of pull mode: artifacts and desired states into an OCI registry, statuses out.

`FleetRegistry` wraps edgeopt.proto.oci's client (the same one the agent pulls with) for one
repository laid out as edgeopt.proto.fleetstate describes:
- `publish_artifact` uploads a model once (a blob by digest: what the registry already has is not
  sent), its plan as the artifact's config, and a smoke input when there is one, then the artifact
  manifest under `artifact-<hex>`; two plans of the same bytes share the model blob;
- `set_desired` writes a device's desired state (generation counted up from the one there);
- `status`, `statuses` and `desired` read back what agents and earlier publishes wrote, every
  field checked (a board's status is not trusted: a malformed one is reported, not used).

Synchronous (http.client); the workflows run it in worker threads.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from edgeopt.host.errors import RegistryFailed
from edgeopt.proto import fleetstate as fs
from edgeopt.proto.capabilities import Capabilities, from_dict
from edgeopt.proto.oci import (
    Credentials,
    Registry,
    RegistryError,
    RegistryRef,
    backoff,
    sha256_digest,
)
from edgeopt.proto.plan import RunPlan

__all__ = ["DeviceView", "FleetRegistry", "Published", "registry_for"]

T = TypeVar("T")


@dataclass(frozen=True)
class Published:
    """One artifact in the registry."""

    artifact: str
    """The artifact manifest's digest (what a desired state names)."""
    model_digest: str
    size: int
    bytes_sent: int
    """Bytes this publish uploaded (0 when the registry had the blobs)."""


@dataclass(frozen=True)
class DeviceView:
    """A device as the registry shows it: what it should run, what it says it runs."""

    device: str
    desired: fs.Desired | None
    desired_digest: str
    status: fs.Status | None
    status_error: str = ""
    """Why the status could not be read or was refused ("" when fine or absent)."""

    @property
    def converged(self) -> bool:
        """The device reports the desired state it should run, all of it active."""
        return (
            self.status is not None
            and self.desired is not None
            and self.status.desired == self.desired_digest
            and self.status.converged
        )

    @property
    def state(self) -> str:
        """converged, pending (not applied yet), failed (applied with refusals), unknown."""
        if self.status_error or self.status is None:
            return "unknown"
        if self.converged:
            return "converged"
        if self.desired is not None and self.status.desired == self.desired_digest:
            return "failed"
        return "pending"

    def capabilities(self) -> Capabilities | None:
        """The board's capabilities from its status, if they read as capabilities."""
        if self.status is None or not self.status.capabilities:
            return None
        try:
            return from_dict(dict(self.status.capabilities))
        except (TypeError, ValueError, KeyError, AttributeError):
            return None


def registry_for(
    url: str, credentials: Path | None = None, ca_file: Path | None = None
) -> FleetRegistry:
    """A `FleetRegistry` from the command line's values.

    Raises:
        RegistryFailed: a malformed URL or credentials file.
    """
    try:
        ref = RegistryRef.parse(url)
        login = Credentials.from_file(credentials, ref.registry) if credentials else None
    except ValueError as exc:
        raise RegistryFailed(str(exc)) from None
    if credentials is not None and login is None:
        raise RegistryFailed(f"{credentials} holds no login for {ref.registry}")
    return FleetRegistry(Registry(ref, login, ca_file=ca_file, user_agent="edgeopt"))


class FleetRegistry:
    """One fleet repository (see the module docstring)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def __str__(self) -> str:
        return str(self.registry.ref)

    def _call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return _retried(fn, *args)
        except RegistryError as exc:
            raise RegistryFailed(f"{what}: {exc}", status=exc.status) from None

    def publish_artifact(
        self,
        model: Path,
        plan: RunPlan,
        name: str,
        version: str,
        inputs: bytes | None = None,
    ) -> Published:
        """Upload a model (unless there), its plan and smoke input; returns the artifact."""
        sent = self.registry.bytes_out
        digest, size, _ = self._call(f"uploading {model.name}", self.registry.push_blob, model)
        plan_bytes = json.dumps(plan.to_dict(), sort_keys=True).encode()
        plan_digest, plan_size, _ = self._call("uploading the plan", self.registry.push_blob,
                                               plan_bytes)  # fmt: skip
        smoke = None
        if inputs is not None:
            d, s, _ = self._call("uploading the smoke input", self.registry.push_blob, inputs)
            smoke = fs.Descriptor(fs.INPUTS_MEDIA_TYPE, d, s)
        manifest = fs.artifact_manifest(
            fs.Descriptor(fs.PLAN_MEDIA_TYPE, plan_digest, plan_size),
            fs.Descriptor(fs.MODEL_MEDIA_TYPE, digest, size), smoke,
            name, version, plan.precision,
        )  # fmt: skip
        body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        artifact = sha256_digest(body)  # what put_manifest sends, so the tag can name it
        self._call("writing the artifact manifest", self.registry.put_manifest,
                   fs.artifact_tag(artifact), manifest)  # fmt: skip
        return Published(artifact, digest, size, self.registry.bytes_out - sent)

    def desired(self, device: str) -> tuple[fs.Desired | None, str]:
        """A device's desired state and its manifest digest; (None, "") when it has none."""
        tag = fs.desired_tag(device)
        try:
            manifest, digest = self.registry.get_manifest(tag, fs.MAX_MANIFEST_FOR_DOCUMENTS)
        except RegistryError as exc:
            if exc.status == 404:
                return None, ""
            raise RegistryFailed(f"reading {tag}: {exc}", status=exc.status) from None
        try:
            config, _, _ = fs.parse_document_manifest(manifest, fs.DESIRED_TYPE, fs.DESIRED_TYPE)
            raw = self._call(f"reading {tag}", self.registry.get_blob, config.digest,
                             fs.MAX_DOCUMENT_BYTES)  # fmt: skip
            return fs.Desired.from_bytes(raw), digest
        except ValueError as exc:
            raise RegistryFailed(f"{tag} is not a desired state: {exc}") from None

    def set_desired(
        self,
        device: str,
        models: Iterable[fs.DesiredModel],
        deployment: int = 0,
        *,
        keep_others: bool = True,
        keep_previous: bool = False,
        remove: Iterable[str] = (),
    ) -> tuple[fs.Desired, str]:
        """Write a device's desired state: `models` replace those of the same name.

        With `keep_others` the models the current state names and `models` does not stay.
        A model whose artifact changes remembers the one it replaces (`previous`, for a
        rollback) unless `keep_previous` (the caller set it). The generation counts up from
        the current one. `remove` names models to take out. Returns the state and its digest.
        """
        current, _ = self.desired(device)
        before = {m.name: m for m in (current.models if current else ())}
        chosen = {}
        for given in models:
            old, m = before.get(given.name), given
            if not keep_previous and old is not None and old.artifact != m.artifact:
                m = replace(m, previous=old.artifact, previous_version=old.version)
            elif not keep_previous and old is not None:
                m = replace(m, previous=old.previous, previous_version=old.previous_version)
            chosen[m.name] = m
        dropped = set(remove)
        kept = [m for m in (current.models if current and keep_others else ())
                if m.name not in chosen and m.name not in dropped]  # fmt: skip
        desired = fs.Desired(
            device=device, generation=(current.generation if current else 0) + 1,
            models=tuple(sorted([*kept, *chosen.values()], key=lambda m: m.name)),
            published=round(time.time(), 3), deployment=deployment,
        )  # fmt: skip
        body = desired.to_bytes()
        digest, size, _ = self._call("uploading the desired state", self.registry.push_blob,
                                     body)  # fmt: skip
        manifest = fs.document_manifest(fs.DESIRED_TYPE,
                                        fs.Descriptor(fs.DESIRED_TYPE, digest, size))  # fmt: skip
        written = self._call(f"writing {fs.desired_tag(device)}", self.registry.put_manifest,
                             fs.desired_tag(device), manifest)  # fmt: skip
        return desired, written

    def status(self, device: str) -> tuple[fs.Status | None, str]:
        """A device's last status, checked; (None, why) when absent or malformed."""
        tag = fs.status_tag(device)
        try:
            manifest, _ = _retried(self.registry.get_manifest, tag, fs.MAX_MANIFEST_FOR_DOCUMENTS)
            config, _, _ = fs.parse_document_manifest(manifest, fs.STATUS_TYPE, fs.STATUS_TYPE)
            status = fs.Status.from_bytes(
                _retried(self.registry.get_blob, config.digest, fs.MAX_DOCUMENT_BYTES)
            )
        except RegistryError as exc:
            if exc.status == 404:
                return None, ""
            raise RegistryFailed(f"reading {tag}: {exc}", status=exc.status) from None
        except ValueError as exc:
            return None, f"its status is malformed: {exc}"
        if status.device != device:
            return None, f"its status names another device ({status.device!r})"
        return status, ""

    def devices(self) -> list[str]:
        """Every device with a desired state or a status in the repository."""
        tags = self._call("listing tags", self.registry.tags)
        names = {t.split("-", 1)[1] for t in tags if t.startswith(("desired-", "status-"))}
        return sorted(n for n in names if fs.DEVICE_PATTERN.fullmatch(n))

    def view(self, device: str) -> DeviceView:
        """What a device should run and what it says it runs."""
        desired, digest = self.desired(device)
        status, why = self.status(device)
        return DeviceView(device, desired, digest, status, why)

    def close(self) -> None:
        """Close the connection to the registry."""
        self.registry.close()


TRIES = 3
"""Tries of one registry request that failed in a way worth trying again (no answer, 5xx,
429): docker-registry's filesystem storage answered 500 to a GET of a tag a board was
rewriting at that moment (seen in CI)."""


def _retried(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)`, tried again after a short, jittered wait while its error is retryable.

    Every request edgeopt makes to a registry may be repeated: reads, uploads of blobs named
    by their digest, and tag writes that put the same manifest again.
    """
    for attempt in range(1, TRIES + 1):
        try:
            return fn(*args)
        except RegistryError as exc:
            if not exc.retryable or attempt == TRIES:
                raise
            time.sleep(min(2.0, max(exc.retry_after, backoff(attempt, 0.2, 2.0, random.random))))
    raise AssertionError("unreachable")
