"""The run plan as it crosses the wire: how ONNX Runtime is to run one artifact.

`RunPlan` mirrors agent.proto's `Plan` message field for field, as a frozen, hashable dataclass
that both sides share (the host and the agent never import each other; both import this). The
host fills one from its planner's decision; the agent receives one (`from_message`), checks it
(edgeopt.agent.plancheck), stores it with the version (`to_dict`, the JSON the store has always
written, so old stores load unchanged) and hands it to its runner process, which builds the
ONNX Runtime session options from its attributes.

Conversions do not validate: what a board will apply is the agent's decision, made in one place.
The protobuf runtime is imported only inside `to_message` / `from_message`, so that a process
that only unpickles or stores plans does not need it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Tuple

if TYPE_CHECKING:
    from edgeopt.proto.v1 import agent_pb2

__all__ = ["PRECISIONS", "Pairs", "Precision", "RunPlan", "pairs"]

Precision = Literal["fp32", "fp16", "int8-dynamic", "int8-static", "int4-weight"]
"""What an artifact is: the precisions the host makes and plans (RunPlan.precision names one)."""
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "int8-dynamic", "int8-static", "int4-weight")
"""Every `Precision`, from the widest to the narrowest."""

# typing.Tuple: a module-level alias is evaluated, and tuple[...] needs Python 3.9 (the agent
# runs on 3.8).
Pairs = Tuple[Tuple[str, str], ...]
"""A string map as (key, value) pairs sorted by key: immutable and hashable."""


def pairs(mapping: Mapping[str, Any] | Iterable[tuple[str, Any]] | None) -> Pairs:
    """A map (or pairs) as sorted (key, value) string pairs, as `RunPlan` holds them."""
    items = mapping.items() if isinstance(mapping, Mapping) else (mapping or ())
    return tuple(sorted((str(k), str(v)) for k, v in items))


@dataclass(frozen=True)
class RunPlan:
    """How to run one artifact: agent.proto's `Plan`, field for field; defaults are the wire's."""

    precision: str = ""
    """What the artifact is ("fp32", "int8-static", ...), for people and history."""
    intra_op_threads: int = 0
    """ONNX Runtime intra-op threads; 0 leaves ONNX Runtime's default."""
    inter_op_threads: int = 0
    """ONNX Runtime inter-op threads; 0 leaves ONNX Runtime's default."""
    execution_provider: str = ""
    """The execution provider ("CPUExecutionProvider" when empty)."""
    provider_options: Pairs = ()
    """Options passed to the execution provider, as sorted (key, value) pairs."""
    graph_optimization_level: str = ""
    """"disable", "basic", "extended" or "all"; empty is "all"."""
    execution_mode: str = ""
    """"sequential" (empty) or "parallel"."""
    metadata: Pairs = ()
    """Free-form facts the host records with the artifact, as sorted (key, value) pairs."""

    def __post_init__(self) -> None:
        # Whatever map or pairs the caller gave become sorted pairs: equal plans compare (and
        # hash) equal however their options were written.
        object.__setattr__(self, "provider_options", pairs(self.provider_options))
        object.__setattr__(self, "metadata", pairs(self.metadata))

    def to_message(self) -> agent_pb2.Plan:
        """The plan as agent.proto's `Plan` message."""
        from edgeopt.proto.v1 import agent_pb2  # noqa: PLC0415

        return agent_pb2.Plan(
            precision=self.precision,
            intra_op_threads=self.intra_op_threads,
            inter_op_threads=self.inter_op_threads,
            execution_provider=self.execution_provider,
            provider_options=dict(self.provider_options),
            graph_optimization_level=self.graph_optimization_level,
            execution_mode=self.execution_mode,
            metadata=dict(self.metadata),
        )

    @classmethod
    def from_message(cls, message: agent_pb2.Plan) -> RunPlan:
        """The plan a `Plan` message carries, as it is (not checked)."""
        return cls(
            precision=message.precision,
            intra_op_threads=message.intra_op_threads,
            inter_op_threads=message.inter_op_threads,
            execution_provider=message.execution_provider,
            provider_options=pairs(dict(message.provider_options)),
            graph_optimization_level=message.graph_optimization_level,
            execution_mode=message.execution_mode,
            metadata=pairs(dict(message.metadata)),
        )

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON data, as the agent's store holds it.

        It is protobuf's `MessageToDict` of `to_message()` with the field names kept and every
        field written (`preserving_proto_field_name`, `always_print_fields_with_no_presence`):
        numbers as ints, maps as objects.
        """
        return {
            "precision": self.precision,
            "intra_op_threads": self.intra_op_threads,
            "inter_op_threads": self.inter_op_threads,
            "execution_provider": self.execution_provider,
            "provider_options": dict(self.provider_options),
            "graph_optimization_level": self.graph_optimization_level,
            "execution_mode": self.execution_mode,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunPlan:
        """The plan `to_dict` wrote (a missing field takes the wire's default; others ignored)."""
        return cls(
            precision=str(data.get("precision") or ""),
            intra_op_threads=int(data.get("intra_op_threads") or 0),
            inter_op_threads=int(data.get("inter_op_threads") or 0),
            execution_provider=str(data.get("execution_provider") or ""),
            provider_options=pairs(data.get("provider_options")),
            graph_optimization_level=str(data.get("graph_optimization_level") or ""),
            execution_mode=str(data.get("execution_mode") or ""),
            metadata=pairs(data.get("metadata")),
        )
