"""Generated code of the `edgeopt.v1` wire contract. Do not edit: run `make proto`."""

__all__ = ["agent_pb2", "agent_pb2_grpc"]
