"""The plan for each board: the user's options, then the planner's choice or a tuning's.

`plan_for` turns `DeployOptions` and one board's report into the compression request and the
`DevicePlan` (edgeopt.host.planning.plan) for that board: the user's flags where given, the
planner's choice from the board's report and the model's traits otherwise, or what tuning
measured; an artifact lowered for a board whose ONNX Runtime is older than the host's.
Deploy, bench and tune all plan through here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import onnx

from edgeopt.host.compress import CompressRequest, compress
from edgeopt.host.compress import data as datasets
from edgeopt.host.compress import onnxfile as onnx_model
from edgeopt.host.compress.blocks import blocks
from edgeopt.host.compress.target import parse_version
from edgeopt.host.compress.weights import census
from edgeopt.host.errors import DataError, UnsupportedModel
from edgeopt.host.planning import planner
from edgeopt.host.planning.experience import Measured
from edgeopt.host.planning.plan import DevicePlan
from edgeopt.host.store.tunings import TuningStore
from edgeopt.proto.capabilities import Capabilities
from edgeopt.proto.plan import RunPlan

__all__ = [
    "DeployOptions", "TuneSettings", "experience", "fall_back", "lowering_target", "plan_for",
    "traits_of",
]  # fmt: skip


@dataclass(frozen=True)
class DeployOptions:
    """What to deploy and how."""

    request: CompressRequest
    """The model and its compression (precision, calibration, gate, ...); output is ignored."""
    name: str
    """The model's name on the boards."""
    version: str = ""
    """Version label; empty lets each agent number it."""
    threads: int | None = None
    """Intra-op threads; None: the board's physical cores."""
    provider: str | None = None
    """Execution provider; None: CPUExecutionProvider."""
    graph_optimization: str = ""
    """ONNX Runtime graph optimization level on the board ("" = all)."""
    parallel: int = 8
    """Boards pushed to and activated at once."""
    canary: int = 0
    """Boards that go first; the rollout halts if any of them fails."""
    smoke: Path | None = None
    """`.npz` whose first sample is the smoke input (default: validation, else calibration)."""
    traits: planner.ModelTraits | None = None
    """The model's traits when the planner chooses the precision (no --precision given)."""
    tune: TuneSettings | None = None
    """Measure the planner's candidates on each board first (needs `traits`)."""


@dataclass(frozen=True)
class TuneSettings:
    """`--tune`: how long and how widely to measure."""

    budget_s: float = 60.0
    """Seconds of measuring per board."""
    top_k: int = 4
    """Candidates at most."""
    retune: bool = False
    """Measure again although a board of the same kind was tuned."""


def _host_ort() -> tuple[int, int]:
    import onnxruntime  # noqa: PLC0415

    return parse_version(onnxruntime.__version__)


def lowering_target(requested: str | None, caps: Capabilities) -> str | None:
    """The ONNX Runtime version to lower the artifact for (None: no lowering).

    The user's `--target-ort`, else the board's own version when it is older than the host's.
    """
    board = caps.onnxruntime.version
    if requested is None and board and parse_version(board) < _host_ort():
        return board
    return requested


def experience(tunings: TuningStore | None, caps: Capabilities) -> tuple[Measured, ...]:
    """What tuning measured on boards of this one's kind (its fingerprint), newest first."""
    if tunings is None or not caps.fingerprint:
        return ()
    rows = tunings.tunings(caps.fingerprint)
    found = (Measured.from_tuning(row, planner.ModelTraits) for row in rows)
    return tuple(m for m in found if m is not None)


