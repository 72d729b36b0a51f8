"""One board's plan for one model, from the planner through deploy, bench and tune to the wire.

A `DevicePlan` holds the `RunPlan` the board is told (edgeopt.proto.plan: precision, threads,
execution provider, session options; the agent receives the very same type), the ONNX Runtime
version the artifact is lowered for, and why: the planner's reasons and the alternatives it
weighed. It stays typed through the workflows; it becomes a dict only as a record, for the
state database and the commands' JSON (`record`, the keys those have always had), and protobuf
only in edgeopt.host.transport.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, cast

from edgeopt.proto.plan import Precision, RunPlan, pairs

__all__ = ["DevicePlan"]


@dataclass(frozen=True)
class DevicePlan:
    """How one board runs one model, which artifact it needs, and why."""

    run: RunPlan
    """What the board is told: the wire's plan."""
    target_ort: str = ""
    """The ONNX Runtime version the artifact is lowered for ("" = the host's, no lowering)."""
    reasons: tuple[str, ...] = ()
    """Why this plan, one line each ("planned: ...", "tuned: ...", "... from the command line")."""
    alternatives: tuple[str, ...] | None = None
    """The alternatives weighed, one line each; None where none were (a tuning candidate)."""
    keep_float: tuple[str, ...] = ()
    """Nodes the artifact keeps float (a mixed variant, `--keep-float`; tuning finds them)."""

    @property
    def label(self) -> str:
        """The precision, and how many nodes a mixed variant keeps float."""
        kept = f" +{len(self.keep_float)} float" if self.keep_float else ""
        return f"{self.precision}{kept}"

    @property
    def precision(self) -> Precision:
        """The artifact's precision."""
        return cast(Precision, self.run.precision)

    @property
    def threads(self) -> int:
        """Intra-op threads."""
        return self.run.intra_op_threads

    @property
    def provider(self) -> str:
        """The execution provider."""
        return self.run.execution_provider

    def sent(self, **metadata: str) -> RunPlan:
        """The run plan as pushed and activated: with the facts the agent keeps beside it."""
        return replace(self.run, metadata=pairs(metadata)) if metadata else self.run

    def record(self) -> dict[str, Any]:
        """The plan as the state database and the JSON output hold it."""
        out: dict[str, Any] = {
            "precision": self.run.precision,
            "intra_op_threads": self.run.intra_op_threads,
            "inter_op_threads": self.run.inter_op_threads,
            "execution_provider": self.run.execution_provider,
            "graph_optimization_level": self.run.graph_optimization_level,
        }
        if self.run.execution_mode:
            out["execution_mode"] = self.run.execution_mode
        out["target_ort"] = self.target_ort
        out["reasons"] = list(self.reasons)
        if self.alternatives is not None:
            out["alternatives"] = list(self.alternatives)
        if self.keep_float:
            out["keep_float"] = list(self.keep_float)
        return out

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> DevicePlan:
        """The plan `record` wrote (what an earlier tuning stored)."""
        alternatives = data.get("alternatives")
        return cls(
            RunPlan(
                precision=str(data["precision"]),
                intra_op_threads=int(data["intra_op_threads"]),
                inter_op_threads=int(data["inter_op_threads"]),
                execution_provider=str(data["execution_provider"]),
                graph_optimization_level=str(data.get("graph_optimization_level") or ""),
                execution_mode=str(data.get("execution_mode") or ""),
            ),
            target_ort=str(data.get("target_ort") or ""),
            reasons=tuple(str(r) for r in data.get("reasons") or ()),
            alternatives=None if alternatives is None else tuple(str(a) for a in alternatives),
            keep_float=tuple(str(n) for n in data.get("keep_float") or ()),
        )
