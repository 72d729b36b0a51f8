"""RunPlan survives the wire and JSON unchanged, and its JSON is what the agent's store held."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest
from google.protobuf import json_format

from edgeopt.proto.plan import RunPlan
from edgeopt.proto.v1 import agent_pb2

MESSAGES = [
    agent_pb2.Plan(),
    agent_pb2.Plan(precision="fp32"),
    agent_pb2.Plan(intra_op_threads=4, inter_op_threads=2, execution_mode="parallel"),
    agent_pb2.Plan(
        precision="int8-static",
        execution_provider="CUDAExecutionProvider",
        provider_options={"gpu_mem_limit": "1048576", "device_id": "0"},
        graph_optimization_level="extended",
    ),
    agent_pb2.Plan(
        precision="fp16",
        intra_op_threads=1024,
        execution_provider="OpenVINOExecutionProvider",
        provider_options={"precision": "FP16", "device_type": "CPU", "num_streams": "2"},
        graph_optimization_level="disable",
        execution_mode="sequential",
        metadata={"source_sha256": "ab" * 32, "config": '{"a": 1}', "é": "ünïcode"},
    ),
]


def old_dict(message: agent_pb2.Plan) -> dict[str, object]:
    """How the agent turned a received plan into JSON data before RunPlan."""
    return dict(
        json_format.MessageToDict(
            message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
    )


@pytest.mark.parametrize("message", MESSAGES, ids=range(len(MESSAGES)))
def test_round_trip_through_the_message(message: agent_pb2.Plan) -> None:
    plan = RunPlan.from_message(message)
    assert plan.to_message() == message
    wire = agent_pb2.Plan.FromString(plan.to_message().SerializeToString())
    assert RunPlan.from_message(wire) == plan


@pytest.mark.parametrize("message", MESSAGES, ids=range(len(MESSAGES)))
def test_to_dict_is_the_old_message_to_dict(message: agent_pb2.Plan) -> None:
    plan = RunPlan.from_message(message)
    assert plan.to_dict() == old_dict(message)
    # The store writes it with sorted keys: the same bytes as before.
    old = json.dumps({"plan": old_dict(message)}, indent=1, sort_keys=True)
    assert json.dumps({"plan": plan.to_dict()}, indent=1, sort_keys=True) == old
    assert [type(v) for v in plan.to_dict().values()] == [
        type(old_dict(message)[k]) for k in plan.to_dict()
    ]


@pytest.mark.parametrize("message", MESSAGES, ids=range(len(MESSAGES)))
def test_round_trip_through_json(message: agent_pb2.Plan) -> None:
    plan = RunPlan.from_message(message)
    assert RunPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    # A plan stored by the old agent loads as the plan it was.
    assert RunPlan.from_dict(json.loads(json.dumps(old_dict(message)))) == plan
    assert json_format.ParseDict(plan.to_dict(), agent_pb2.Plan()) == message


def test_maps_are_sorted_pairs_whatever_order_they_came_in() -> None:
    a = RunPlan(provider_options=(("b", "2"), ("a", "1")), metadata={"y": "1", "x": "2"})  # type: ignore[arg-type]
    b = RunPlan(provider_options=(("a", "1"), ("b", "2")), metadata=(("x", "2"), ("y", "1")))
    assert a == b
    assert hash(a) == hash(b)
    assert a.provider_options == (("a", "1"), ("b", "2"))
    assert a.metadata == (("x", "2"), ("y", "1"))


def test_a_missing_field_takes_the_wires_default() -> None:
    assert RunPlan.from_dict({}) == RunPlan()
    assert RunPlan.from_dict({"intra_op_threads": 2, "unknown": "x"}) == RunPlan(intra_op_threads=2)
    assert RunPlan().to_message() == agent_pb2.Plan()


def test_conversion_does_not_validate() -> None:
    message = agent_pb2.Plan(graph_optimization_level="fastest", provider_options={"x": "y"})
    plan = RunPlan.from_message(message)
    assert plan.graph_optimization_level == "fastest"
    assert plan.provider_options == (("x", "y"),)


def test_it_pickles_without_protobuf() -> None:
    plan = RunPlan.from_message(MESSAGES[-1])
    code = (
        "import pickle, sys; plan = pickle.loads(sys.stdin.buffer.read()); "
        "print(plan.intra_op_threads, any(m.startswith('google.protobuf') for m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], input=pickle.dumps(plan), capture_output=True, check=True
    )
    assert done.stdout.split() == [b"1024", b"False"]
