"""`edgeopt bench`: a model and its variants measured on the boards themselves, side by side.

One command run measures a matrix per selected device: variants (precisions) x intra-op
threads x execution providers, or, by default, the one variant each board's plan calls for.
Each variant is compressed once per distinct request (the compression cache serves repeats),
pushed as a bare artifact (only the bytes the board lacks; nothing is activated) and measured
with the agent's Benchmark RPC: session load, first inference, warm-up, then timed runs until
the median's 95 % confidence interval is within the target or the time budget is spent.

Devices run concurrently (at most `parallel` at once); one device runs its cases one at a time,
with `cooldown_s` between them, because two benchmarks on one board corrupt each other. A dead
or slow device never blocks the others: its remaining cases are marked, its finished ones kept.
An overall `deadline_s` stops whatever still runs and marks it. Every case, measured or not,
goes into the state database under one run id, with the conditions that may skew it flagged:
other processes using the CPU during the run ("loaded"), a hot SoC ("hot"), a Raspberry Pi whose
firmware throttled or capped its clock or saw under-voltage ("THROTTLED") and a board whose CPU
is emulated ("EMULATED": qemu-user, whose timings say nothing about the real hardware).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgeopt.boardfacts import thermal
from edgeopt.host.compress import CompressionReport, CompressRequest, compress
from edgeopt.host.config.inventory import Device
from edgeopt.host.errors import AgentTimeout, AgentUnavailable, EdgeoptError, InvalidRequest
from edgeopt.host.planning.plan import DevicePlan
from edgeopt.host.store.state import State
from edgeopt.host.transport.client import AgentClient, ClientConfig, file_digest
from edgeopt.host.transport.fanout import each, on_agents, open_client
from edgeopt.host.transport.wire import BenchmarkCall, BenchmarkProgress, as_record
from edgeopt.host.workflows.artifacts import Artifacts
from edgeopt.host.workflows.plans import DeployOptions, plan_for
from edgeopt.host.workflows.samples import explain_made_up, first_sample
from edgeopt.proto import paired
from edgeopt.proto.capabilities import Capabilities, local_providers
from edgeopt.proto.plan import PRECISIONS

__all__ = [
    "HOT_CELSIUS",
    "LOADED",
    "VARIANTS",
    "BenchOptions",
    "BenchRun",
    "CaseResult",
    "bench",
    "flags_of",
    "new_run_id",
    "report_rows",
    "speedups",
]

VARIANTS = PRECISIONS
"""Variant names `--variants` accepts (the precisions of `edgeopt compress`)."""
LOADED = 0.10
"""Share of the machine's CPU time used by other processes during a run that flags it."""
HOT_CELSIUS = 80.0
"""SoC temperature after a run that flags it: where boards such as the Pi 4 start throttling."""


@dataclass(frozen=True)
class BenchOptions:
    """What to measure and how."""

    deploy: DeployOptions
    """The model, its compression and the run plan (threads, provider), as for deploy."""
    inputs: Path | None = None
    """`.npz` whose first sample is fed (default: --validate, else --calibration, else made up)."""
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """Dims for made-up inputs."""
    max_seconds: float = 10.0
    """Time budget of the timed runs per case."""
    target_ci: float = 0.02
    """Stop when the median's 95 % CI is within this share of it."""
    warmup: int = 5
    """Discarded runs."""
    variants: tuple[str, ...] = ()
    """Precisions to measure on every device; empty: the one each board's plan calls for."""
    threads: tuple[int, ...] = ()
    """Intra-op thread counts to measure; empty: the plan's (or `deploy.threads`)."""
    providers: tuple[str, ...] = ()
    """Execution providers to measure; empty: the plan's (or `deploy.provider`)."""
    cooldown_s: float = 0.0
    """Pause between two cases on one device (lets a passively cooled board cool down)."""
    deadline_s: float | None = None
    """Wall-time limit of the whole run; what is unfinished then is marked "not run"."""
    selection: str = ""
    """How the devices were chosen, for the run's record."""
    interleave: bool = False
    """Measure each case against the first case of its threads and provider (the first of
    `variants`) in one paired Benchmark (alternating blocks, edgeopt.proto.paired): its
    speed-up then comes from the pairs, with an interval."""


