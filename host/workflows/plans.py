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

from edgeopt.host.compress import CompressRequest, compress
from edgeopt.host.compress import onnxfile as onnx_model
from edgeopt.host.compress.target import parse_version
from edgeopt.host.compress.weights import census
from edgeopt.host.errors import UnsupportedModel
from edgeopt.host.planning import planner
from edgeopt.host.planning.plan import DevicePlan
from edgeopt.proto.capabilities import Capabilities
from edgeopt.proto.plan import RunPlan

__all__ = ["DeployOptions", "TuneSettings", "lowering_target", "plan_for", "traits_of"]


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


def plan_for(
    options: DeployOptions,
    caps: Capabilities,
    name: str = "board",
    tuned: DevicePlan | None = None,
) -> tuple[CompressRequest, DevicePlan]:
    """The compression request and the run plan for one board, from the flags and its report.

    Without a precision from the user (`options.traits` set), the planner chooses precision,
    threads and provider from the board's report and the model's traits; flags the user gave
    are kept and recorded as given. The artifact is lowered (`--target-ort`) for a board whose
    ONNX Runtime is older than the host's.
    """
    board = caps.onnxruntime.version
    target = lowering_target(options.request.target_ort, caps)
    request = replace(options.request, output=None, target_ort=target)
    if tuned is not None:
        request = replace(request, precision=tuned.precision)
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


def traits_of(request: CompressRequest) -> planner.ModelTraits:
    """The planner's view of a model: its fp32 reference (normalized or exported, cached)."""
    reference = compress(replace(request, precision="fp32", output=None, validation=None,
                                 target_ort=None))  # fmt: skip
    return planner.model_traits(census(onnx_model.load(reference.artifact, check=False)))
