"""Pull mode: the agent polls its desired state in an OCI registry, pulls, activates, reports.

For boards the host cannot dial (NAT, carrier-grade NAT, outbound-only firewalls): the host
publishes artifacts and a desired state per device (edgeopt.proto.fleetstate has the layout);
this loop, in a thread of `edgeopt-agent serve --pull oci://HOST:PORT/REPO --device-name NAME`:

1. HEADs `desired-NAME` every `interval` seconds (± `jitter`): when its digest is the one
   applied, nothing else is asked (one request per poll while nothing changes);
2. otherwise fetches that manifest *by the digest the HEAD gave* (a tag rewritten meanwhile
   cannot swap what is applied), its config (the `Desired`), and for each model whose active
   artifact differs, the artifact manifest by the digest the desired state pins, its plan and
   its blobs;
3. downloads a blob into the same content-addressed store a push writes (uploads/SHA.part, then
   blobs/SHA once its sha256 matches), resuming a cut download with an HTTP Range request from
   the bytes already held;
4. activates it through `Models.activate`, exactly as a push does: smoke inference first (the
   artifact's own smoke input when it has one), and the previous version keeps serving when
   anything fails;
5. pushes a `Status` under `status-NAME`: active versions, what was refused and why, the last
   error, timings and counters, and the board's capabilities (for the host's planning). It is
   pushed when it changes, and at least every `heartbeat` seconds.

Failures: a registry down or answering 5xx/429 backs off exponentially with full jitter (capped;
a Retry-After is honoured) and serving goes on; refused credentials wait the longest back-off
and do not retry in a storm; a desired state naming an artifact that is not there, a blob whose
bytes do not match its digest, a plan the board cannot run, or a model that fails its smoke test
is reported in the status and not retried until the desired state changes.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from edgeopt.agent.models import Models
from edgeopt.agent.plancheck import PlanRefused, check_plan
from edgeopt.agent.refusal import Refusal
from edgeopt.proto import fleetstate as fs
from edgeopt.proto.oci import Credentials, Registry, RegistryError, RegistryRef, backoff
from edgeopt.proto.plan import PRECISIONS, RunPlan

__all__ = ["STATUS_FILE", "PullConfig", "Puller"]

STATUS_FILE = "pull-status.json"
"""The status, as last reported, in the store's folder."""

log = logging.getLogger("edgeopt.agent.pull")


@dataclass(frozen=True)
class PullConfig:
    """Where and how often to pull."""

    registry: RegistryRef
    device: str
    interval: float = 30.0
    """Seconds between two polls of the desired state (before jitter)."""
    jitter: float = 0.2
    """Each wait is interval * uniform(1 - jitter, 1 + jitter): a fleet does not poll in step."""
    credentials: Credentials | None = None
    ca_file: Path | None = None
    max_backoff: float = 900.0
    """The longest wait after failures (and the wait after refused credentials)."""
    heartbeat: float = 600.0
    """Push the status at least this often even when nothing changed."""
    timeout: float = 30.0
    """Seconds a registry request may stall."""


@dataclass
class _Outcome:
    """What applying one desired state did, per model name."""

    models: dict[str, fs.ModelStatus] = field(default_factory=dict)
    transient: str = ""
    """A failure worth another try at the next poll (the registry, the network)."""


