"""Capabilities survive the wire and JSON unchanged; unknown stays unknown."""

from __future__ import annotations

import json

from edgeopt.boardfacts.capabilities import Sources, collect
from edgeopt.proto.capabilities import (
    ISA_FEATURES,
    Capabilities,
    from_dict,
    from_message,
    to_dict,
    to_message,
)
from edgeopt.proto.v1 import agent_pb2
from tests.conftest import board


def test_round_trip_through_protobuf_and_json() -> None:
    caps = collect(Sources.captured(rootfs=board("rk3588")))
    wire = agent_pb2.Capabilities.FromString(to_message(caps).SerializeToString())
    assert from_message(wire) == caps
    assert from_dict(json.loads(json.dumps(to_dict(caps)))) == caps


def test_unknown_numbers_stay_unknown_on_the_wire() -> None:
    wire = to_message(Capabilities(arch="aarch64"))
    assert not wire.HasField("memory_total_bytes")
    back = from_message(agent_pb2.Capabilities.FromString(wire.SerializeToString()))
    assert back.memory_total_bytes is None and back.onnxruntime.max_opset is None
    zero = to_message(Capabilities(memory_available_bytes=0))
    assert from_message(zero).memory_available_bytes == 0  # zero is a value, not unknown


def test_agent_tables_only_emit_known_features() -> None:
    from edgeopt.boardfacts.cpu import ARM_FEATURES, X86_FEATURES

    assert set(ARM_FEATURES.values()) | set(X86_FEATURES.values()) <= ISA_FEATURES
