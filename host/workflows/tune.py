"""`--tune`: the planner proposes, a short measurement on the board decides.

The answer is remembered for every board of the same kind.

For one board: the planner's choice and its best alternatives (at most `top_k`), each made by
the compression pipeline (cached), pushed under a scratch name (`<name>--tune`, removed after),
checked for accuracy on the board itself (its `Infer` outputs on the validation data against
the host's fp32 reference, through the same gate as `compress`), and measured with the agent's
Benchmark, within a time budget shared by the candidates. The fastest candidate that passes is
the answer; candidates that fail to load, to run or the gate are reported, never fatal. A
precision that fails the gate on the board (fp16, int8-dynamic, int8-static) brings a mixed
candidate after the planner's: the fewest nodes kept float that pass the gate on the host
(edgeopt.host.compress.sensitivity; its search time is not taken from the budget), checked
and measured on the board the same way; the winning plan names its kept nodes.

The answer is stored under (device fingerprint, ONNX Runtime version, model digest,
constraints, the nodes the user asked to keep float): the next tune of that model on any board
of the same kind measures nothing (`retune` forces it). Every trial is kept with the model's
traits: the planner weighs them when it plans other models for that kind of board
(edgeopt.host.planning.experience).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.host.compress import CompressionReport, CompressRequest, compress
from edgeopt.host.compress import data as datasets
from edgeopt.host.compress import onnxfile as onnx_model
from edgeopt.host.compress.sensitivity import SEARCHED, search
from edgeopt.host.compress.validate import comparable, compare, run_model, stacked
from edgeopt.host.config.inventory import Device
from edgeopt.host.errors import AccuracyGateFailed, DataError, EdgeoptError
from edgeopt.host.planning import planner
from edgeopt.host.planning.plan import DevicePlan
from edgeopt.host.store.state import State
from edgeopt.host.transport.client import AgentClient, ClientConfig, file_digest
from edgeopt.host.transport.fanout import open_client
from edgeopt.host.transport.wire import BenchmarkCall
from edgeopt.host.workflows.plans import experience
from edgeopt.proto.capabilities import Capabilities

__all__ = [
    "TUNE_SUFFIX",
    "VALIDATION_SAMPLES",
    "Trial",
    "TuneOptions",
    "TuneResult",
    "candidates",
    "tune_device",
    "tuning_key",
]

TUNE_SUFFIX = "--tune"
VALIDATION_SAMPLES = 64
"""Validation samples run on the board per candidate (the accuracy check's cost)."""


@dataclass
class Trial:
    """One candidate measured (or why not)."""

    plan: DevicePlan
    p50_ms: float | None = None
    ci_relative: float | None = None
    cosine: float | None = None
    accuracy_drop: float | None = None
    passed: bool = False
    error: str = ""
    seconds: float = 0.0
    rounds: int = 0
    """Benchmarks run (the p50 kept is the lowest)."""
    gate_failed: bool = False
    """It ran on the board and failed the accuracy gate there."""

    def record(self) -> dict[str, Any]:
        """The trial as the state database and the JSON output hold it."""
        return {**self.__dict__, "plan": self.plan.record()}

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Trial:
        """The trial `record` wrote."""
        return cls(**{**data, "plan": DevicePlan.from_record(data["plan"])})


@dataclass
class TuneResult:
    """What tuning decided for one board."""

    device: str
    key: str
    best: DevicePlan | None
    """The winning plan (None: every candidate failed)."""
    trials: list[Trial] = field(default_factory=list)
    reused: bool = False
    """Taken from an earlier tuning of a board of the same kind: nothing was measured."""
    seconds: float = 0.0

    def record(self) -> dict[str, Any]:
        """What a deployment's JSON says of its tuning."""
        return {
            "reused": self.reused, "best": self.best.record() if self.best else None,
            "seconds": self.seconds, "trials": [t.record() for t in self.trials],
        }  # fmt: skip


def tuning_key(caps: Capabilities, model_digest: str, constraints: dict[str, Any]) -> str:
    """What a tuning result is valid for: the kind of board, its runtime, the model, the gate."""
    payload = {
        "fingerprint": caps.fingerprint,
        "onnxruntime": caps.onnxruntime.version,
        "model": model_digest,
        "constraints": constraints,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def candidates(decision: planner.Decision, top_k: int) -> list[planner.Plan]:
    """The planner's choice and its alternatives, best first, at most `top_k`."""
    seen, out = set(), []
    for p in (decision.chosen, *decision.alternatives):
        key = (p.precision, p.intra_op_threads, p.execution_provider)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out[:top_k]


def _candidate(p: planner.Plan, target: str | None) -> DevicePlan:
    """A planner's plan as a tuning candidate (the session's own graph optimization level)."""
    return DevicePlan(replace(p.run, graph_optimization_level=""), target or "",
                      tuple("tuned: " + r for r in p.reasons))  # fmt: skip


@dataclass(frozen=True)
class TuneOptions:
    """How to tune."""

    request: CompressRequest
    """The model and its compression settings (validation data and gate included)."""
    name: str
    """The model's name on the board (candidates go under `<name>--tune`, removed after)."""
    traits: planner.ModelTraits
    """What the planner knows of the model."""
    budget_s: float = 60.0
    """Seconds of measuring per board, shared by the candidates."""
    top_k: int = 4
    """Candidates at most."""
    retune: bool = False
    """Measure again even when a board of the same kind was tuned."""
    threads: int | None = None
    """Keep this thread count."""
    provider: str | None = None
    """Keep this execution provider."""


@dataclass
class _Context:
    """What every candidate of one board's tuning shares."""

    client: AgentClient
    options: TuneOptions
    scratch: str
    target: str | None
    compress_fn: Callable[[CompressRequest], CompressionReport]
    data: datasets.Dataset | None = None
    expected: np.ndarray | None = None
    sample: dict[str, np.ndarray] = field(default_factory=dict)


async def _on_board(ctx: _Context, label: str) -> np.ndarray:
    """The candidate's `comparable` output on the validation data, computed by the board."""
    assert ctx.data is not None
    outputs = []
    size = ctx.data.fixed_batch or min(16, len(ctx.data))
    for feed in ctx.data.batches(size):
        result, _ = await ctx.client.infer(ctx.scratch, feed, label, timeout=120.0)
        outputs.append(comparable(list(result.values())))
    return stacked(outputs)


async def _try(ctx: _Context, index: int, trial: Trial, seconds: float) -> None:
    """Make, push, check and measure one candidate; its failure is the trial's, not ours."""
    request, plan = ctx.options.request, trial.plan
    try:
        artifact = ctx.compress_fn(
            replace(request, precision=plan.precision, output=None, validation=None,
                    target_ort=ctx.target, keep_float=plan.keep_float or request.keep_float)
        )  # fmt: skip
        label = f"c{index + 1}-{plan.precision}"
        await ctx.client.push(artifact.artifact, ctx.scratch, version=label, plan=plan.run)
        if ctx.data is not None and ctx.expected is not None:
            report = compare(ctx.expected, await _on_board(ctx, label), ctx.data.labels)
            trial.cosine, trial.accuracy_drop = report.cosine, report.accuracy_drop
            try:
                request.gate.check(report, plan.precision)
            except AccuracyGateFailed:
                trial.gate_failed = True
                raise
        await _measure(ctx, index, trial, seconds)
        trial.passed = True
    except (AccuracyGateFailed, DataError) as exc:
        trial.error = str(exc)  # "int8-static fails the gate: cosine similarity ..."
    except EdgeoptError as exc:
        trial.error = str(exc)


async def _measure(ctx: _Context, index: int, trial: Trial, seconds: float) -> None:
    """Benchmark a pushed candidate; a second round keeps the lower p50 of the two."""
    plan = trial.plan
    bench = await ctx.client.benchmark(
        BenchmarkCall(
            name=ctx.scratch, version=f"c{index + 1}-{plan.precision}",
            plan=plan.run, inputs=ctx.sample, max_seconds=seconds,
            # At least 30 runs: on a busy board a handful can hit one quiet spell.
            target_ci=0.02, min_repeats=30,
        )
    )  # fmt: skip
    lat = bench.latency
    if trial.p50_ms is None or lat.p50_ms < trial.p50_ms:
        trial.p50_ms = lat.p50_ms
        trial.ci_relative = (lat.ci_high_ms - lat.ci_low_ms) / 2 / lat.p50_ms
    trial.rounds += 1


def _validation(ctx: _Context, reference: Path) -> None:
    request = ctx.options.request
    if request.validation is None:
        return
    full = datasets.load(request.validation, onnx_model.load(reference, check=False),
                         purpose="validation")  # fmt: skip
    keep = min(len(full), VALIDATION_SAMPLES)
    ctx.data = datasets.Dataset(
        {k: v[:keep] for k, v in full.arrays.items()},
        full.labels[:keep] if full.labels is not None else None,
        full.path, full.fixed_batch, full.constants,
    )  # fmt: skip
    ctx.expected = run_model(reference, ctx.data)
    ctx.sample = next(ctx.data.batches(ctx.data.fixed_batch or 1))


def _mixed(
    ctx: _Context, trials: list[Trial], say: Callable[[str], None]
) -> tuple[list[Trial], float]:
    """Mixed candidates, and the seconds their searches took.

    For each precision that failed the gate on the board, the fewest nodes kept float that
    pass it on the host (`sensitivity.search`), to be checked and measured on the board like
    the others.

    None when the user named nodes to keep float (that set is the one tried), or for
    precisions with nothing to rank.
    """
    request = ctx.options.request
    if request.keep_float or request.validation is None:
        return [], 0.0
    start, out, seen = time.monotonic(), [], set()
    for trial in trials:
        plan = trial.plan
        if not trial.gate_failed or plan.precision not in SEARCHED or plan.precision in seen:
            continue
        seen.add(plan.precision)
        say(f"{plan.precision} failed the gate: searching for nodes to keep float")
        try:
            found = search(replace(request, precision=plan.precision, output=None,
                                   target_ort=None, keep_float_search=""), "auto")  # fmt: skip
        except EdgeoptError as exc:
            trial.error += f"; keeping nodes float does not help: {exc}"
            continue
        if not found.kept:  # passes on the host as it is: the board's numbers differ
            continue
        reason = (
            f"tuned: {plan.precision} failed the gate on the board; {len(found.kept)} of "
            f"{len(found.ranking.nodes)} nodes kept float (the fewest that pass on the host, "
            f"{found.probes} variants searched in {found.seconds:.0f} s)"
        )
        out.append(Trial(replace(plan, keep_float=found.kept, reasons=(reason,))))
    return out, time.monotonic() - start


async def _rounds(
    ctx: _Context, trials: list[Trial], planned: int, start: float, say: Callable[[str], None]
) -> None:
    """Try every candidate, then measure those that passed a second time, within the budget.

    The first `planned` candidates are the planner's; mixed ones follow them.
    """
    searching = 0.0  # host time spent searching mixed variants: not the board's budget

    def left() -> float:
        return ctx.options.budget_s - (time.monotonic() - start - searching)

    index = 0
    while index < len(trials):
        trial = trials[index]
        if left() <= 1.0:
            trial.error = "not measured: the tuning budget was spent"
            index += 1
            continue
        say(f"candidate {index + 1}/{len(trials)}: {trial.plan.label}, "
            f"{trial.plan.threads} threads")  # fmt: skip
        t0 = time.monotonic()
        # Half the share of what is left: the second round below takes the rest.
        share = max(2.0, left() / (len(trials) - index) / 2 - 1.0)
        await _try(ctx, index, trial, share)
        trial.seconds = time.monotonic() - t0
        index += 1
        if index == planned:  # the planner's candidates done: mixed ones next
            mixed, seconds = _mixed(ctx, trials, say)
            trials += mixed
            searching += seconds
    # A second round, in reverse order: a burst of load on the board during one
    # candidate's run would otherwise decide the choice; the lower p50 of the two counts.
    passed = [(i, t) for i, t in enumerate(trials) if t.passed][::-1]
    remaining = left()
    if len(passed) > 1 and remaining > 2.0 * len(passed):
        for index, trial in passed:
            say(f"round 2: {trial.plan.label}, {trial.plan.threads} threads")
            t0 = time.monotonic()
            with contextlib.suppress(EdgeoptError):  # the first round's figure stands
                await _measure(ctx, index, trial, min(5.0, remaining / len(passed) - 1.0))
            trial.seconds += time.monotonic() - t0


async def tune_device(
    device: Device,
    caps: Capabilities,
    options: TuneOptions,
    state: State,
    *,
    config: ClientConfig,
    target: str | None = None,
    progress: Callable[[str, str], None] | None = None,
    compress_fn: Callable[[CompressRequest], CompressionReport] = compress,
) -> TuneResult:
    """Tune one board; see the module docstring."""
    start = time.monotonic()
    request = options.request
    source = Path(request.model)
    digest = file_digest(source) if source.is_file() else str(request.model)
    constraints: dict[str, Any] = {
        "max_accuracy_drop": request.gate.max_accuracy_drop,
        "min_cosine": request.gate.min_cosine,
        "calibration": request.calibration is not None,
        "threads": options.threads, "provider": options.provider,
    }  # fmt: skip
    if request.keep_float:  # (absent otherwise: the keys of earlier tunings stay valid)
        constraints["keep_float"] = list(request.keep_float)
    key = tuning_key(caps, digest, constraints)

    def say(text: str) -> None:
        if progress is not None:
            progress(device.name, text)

    if not options.retune:
        known = state.tuning(key)
        if known is not None:
            say("tuned before on a board of this kind: reusing, nothing measured")
            return TuneResult(device.name, key, DevicePlan.from_record(known["best"]), reused=True,
                              trials=[Trial.from_record(t) for t in known["trials"]])  # fmt: skip
    decision = planner.plan(
        planner.Board.from_capabilities(device.name, caps), options.traits,
        planner.Constraints(calibration=request.calibration is not None,
                            threads=options.threads, provider=options.provider),
        experience(state, caps),
    )  # fmt: skip
    chosen = candidates(decision, options.top_k)
    reference = compress_fn(replace(request, precision="fp32", output=None, validation=None,
                                    target_ort=None)).artifact  # fmt: skip
    trials = [Trial(_candidate(c, target)) for c in chosen]
    async with open_client(device, config) as client:
        ctx = _Context(client, options, f"{options.name}{TUNE_SUFFIX}", target, compress_fn)
        _validation(ctx, reference)
        try:
            await _rounds(ctx, trials, len(chosen), start, say)
        finally:
            with contextlib.suppress(EdgeoptError):  # nothing pushed, or the board is gone
                await client.delete(ctx.scratch, force=True)
    passing = [t for t in trials if t.passed and t.p50_ms is not None]
    best = min(passing, key=lambda t: t.p50_ms or 0.0).plan if passing else None
    result = TuneResult(device.name, key, best, trials, seconds=time.monotonic() - start)
    if best is not None:
        state.record_tuning(key, device.name, caps.fingerprint, caps.onnxruntime.version,
                            digest, constraints, best.record(),
                            [t.record() for t in trials], result.seconds,
                            {"name": options.name, "model": asdict(options.traits)})  # fmt: skip
    return result
