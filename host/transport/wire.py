"""Where the host's typed values become protobuf and back: plans, tensors, calls, replies.

Nothing outside edgeopt.host.transport builds or reads a generated message by name
(tests/test_layers.py holds it): the workflows hand the client a `RunPlan`, arrays, and a
`BenchmarkCall` or `ProfileCall`, and take the replies as records (`as_record`) or through
their attributes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
from google.protobuf import json_format
from google.protobuf.message import Message

from edgeopt.host.errors import AgentError
from edgeopt.proto import tensors as wire
from edgeopt.proto.plan import RunPlan
from edgeopt.proto.v1 import agent_pb2

__all__ = [
    "BenchmarkCall",
    "BenchmarkProgress",
    "ProfileCall",
    "as_record",
    "from_tensors",
    "plan_message",
    "to_tensors",
    "write_tensor_file",
]

BenchmarkProgress = agent_pb2.BenchmarkProgress
"""What a Benchmark says while it runs (repeats so far, p50, the interval's relative width)."""


def plan_message(plan: RunPlan | agent_pb2.Plan | None) -> agent_pb2.Plan | None:
    """A run plan as the wire's `Plan` (a message passes as it is)."""
    return plan.to_message() if isinstance(plan, RunPlan) else plan


def to_tensors(arrays: Mapping[str, Any]) -> list[agent_pb2.Tensor]:
    """Values as wire tensors (arrays; strings, sequences and maps as agent.proto says)."""
    out = []
    for name, value in arrays.items():
        dtype, shape, data = wire.to_wire(value)
        out.append(agent_pb2.Tensor(name=name, dtype=dtype, shape=list(shape), data=bytes(data)))
    return out


def from_tensors(tensors: Iterable[agent_pb2.Tensor]) -> dict[str, Any]:
    """Wire tensors as arrays (lists for sequences, dicts for maps) by name, headers checked.

    Raises:
        AgentError: a board sent a tensor whose bytes do not match its header (the host
            trusts nothing a board sends).
    """
    out = {}
    for t in tensors:
        try:
            wire.check_header(t.name, t.dtype, tuple(t.shape), len(t.data), 1 << 62)
            out[t.name] = wire.from_wire(t.dtype, tuple(t.shape), t.data)
        except (wire.TensorError, ValueError) as exc:
            raise AgentError(f"the board sent a malformed tensor: {exc}",
                             status="DATA_LOSS") from None  # fmt: skip
    return out


def write_tensor_file(stream: IO[bytes], arrays: Mapping[str, np.ndarray]) -> None:
    """Arrays as a tensor file (edgeopt.proto.tensors' format), for `inputs_sha256`."""
    wire.write_file(stream, dict(arrays))


def as_record(message: Message, *, every_field: bool = True) -> dict[str, Any]:
    """A reply as JSON data with the .proto's field names (every field written by default)."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True,
        always_print_fields_with_no_presence=every_field,
    )  # fmt: skip


def _shapes(shapes: Mapping[str, Sequence[int]]) -> list[agent_pb2.InputShape]:
    return [agent_pb2.InputShape(name=n, dims=list(d)) for n, d in shapes.items()]


@dataclass(frozen=True)
class _Run:
    """What a Benchmark and a Profile share: which artifact, run how, on what inputs.

    The artifact is (name, version) of the store, or `sha256` of one pushed aside. Inputs are
    given arrays, else made up from `input_shapes` (and the model's own dims) by the agent.
    Zeros leave the agent's defaults.
    """

    name: str = ""
    version: str = ""
    sha256: str = ""
    plan: RunPlan | None = None
    inputs: Mapping[str, np.ndarray] = field(default_factory=dict)
    input_shapes: Mapping[str, Sequence[int]] = field(default_factory=dict)
    warmup: int = 0

    def _fields(self) -> dict[str, Any]:
        return {
            "name": self.name, "version": self.version, "sha256": self.sha256,
            "plan": plan_message(self.plan), "inputs": to_tensors(self.inputs),
            "input_shapes": _shapes(self.input_shapes), "warmup": self.warmup,
        }  # fmt: skip


@dataclass(frozen=True)
class BenchmarkCall(_Run):
    """One Benchmark: `_Run`'s artifact and inputs, repeated until the interval or time says."""

    min_repeats: int = 0
    max_repeats: int = 0
    target_ci: float = 0.0
    max_seconds: float = 0.0
    versus: tuple[str, RunPlan | None] | None = None
    """A paired comparison: B's artifact (by digest, pushed aside) and plan, measured against
    this one in alternating blocks (min/max_repeats then count block pairs, target_ci is the
    ratio's interval)."""
    block_runs: int = 0
    seed: int = 0

    def message(self) -> agent_pb2.BenchmarkRequest:
        """The call as agent.proto's request."""
        versus = None
        if self.versus is not None:
            versus = agent_pb2.ModelRef(sha256=self.versus[0], plan=plan_message(self.versus[1]))
        return agent_pb2.BenchmarkRequest(
            **self._fields(), min_repeats=self.min_repeats, max_repeats=self.max_repeats,
            target_ci=self.target_ci, max_seconds=self.max_seconds, versus=versus,
            block_runs=self.block_runs, seed=self.seed,
        )  # fmt: skip


@dataclass(frozen=True)
class ProfileCall(_Run):
    """One Profile: per-operator timing of `runs` runs after `warmup` (agent defaults at 0)."""

    runs: int = 0
    include_trace: bool = False

    def message(self) -> agent_pb2.ProfileRequest:
        """The call as agent.proto's request."""
        return agent_pb2.ProfileRequest(
            **self._fields(), runs=self.runs, include_trace=self.include_trace
        )
