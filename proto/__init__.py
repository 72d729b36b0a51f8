"""The contract between the edgeopt host and its agents.

`edgeopt.proto.v1` holds the generated protobuf and gRPC code (see `proto/v1/agent.proto`, made
by `scripts/gen_proto.py`). The hand-written modules beside it are small, dependency-free and
shared by both sides: `capabilities` (frozen dataclasses and their protobuf conversion), `plan`
(`RunPlan` and `Precision`, the run plan as it crosses the wire), `tensors` (tensor headers and
the tensor file format), `inputs` (made-up inputs' rule), `profiling` (trace aggregation) and
`auth` (how the bearer token travels).

May import: nothing of edgeopt but itself (tests/test_layers.py holds it); Python 3.8, protobuf
and grpcio only, as the boards have them.
"""

__all__ = ["auth", "capabilities", "inputs", "plan", "profiling", "tensors", "v1"]