@dataclass
class CaseResult:
    """One device x variant x threads x provider: its measurement, or why there is none."""

    device: str
    variant: str
    threads: int | None = None
    provider: str | None = None
    plan: DevicePlan | None = None
    """The board's plan for the case, once made."""
    request: CompressRequest | None = None
    """The compression that makes the case's artifact (shared by the cases that need it)."""
    status: str = "not run"
    """"ok", "unsupported" (the board cannot run it), "failed" or "not run"."""
    error: str = ""
    result: dict[str, Any] | None = None
    """The agent's BenchmarkResult as a dict."""
    size_bytes: int = 0
    accuracy: dict[str, float] | None = None
    """The variant against fp32 on the host's validation data (--validate)."""
    flags: list[str] = field(default_factory=list)
    case_id: int | None = None
    """Its row in the state database."""
    seconds: float = 0.0
    """Wall time of the case on the host: compression wait, push and benchmark."""


@dataclass
class BenchRun:
    """A whole command run."""

    id: str
    cases: list[CaseResult]
    status: str
    """"ok" (every case measured or unsupported), "partial" or "failed" (nothing measured)."""


def new_run_id() -> str:
    """Sortable and unique enough for one team's history: r<UTC time>-<4 hex>."""
    return time.strftime("r%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(2)


def flags_of(result: dict[str, Any], emulation: str = "") -> list[str]:
    """What in a run's conditions (or an emulated board's CPU) makes its figure doubtful."""
    conditions = result.get("conditions", {})
    flags = ["EMULATED"] if emulation else []
    others = float(conditions.get("other_cpu_load", 0.0))
    if others >= LOADED:
        flags.append(f"loaded {others:.0%}")
    hottest = max((t["celsius"] for t in conditions.get("temperatures_after", [])), default=0.0)
    if hottest >= HOT_CELSIUS:
        flags.append(f"hot {hottest:.0f}C")
    events = thermal.throttle_events(
        conditions.get("throttled_before"), conditions.get("throttled_after")
    )
    if events:  # the Pi's firmware said so: the clock the figure was measured at was not its own
        flags.append(f"THROTTLED: {', '.join(events)}")
    return flags


def _accuracy(report: CompressionReport) -> dict[str, float] | None:
    v = report.validation
    if v is None:
        return None
    out = {"cosine": v.cosine}
    if v.accuracy_drop is not None:
        out["accuracy_drop"] = v.accuracy_drop
    return out


async def _measure(
    client: AgentClient,
    device: str,
    artifact: CompressionReport,
    plan: DevicePlan,
    options: BenchOptions,
    *,
    progress: Callable[[str, str], None] | None,
) -> dict[str, Any]:
    pushed = await client.push(artifact.artifact, "")
    request_ = options.deploy.request
    feed = first_sample(options.inputs or request_.validation or request_.calibration,
                        artifact.artifact)  # fmt: skip
    call = BenchmarkCall(
        sha256=pushed.sha256, plan=plan.run, inputs=feed or {},
        input_shapes=options.input_shapes, warmup=options.warmup, target_ci=options.target_ci,
        max_seconds=options.max_seconds,
    )  # fmt: skip

    def said(p: BenchmarkProgress) -> None:
        if progress is not None:
            progress(device, f"{plan.precision}, {plan.threads} threads: "
                     f"{p.repeats} runs, p50 {p.p50_ms:.3g} ms ±{p.ci_relative:.1%}")  # fmt: skip

    try:
        reply = await client.benchmark(call, said)
    except InvalidRequest as exc:
        explained = feed is None and explain_made_up(exc, artifact.artifact, options.input_shapes)
        if not explained:
            raise
        raise explained from exc
    return as_record(reply)


async def _measure_paired(
    client: AgentClient,
    base: tuple[CompressionReport, DevicePlan],
    made: CompressionReport,
    plan: DevicePlan,
    options: BenchOptions,
) -> dict[str, Any]:
    """The case (B) against its baseline (A) in one paired Benchmark; B's side as its result.

    B's result holds its latency over all its timed runs, its block medians and `paired`: the
    ratio B / A the host recomputed from the blocks, with its interval and the smallest change
    the run could have shown.
    """
    a = (await client.push(base[0].artifact, "")).sha256
    b = (await client.push(made.artifact, "")).sha256
    request_ = options.deploy.request
    feed = first_sample(options.inputs or request_.validation or request_.calibration,
                        made.artifact)  # fmt: skip
    reply = await client.benchmark(BenchmarkCall(
        sha256=a, plan=base[1].run, inputs=feed or {}, input_shapes=options.input_shapes,
        warmup=options.warmup, target_ci=options.target_ci, max_seconds=options.max_seconds,
        versus=(b, plan.run),
    ))  # fmt: skip
    whole = as_record(reply)
    v = whole.pop("versus")
    try:
        found = paired.estimate(v["a_ms"], v["b_ms"])
    except ValueError as exc:  # a board's numbers are checked, not believed
        raise InvalidRequest(f"the board's blocks are unusable: {exc}") from exc
    latency = v["latency"]
    return {**whole, "sha256": v["sha256"], "plan": v["plan"], "latency": latency,
            "block_ms": v["b_ms"], "throughput": 1000.0 / latency["p50_ms"] if
            latency["p50_ms"] else 0.0,
            "paired": {"against": a, **found.to_dict(), "block_runs": v["block_runs"]}}  # fmt: skip


async def _made(case: CaseResult, artifacts: Artifacts) -> tuple[CompressionReport, DevicePlan]:
    """A measured case's artifact (from the cache) and plan."""
    assert case.plan is not None and case.request is not None  # measured: planned and made
    return await artifacts.get(case.request), case.plan


def _baseline(case: CaseResult, cases: Sequence[CaseResult]) -> CaseResult | None:
    """The case an interleaved case is measured against (None: measured alone).

    The first case of its threads and provider, when that is another case and was measured.
    """
    for c in cases:
        if (c.threads, c.provider) == (case.threads, case.provider):
            return None if c is case or c.status != "ok" else c
    return None


def _cases(
    options: BenchOptions, caps: Capabilities, device: Device, state: State
) -> list[CaseResult]:
    """The device's matrix, each case planned (or marked unsupported)."""
    variants: tuple[str | None, ...] = options.variants or (None,)
    threads: tuple[int | None, ...] = options.threads or (options.deploy.threads,)
    providers: tuple[str | None, ...] = options.providers or (options.deploy.provider,)
    offered = local_providers(caps.onnxruntime.execution_providers)
    out = []
    for variant in variants:
        for t in threads:
            for provider in providers:
                case = CaseResult(device.name, variant or "planned", t, provider)
                out.append(case)
                if provider and offered and provider not in offered:
                    case.status = "unsupported"
                    case.error = (f"{device.name} has no {provider}; its ONNX Runtime offers "
                                  f"{', '.join(offered)}")  # fmt: skip
                    continue
                deploy = replace(options.deploy, threads=t, provider=provider)
                if variant is not None:
                    request = replace(deploy.request, precision=variant)  # type: ignore[arg-type]
                    deploy = replace(deploy, request=request, traits=None)
                try:
                    request, plan = plan_for(deploy, caps, device.name, tunings=state)
                except EdgeoptError as exc:  # PlanError included
                    case.status, case.error = "unsupported", str(exc)
                    continue
                case.plan, case.request = plan, request
                case.variant = plan.precision if variant is None else variant
                case.threads = plan.threads
                case.provider = plan.provider
    return out


async def _device(
    device: Device,
    caps: Capabilities,
    cases: list[CaseResult],
    options: BenchOptions,
    artifacts: Artifacts,
    *,
    config: ClientConfig,
    record: Callable[[CaseResult, Capabilities], None],
    progress: Callable[[str, str], None] | None,
) -> None:
    """One device's cases, one at a time; a lost device marks the rest and keeps what it has."""
    todo = [c for c in cases if c.status == "not run"]
    lost = ""
    async with open_client(device, config) as client:
        for index, case in enumerate(todo):
            if lost:
                case.error = f"not run: {lost}"
                continue
            if index and options.cooldown_s > 0:
                if progress is not None:
                    progress(device.name, f"cooling down {options.cooldown_s:g} s")
                await asyncio.sleep(options.cooldown_s)
            start = time.monotonic()
            assert case.plan is not None and case.request is not None  # planned: not run yet
            request = case.request
            try:
                made = await artifacts.get(request)
            except EdgeoptError as exc:
                case.status, case.error = "unsupported", str(exc)
                record(case, caps)
                continue
            case.size_bytes = made.artifact.stat().st_size
            case.accuracy = _accuracy(made)
            if progress is not None:
                progress(device.name, f"{case.variant}, {case.threads} threads: measuring")
            base = _baseline(case, cases) if options.interleave else None
            try:
                case.result = await (
                    _measure_paired(client, await _made(base, artifacts), made, case.plan,
                                    options) if base is not None
                    else _measure(client, device.name, made, case.plan, options,
                                  progress=progress)
                )  # fmt: skip
            except (AgentUnavailable, AgentTimeout) as exc:
                case.status, case.error = "failed", str(exc)
                lost = "the device stopped answering during the run"
            except EdgeoptError as exc:
                case.status, case.error = "failed", str(exc)
            else:
                case.status = "ok"
                case.flags = flags_of(case.result, caps.emulation)
            case.seconds = time.monotonic() - start
            record(case, caps)
    if lost:
        for case in cases:
            if case.status == "ok":
                case.flags.append("partial")


def bench(
    devices: Sequence[Device],
    options: BenchOptions,
    state: State,
    *,
    config: ClientConfig | None = None,
    progress: Callable[[str, str], None] | None = None,
    compress_fn: Callable[[CompressRequest], CompressionReport] = compress,
) -> BenchRun:
    """Measure the matrix on every device; see the module docstring."""
    return asyncio.run(
        _bench(devices, options, state, config=config or ClientConfig(), progress=progress,
               compress_fn=compress_fn)
    )  # fmt: skip


async def _bench(
    devices: Sequence[Device],
    options: BenchOptions,
    state: State,
    *,
    config: ClientConfig,
    progress: Callable[[str, str], None] | None,
    compress_fn: Callable[[CompressRequest], CompressionReport],
) -> BenchRun:
    source = Path(options.deploy.request.model)
    model_digest = file_digest(source) if source.is_file() else str(source)
    run_id = new_run_id()
    state.start_bench_run(run_id, str(options.deploy.request.model), model_digest,
                          options.selection, _options_record(options))  # fmt: skip
    per_device: dict[str, list[CaseResult]] = {}
    artifacts = Artifacts(compress_fn)

    def record(case: CaseResult, caps: Capabilities | None) -> None:
        result = case.result or {}
        case.case_id = state.record_benchmark({
            "run": run_id, "device": case.device,
            "fingerprint": caps.fingerprint if caps else "",
            "model": str(options.deploy.request.model), "model_digest": model_digest,
            "artifact_digest": result.get("sha256", ""), "precision": case.variant,
            "threads": case.threads or 0, "provider": case.provider or "",
            "plan": case.plan.record() if case.plan else {}, "result": result,
            "status": case.status, "error": case.error,
            "onnxruntime_version": result.get("conditions", {}).get("onnxruntime_version", "")
            or (caps.onnxruntime.version if caps else ""),
            "size_bytes": case.size_bytes, "accuracy": case.accuracy or {}, "flags": case.flags,
        })  # fmt: skip

    async def one(device: Device) -> None:
        (asked,) = await on_agents([device], AgentClient.capabilities, config)
        caps = asked.value
        if caps is None:
            case = CaseResult(device.name, ",".join(options.variants) or "planned",
                              status="failed", error=asked.reason)  # fmt: skip
            per_device[device.name] = [case]
            record(case, None)
            return
        cases = _cases(options, caps, device, state)
        per_device[device.name] = cases
        for case in cases:
            if case.status == "unsupported":
                record(case, caps)
        await _device(device, caps, cases, options, artifacts, config=config,
                      record=record, progress=progress)  # fmt: skip

    outcomes = await each(devices, one, parallel=max(1, options.deploy.parallel),
                          deadline=options.deadline_s)  # fmt: skip
    for outcome in outcomes:
        if outcome.error is not None:  # `one` keeps every board's failure in its cases
            raise outcome.error
    pending = not all(o.finished for o in outcomes)
    cases = []
    for device in devices:
        mine = per_device.get(device.name) or [
            CaseResult(device.name, ",".join(options.variants) or "planned")
        ]
        for case in mine:
            if case.status == "not run" and pending:
                case.error = case.error or f"not run: the {options.deadline_s:g} s deadline passed"
            if case.case_id is None:
                record(case, None)
        cases.extend(mine)
    measured = sum(c.status == "ok" for c in cases)
    status = ("failed" if not measured
              else "ok" if all(c.status in ("ok", "unsupported") for c in cases)
              else "partial")  # fmt: skip
    state.finish_bench_run(run_id, status)
    return BenchRun(run_id, cases, status)


def _options_record(options: BenchOptions) -> dict[str, Any]:
    request = options.deploy.request
    return {
        "variants": list(options.variants), "threads": list(options.threads),
        "providers": list(options.providers), "max_seconds": options.max_seconds,
        "target_ci": options.target_ci, "warmup": options.warmup,
        "cooldown_s": options.cooldown_s, "deadline_s": options.deadline_s,
        "calibration": str(request.calibration or ""), "validation": str(request.validation or ""),
    }  # fmt: skip


def speedups(cases: Sequence[CaseResult]) -> dict[int, float]:
    """Index in `cases` -> fp32's p50 / this p50, same device, threads and provider."""
    fp32 = {
        (c.device, c.threads, c.provider): c.result["latency"]["p50_ms"]
        for c in cases
        if c.status == "ok" and c.variant == "fp32" and c.result
    }
    against = {
        (c.device, c.threads, c.provider): (c.result or {}).get("sha256")
        for c in cases
        if c.status == "ok" and c.variant == "fp32"
    }
    out = {}
    for i, c in enumerate(cases):
        key = (c.device, c.threads, c.provider)
        base = fp32.get(key)
        pair = (c.result or {}).get("paired")
        if c.status == "ok" and pair and pair["against"] == against.get(key):
            out[i] = 1 / pair["ratio"]  # measured interleaved with that fp32: the pairs' ratio
        elif c.status == "ok" and c.result and base and c.result["latency"]["p50_ms"]:
            out[i] = base / c.result["latency"]["p50_ms"]
    return out


def report_rows(run: BenchRun) -> list[dict[str, Any]]:
    """The run's cases as flat dicts (what `edgeopt.host.report.cases` and --json/--csv take)."""
    ups = speedups(run.cases)
    rows = []
    for i, c in enumerate(run.cases):
        lat = (c.result or {}).get("latency", {})
        ok = c.status == "ok"
        rows.append({
            "run": run.id, "device": c.device, "variant": c.variant, "threads": c.threads or 0,
            "provider": c.provider or "", "status": c.status, "error": c.error,
            **{k: (float(lat[k]) if ok else None)
               for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "ci_low_ms",
                         "ci_high_ms")},
            "samples": int(lat.get("samples", 0)) if ok else 0,
            "throughput": float((c.result or {}).get("throughput", 0.0)) if ok else None,
            "size_bytes": c.size_bytes, "speedup": ups.get(i), "accuracy": c.accuracy,
            "paired": (c.result or {}).get("paired") if ok else None,
            "flags": list(c.flags), "case": c.case_id,
        })  # fmt: skip
    return rows
