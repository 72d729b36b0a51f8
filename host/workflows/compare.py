"""`edgeopt bench compare-models A.onnx B.onnx`: is B faster or slower than A on these boards?

Both artifacts are pushed aside (nothing is activated), then each board measures them in one
Benchmark call with `versus`: alternating blocks in its runner, the order of each pair drawn at
random (edgeopt.proto.paired). The host recomputes the ratio B/A and its interval from the
blocks the board sent (it believes no estimate a board prints), calls a verdict with the
threshold, and states the smallest change the run could have seen. Boards run concurrently; a
board that stops answering mid-comparison gives a partial result and no verdict. Both sides go
into the history under one run id, each with its model's digest.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from edgeopt.host.compress import data as datasets
from edgeopt.host.config.inventory import Device
from edgeopt.host.errors import AgentTimeout, AgentUnavailable, EdgeoptError, InvalidRequest
from edgeopt.host.store.state import State
from edgeopt.host.transport.client import ClientConfig, file_digest
from edgeopt.host.transport.fanout import each, open_client
from edgeopt.host.transport.wire import BenchmarkCall, BenchmarkProgress, as_record
from edgeopt.host.workflows.samples import first_sample
from edgeopt.proto import paired
from edgeopt.proto.plan import RunPlan

__all__ = ["CompareOptions", "Comparison", "check_inputs", "compare_models", "exit_status"]


@dataclass(frozen=True)
class CompareOptions:
    """Two artifacts and how to measure them against each other."""

    a: Path
    b: Path
    threads: int = 0
    """Intra-op threads of both (0: ONNX Runtime's default on the board)."""
    inputs: Path | None = None
    """.npz whose first sample both are fed (default: made up by the board)."""
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    max_seconds: float = 60.0
    threshold: float = 0.02
    """The smallest change called a change (0.02: 2 %). The board stops once the ratio's
    interval is within a quarter of it: an A/A run then lies within the threshold unless its
    estimate is off by 3/4 of it."""
    block_runs: int = 0
    seed: int = 0
    warmup: int = 5


@dataclass
class Comparison:
    """One board's answer."""

    device: str
    verdict: str = "undecided"
    """"slower", "faster", "no change", "undecided" (too noisy) or "failed" (no result)."""
    words: str = ""
    found: paired.Estimate | None = None
    result: dict[str, Any] = field(default_factory=dict)
    pairs_seen: int = 0
    """Block pairs the board reported in progress (what a board that died had done)."""

    def record(self) -> dict[str, Any]:
        """JSON for scripts."""
        return {"device": self.device, "verdict": self.verdict, "words": self.words,
                **({"estimate": self.found.to_dict()} if self.found else {}),
                "stop_reason": self.result.get("stop_reason", "")}  # fmt: skip


def check_inputs(a: Path, b: Path) -> None:
    """Refuse two models a comparison cannot feed the same inputs (InvalidRequest, in words)."""
    specs = [{s.name: s for s in datasets.input_specs(onnx.load(str(p), load_external_data=False))}
             for p in (a, b)]  # fmt: skip
    if sorted(specs[0]) != sorted(specs[1]):
        raise InvalidRequest(
            f"a comparison feeds both models the same inputs: {a.name} takes "
            f"{', '.join(sorted(specs[0]))} but {b.name} takes {', '.join(sorted(specs[1]))}"
        )
    for name, x in specs[0].items():
        y = specs[1][name]
        if x.dtype != y.dtype:
            raise InvalidRequest(
                f"a comparison feeds both models the same inputs: input {name!r} is "
                f"{x.dtype.__name__} in {a.name} but {y.dtype.__name__} in {b.name}"
            )


def _words(found: paired.Estimate, verdict: str, threshold: float) -> str:
    change = f"B/A {found.ratio:.4f} ({found.ratio - 1:+.2%}), 95 % interval " \
        f"{found.low:.4f} to {found.high:.4f} over {found.pairs} block pairs"  # fmt: skip
    could = f"this run could detect a change of {found.detectable:.2%}"
    if verdict in ("slower", "faster"):
        return f"{verdict}: {change}; beyond the {threshold:.0%} threshold"
    if verdict == "no change":
        return f"no change: {change}, all within +-{threshold:.0%}; {could}"
    return f"undecided: {change}; too noisy for the {threshold:.0%} threshold: {could}"


async def _one(
    device: Device,
    options: CompareOptions,
    config: ClientConfig,
    progress: Callable[[str, str], None] | None,
) -> Comparison:
    out = Comparison(device.name)
    plan = RunPlan(intra_op_threads=options.threads) if options.threads else None
    feed = first_sample(options.inputs, options.a) or {}

    def said(p: BenchmarkProgress) -> None:
        out.pairs_seen = p.pairs
        if progress is not None:
            progress(device.name, f"{p.pairs} block pairs, B/A {p.ratio:.3f} "
                     f"+-{p.ci_relative:.1%}")  # fmt: skip

    try:
        async with open_client(device, config) as client:
            a = (await client.push(options.a, "")).sha256
            b = (await client.push(options.b, "")).sha256
            reply = await client.benchmark(BenchmarkCall(
                sha256=a, plan=plan, inputs=feed, input_shapes=options.input_shapes,
                warmup=options.warmup, max_seconds=options.max_seconds,
                target_ci=options.threshold / 4, versus=(b, plan),
                block_runs=options.block_runs, seed=options.seed,
            ), said)  # fmt: skip
    except (AgentUnavailable, AgentTimeout) as exc:
        out.verdict = "failed"
        out.words = (f"partial, no verdict: the board stopped answering after "
                     f"{out.pairs_seen} block pairs ({exc})")  # fmt: skip
        return out
    except EdgeoptError as exc:
        out.verdict, out.words = "failed", str(exc)
        return out
    out.result = as_record(reply)
    v = reply.versus
    try:
        out.found = paired.estimate(list(v.a_ms), list(v.b_ms))
    except ValueError as exc:  # a board's numbers are checked, not believed
        out.verdict, out.words = "failed", f"the board's blocks are unusable: {exc}"
        return out
    out.verdict = paired.verdict(out.found, options.threshold)
    out.words = _words(out.found, out.verdict, options.threshold)
    return out


def compare_models(
    devices: Sequence[Device],
    options: CompareOptions,
    state: State,
    *,
    config: ClientConfig | None = None,
    progress: Callable[[str, str], None] | None = None,
) -> tuple[str, list[Comparison]]:
    """Compare on every device at once; the run id and one answer per device (see module)."""
    check_inputs(options.a, options.b)
    config = config or ClientConfig()
    run = f"cmp-{secrets.token_hex(4)}"
    digests = (file_digest(options.a), file_digest(options.b))
    state.start_bench_run(run, f"{options.a} vs {options.b}", digests[0], "compare-models",
                          {"threshold": options.threshold, "max_seconds": options.max_seconds,
                           "threads": options.threads})  # fmt: skip

    async def work(device: Device) -> Comparison:
        return await _one(device, options, config, progress)

    outcomes = asyncio.run(each(devices, work))
    answers = []
    for device, outcome in zip(devices, outcomes, strict=True):
        answer = outcome.value or Comparison(device.name, "failed", outcome.reason)
        answers.append(answer)
        _record(state, run, answer, options, digests)
    failed = all(a.verdict == "failed" for a in answers)
    partial = any(a.verdict == "failed" for a in answers)
    state.finish_bench_run(run, "failed" if failed else "partial" if partial else "ok")
    return run, answers


def _record(
    state: State, run: str, answer: Comparison, options: CompareOptions, digests: tuple[str, str]
) -> None:
    """Both sides as cases of the run: A's result with the pairs, B's latency and blocks."""
    result = answer.result
    versus = result.get("versus", {})
    sides = (
        (options.a, digests[0], result, result.get("sha256", "")),
        (options.b, digests[1], {**versus, "block_ms": versus.get("b_ms", []),
                                 "conditions": result.get("conditions", {})},
         versus.get("sha256", "")),
    )  # fmt: skip
    for path, digest, side, artifact in sides:
        state.record_benchmark({
            "run": run, "device": answer.device, "fingerprint": "", "model": str(path),
            "model_digest": digest, "artifact_digest": artifact, "precision": "as given",
            "threads": options.threads, "provider": "", "plan": {}, "result": side,
            "status": "ok" if answer.found else "failed", "error": answer.words,
            "onnxruntime_version": result.get("conditions", {}).get("onnxruntime_version", ""),
            "flags": ["paired"],
        })  # fmt: skip


def exit_status(answers: Sequence[Comparison]) -> int:
    """1 when any board found B slower; else 2 when any could not decide; else 0."""
    verdicts = {a.verdict for a in answers}
    if "slower" in verdicts:
        return 1
    return 2 if verdicts & {"undecided", "failed"} else 0