class Puller:
    """The pull loop (see the module docstring); `run` until `stop` is set."""

    def __init__(
        self,
        models: Models,
        config: PullConfig,
        capabilities: Callable[[], dict[str, Any]],
        agent_version: str = "",
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.models = models
        self.config = config
        self._capabilities = capabilities
        self._agent_version = agent_version
        self._rand = rand
        self.registry = Registry(
            config.registry, config.credentials, ca_file=config.ca_file,
            timeout=config.timeout, user_agent=f"edgeopt-agent/{agent_version}",
        )  # fmt: skip
        self.applied = ""
        """The desired-state digest whose models were all handled (activated or refused)."""
        self.generation = 0
        self.outcome = _Outcome()
        self.fault = ""
        """The last poll's failure (registry down, credentials refused); "" after one works."""
        self.problem = ""
        """What is wrong with the desired state itself (none yet, malformed, another device's)."""
        self.failures = 0
        self.timings: dict[str, float] = {}
        self._last_status: tuple[bytes, float] = (b"", 0.0)
        self.polls = 0

    # --- the loop -----------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Poll until `stop` is set; never raises (a failure waits and tries again)."""
        while not stop.is_set():
            wait = self.step()
            stop.wait(wait)
        self.registry.close()

    def step(self) -> float:
        """One poll (and what it leads to); returns the seconds to wait before the next."""
        cfg = self.config
        try:
            self.fault = ""
            self.poll()
            self.failures = 0
            wait = cfg.interval * (1 - cfg.jitter + 2 * cfg.jitter * self._rand())
        except RegistryError as exc:
            self.failures += 1
            self.fault = str(exc)
            log.warning("pull: %s", exc)
            if exc.auth:
                wait = cfg.max_backoff  # the same credentials will be refused again
            else:
                waited = backoff(self.failures, cfg.interval, cfg.max_backoff, self._rand)
                asked = min(exc.retry_after, cfg.max_backoff)  # a 429's or 503's Retry-After
                wait = max(cfg.interval * 0.5, waited, asked)
            self.timings["next_poll_s"] = round(wait, 3)
            self.keep_locally()  # the registry is failing: pushing the status would too
            return wait
        except Exception as exc:  # one bad poll must never end the loop (or the agent)
            self.failures += 1
            self.fault = f"{type(exc).__name__}: {exc}"
            log.exception("pull failed")
            wait = backoff(self.failures, cfg.interval, cfg.max_backoff, self._rand)
            self.timings["next_poll_s"] = round(wait, 3)
            self._report_quietly()
            return wait
        self.timings["next_poll_s"] = round(wait, 3)
        return wait

    def _report_quietly(self) -> None:
        """Push the status with the error, if the registry takes it; never raises."""
        try:
            self.report()
        except Exception as exc:
            log.info("pull: status not pushed: %s", exc)

    def poll(self) -> None:
        """HEAD the desired state; apply it when it changed; report when something changed."""
        self.polls += 1
        start = time.monotonic()
        digest = self.registry.manifest_digest(fs.desired_tag(self.config.device))
        self.timings["poll_s"] = round(time.monotonic() - start, 4)
        if digest is None:
            self.outcome = _Outcome()
            self.applied, self.generation = "", 0
            self.problem = f"no desired state under {fs.desired_tag(self.config.device)} yet"
        elif digest != self.applied:
            self.problem = ""
            self._apply(digest)
        self.report()

    # --- applying a desired state -------------------------------------------------------

    def _apply(self, digest: str) -> None:
        manifest, _ = self.registry.get_manifest(digest, fs.MAX_MANIFEST_FOR_DOCUMENTS)
        try:
            config, _, _ = fs.parse_document_manifest(manifest, fs.DESIRED_TYPE, fs.DESIRED_TYPE)
            desired = fs.Desired.from_bytes(
                self.registry.get_blob(config.digest, fs.MAX_DOCUMENT_BYTES)
            )
            if desired.device != self.config.device:
                raise ValueError(f"it is for device {desired.device!r}, not this one")
        except ValueError as exc:
            self.applied, self.problem = digest, f"desired state {digest[:19]}... refused: {exc}"
            return
        outcome = _Outcome()
        start = time.monotonic()
        for wanted in desired.models:
            outcome.models[wanted.name] = self._one(wanted, outcome)
        self.timings["apply_s"] = round(time.monotonic() - start, 3)
        self.outcome, self.generation = outcome, desired.generation
        if outcome.transient:  # `applied` stays as it was: the next poll tries again
            raise RegistryError(0, outcome.transient)
        self.applied = digest

    def _active(self, name: str) -> tuple[str, str]:
        entry = self.models.store.entries().get(name)
        if entry is None or not entry.active:
            return "", ""
        version = entry.find(entry.active)
        return entry.active, version.sha256 if version else ""

    def _one(self, wanted: fs.DesiredModel, outcome: _Outcome) -> fs.ModelStatus:
        """Bring one model name to its desired artifact; the status it ends in."""
        version, sha256 = self._active(wanted.name)
        previous = self.outcome.models.get(wanted.name)
        if (
            previous is not None
            and previous.artifact == wanted.artifact
            and (previous.state == "active" and previous.version == version)
        ):
            return previous  # already there, from this agent's own pull
        held = fs.ModelStatus(wanted.name, version, sha256, "", "active", "", wanted.version)
        try:
            return self._bring(wanted, held)
        except RegistryError as exc:
            if exc.status == 404:
                return replace(held, state="missing",
                               error=f"artifact {wanted.artifact[:19]}... is not in the "
                                     f"registry: {exc}")  # fmt: skip
            if exc.retryable and exc.status != 502:
                outcome.transient = str(exc)
                return replace(held, state="pending", error=str(exc))
            return replace(held, state="refused", error=str(exc))
        except (ValueError, PlanRefused, Refusal) as exc:
            kept = f"; {version} stays active" if version else ""
            return replace(held, state="refused", error=f"{exc}{kept}")

    def _bring(self, wanted: fs.DesiredModel, held: fs.ModelStatus) -> fs.ModelStatus:
        """Fetch, store and activate the desired artifact (unless it is the active one)."""
        artifact, plan = self._artifact(wanted)
        sha = artifact.model.digest.split(":", 1)[1]
        if held.version == wanted.version and held.sha256 == sha:
            return replace(held, artifact=wanted.artifact, wanted="")
        self._runnable(plan)
        start = time.monotonic()
        got = self._download(artifact.model)
        got += self._download(artifact.inputs)
        self.timings["download_s"] = round(time.monotonic() - start, 3)
        self.timings["downloaded_bytes"] = self.timings.get("downloaded_bytes", 0) + got
        self.models.store.add_version(wanted.name, wanted.version, sha, artifact.model.size, plan)
        start = time.monotonic()
        smoke = artifact.inputs.digest.split(":", 1)[1] if artifact.inputs else ""
        done = self.models.activate(wanted.name, wanted.version, plan, inputs_sha256=smoke)
        self.timings["activate_s"] = round(time.monotonic() - start, 3)
        log.info("pull: %s %s active (was %s)", wanted.name, done.version, done.previous)
        return fs.ModelStatus(wanted.name, done.version, done.sha256, wanted.artifact)

    def _artifact(self, wanted: fs.DesiredModel) -> tuple[fs.Artifact, RunPlan]:
        manifest, _ = self.registry.get_manifest(wanted.artifact, fs.MAX_MANIFEST_FOR_DOCUMENTS)
        artifact = fs.parse_artifact(manifest, self.models.store.limits.max_artifact_bytes)
        raw = self.registry.get_blob(artifact.plan.digest, fs.MAX_DOCUMENT_BYTES)
        try:
            plan = RunPlan.from_dict(json.loads(raw.decode("utf-8")))
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"the artifact's plan is not a plan: {exc}") from None
        return artifact, check_plan(plan)

    def _runnable(self, plan: RunPlan) -> None:
        """Refuse a plan this board cannot run, before any byte of the model is fetched."""
        if plan.precision and plan.precision not in PRECISIONS:
            raise ValueError(f"precision {plan.precision[:32]!r} is not one this agent runs")
        provider = plan.execution_provider or "CPUExecutionProvider"
        available = self._providers()
        if available and provider not in available:
            raise ValueError(
                f"the plan wants {provider} ({plan.precision or 'any precision'}), which this "
                f"board's ONNX Runtime does not have (it has {', '.join(available)})"
            )

    def _providers(self) -> list[str]:
        runtime = self._capabilities().get("onnxruntime") or {}
        return list(runtime.get("execution_providers") or [])

    def _download(self, blob: fs.Descriptor | None) -> int:
        """Fetch a blob into the store (resuming what a cut download left); bytes fetched."""
        if blob is None:
            return 0
        sha = blob.digest.split(":", 1)[1]
        store = self.models.store
        with store.digest_lock(sha):
            complete, held = store.upload_offset(sha)
            if complete:
                return 0
            if held >= blob.size:  # a part as long as the blob that did not verify: start over
                held = 0
            upload = store.begin_upload(sha, blob.size, held)
            try:
                got = self.registry.fetch_blob(blob.digest, held, blob.size, upload.write)
            except BaseException:
                upload.abort(keep=True)
                raise
            try:
                upload.finish()
            except Refusal as exc:  # a short body keeps its bytes; a mismatch dropped them
                raise ValueError(f"{blob.digest[:19]}...: {exc}") from None
            return got

    # --- reporting ----------------------------------------------------------------------

    def status(self) -> fs.Status:
        """What this agent reports now."""
        desired = {m.name for m in self.outcome.models.values()}
        models = list(self.outcome.models.values())
        for name, entry in sorted(self.models.store.entries().items()):
            if name not in desired and entry.active:
                version = entry.find(entry.active)
                models.append(fs.ModelStatus(name, entry.active, version.sha256 if version else ""))
        error = self.fault or self.problem
        converged = (
            bool(self.applied)
            and not error
            and all(m.state == "active" for m in self.outcome.models.values())
        )
        counters = {"polls": float(self.polls), "requests": float(self.registry.requests),
                    "bytes_in": float(self.registry.bytes_in)}  # fmt: skip
        return fs.Status(
            device=self.config.device, updated=round(time.time(), 3),
            agent_version=self._agent_version, desired=self.applied or "",
            generation=self.generation, converged=converged, models=tuple(models),
            error=error[:2000], capabilities=self._capabilities(),
            timings={**self.timings, **counters},
        )  # fmt: skip

    @property
    def status_file(self) -> Path:
        """Where the status is also kept on the board.

        For its operator, and for when the registry cannot take it (credentials refused, the
        registry down).
        """
        return self.models.store.root / STATUS_FILE

    def keep_locally(self, status: fs.Status | None = None) -> None:
        """Write the status to `status_file` (atomically); never raises."""
        body = (status or self.status()).to_bytes()
        tmp = self.status_file.with_name(f".{STATUS_FILE}.tmp")
        try:
            tmp.write_bytes(body)
            os.replace(tmp, self.status_file)
        except OSError as exc:
            log.warning("pull: cannot write %s: %s", self.status_file, exc)

    def report(self, force: bool = False) -> bool:
        """Push the status when it changed (or the heartbeat is due); whether it was pushed."""
        status = self.status()
        self.keep_locally(status)
        # What changes every time (the clock, the counters, timings) does not make it new.
        key = replace(status, updated=0.0, timings={}).to_bytes()
        last, when = self._last_status
        if not force and key == last and time.monotonic() - when < self.config.heartbeat:
            return False
        body = status.to_bytes()
        digest, size, _ = self.registry.push_blob(body)
        config = fs.Descriptor(fs.STATUS_TYPE, digest, size)
        manifest = fs.document_manifest(fs.STATUS_TYPE, config)
        self.registry.put_manifest(fs.status_tag(self.config.device), manifest)
        self._last_status = (key, time.monotonic())
        return True
