"""The contract between the edgeopt host and its agents.

`edgeopt.proto.v1` holds the generated protobuf and gRPC code (see `proto/v1/agent.proto`, made
by `scripts/gen_proto.py`). The hand-written modules beside it are small, dependency-free and
shared by both sides: `capabilities` (frozen dataclasses and their protobuf conversion), `plan`
(`RunPlan`, the run plan as it crosses the wire), `errors` (the exception hierarchy and the gRPC
status table) and `auth` (how the bearer token travels).
"""