def plan_for(
    options: DeployOptions,
    caps: Capabilities,
    name: str = "board",
    tuned: DevicePlan | None = None,
    tunings: TuningStore | None = None,
) -> tuple[CompressRequest, DevicePlan]:
    """The compression request and the run plan for one board, from the flags and its report.

    Without a precision from the user (`options.traits` set), the planner chooses precision,
    threads and provider from the board's report and the model's traits; flags the user gave
    are kept and recorded as given; what earlier tunings measured on boards of this kind
    (`tunings`) outweighs the rules where it applies. The artifact is lowered (`--target-ort`)
    for a board whose ONNX Runtime is older than the host's.
    """
    board = caps.onnxruntime.version
    target = lowering_target(options.request.target_ort, caps)
    request = replace(options.request, output=None, target_ort=target)
    if tuned is not None:
        request = replace(request, precision=tuned.precision,
                          keep_float=tuned.keep_float or request.keep_float)  # fmt: skip
        lowered = (f"lowered for the board's ONNX Runtime {board}",) if target else ()
        return request, replace(tuned, target_ort=target or "", alternatives=(),
                                reasons=(*tuned.reasons, *lowered))  # fmt: skip
    if options.traits is not None:
        decision = planner.plan(
            planner.Board.from_capabilities(name, caps),
            options.traits,
            planner.Constraints(
                calibration=options.request.calibration is not None,
                provider=options.provider,
                threads=options.threads,
            ),
            experience(tunings, caps),
        )
        if decision.refused:
            raise UnsupportedModel(decision.refused)
        chosen = decision.chosen
        request = replace(request, precision=chosen.precision)
        threads, provider = chosen.intra_op_threads, chosen.execution_provider
        reasons = ["planned: " + r for r in chosen.reasons]
        alternatives = [
            f"{a.precision}, {a.intra_op_threads} threads: {a.reasons[0]}"
            for a in decision.alternatives
        ]
    else:
        threads = options.threads or caps.physical_cores or caps.usable_cores or 0
        provider = options.provider or "CPUExecutionProvider"
        reasons = [
            f"precision {request.precision} from the command line",
            "threads from --threads"
            if options.threads
            else f"threads = the board's {threads} cores",
        ]
        alternatives = []
    if target:
        reasons.append(f"lowered for the board's ONNX Runtime {board}")
    run = RunPlan(precision=request.precision, intra_op_threads=threads, inter_op_threads=1,
                  execution_provider=provider,
                  graph_optimization_level=options.graph_optimization)  # fmt: skip
    return request, DevicePlan(run, target or "", tuple(reasons), tuple(alternatives))


def fall_back(
    options: DeployOptions,
    caps: Capabilities,
    made: tuple[CompressRequest, DevicePlan],
    why: str,
    tunings: TuningStore | None = None,
) -> tuple[CompressRequest, DevicePlan] | None:
    """The planner's next precision, for a planned one that could not be made.

    `made` is the request and plan that failed (the variant fails the gate, or changes
    nothing); the next keeps their threads and provider, and its reasons say what happened.
    None when the user chose the precision or the planner has nothing left.
    """
    if options.traits is None:
        return None
    request, plan = made
    decision = planner.plan(
        planner.Board.from_capabilities("board", caps), options.traits,
        planner.Constraints(calibration=options.request.calibration is not None,
                            provider=options.provider, threads=options.threads),
        experience(tunings, caps),
    )  # fmt: skip
    ranked = list(dict.fromkeys(p.precision for p in (decision.chosen, *decision.alternatives)))
    tried = [r.split()[3] for r in plan.reasons if r.startswith("fell back from ")]
    left = [p for p in ranked if p != plan.precision and p not in tried]
    if not left:
        return None
    nxt = left[0]
    reason = f"fell back from {plan.precision} to {nxt}, the planner's next choice: {why}"
    run = replace(plan.run, precision=nxt)
    return replace(request, precision=nxt), replace(plan, run=run, reasons=(*plan.reasons, reason))


def traits_of(request: CompressRequest) -> planner.ModelTraits:
    """The planner's view of a model: its fp32 reference (normalized or exported, cached).

    Its compute is sized on one sample of the calibration data (else the validation data or
    the example), so the symbolic dimensions take the sizes the model will really run at.
    """
    reference = compress(replace(request, precision="fp32", output=None, validation=None,
                                 target_ort=None))  # fmt: skip
    model = onnx_model.load(reference.artifact, check=False)
    return planner.model_traits(census(model), blocks(model, _sample_shapes(request, model)))


def _sample_shapes(request: CompressRequest, model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Input name → the shape of one batch of the first data file given (none: empty)."""
    for path in (request.calibration, request.validation, request.example):
        if path is None:
            continue
        try:
            data = datasets.load(Path(path), model, purpose="sizing")
        except DataError:
            continue
        feed = next(data.batches(data.fixed_batch or 1), {})
        return {name: tuple(value.shape) for name, value in feed.items()}
    return {}
