"""Sequences and maps on the wire (edgeopt.proto.tensors): what ZipMap, sequence outputs and
DictVectorizer inputs become, both ways, and the refusals for bytes and values that break it."""

from __future__ import annotations

import contextlib
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeopt.proto import tensors as wire

ZIPMAP = [{0: np.float32(0.25), 1: np.float32(0.75)}, {0: np.float32(1.0), 1: np.float32(0.0)}]


def roundtrip(value: object) -> object:
    dtype, shape, data = wire.to_wire(value)
    _, dtype, shape, _ = wire.check_header("v", dtype, shape, len(data), 1 << 20)
    return wire.from_wire(dtype, shape, data)


def test_a_zipmap_crosses_as_data_and_keeps_its_types() -> None:
    dtype, shape, data = wire.to_wire(ZIPMAP)
    assert (dtype, shape) == ("seq", (2,))
    back = wire.from_wire(dtype, shape, data)
    assert back == [{0: 0.25, 1: 0.75}, {0: 1.0, 1: 0.0}]
    assert wire.value_type(back) == wire.value_type(ZIPMAP) == "seq(map(int64,float32))"
    assert all(isinstance(k, int) for m in back for k in m)  # as ONNX Runtime gives them


def test_string_keys_sequences_of_tensors_nesting_and_empty_ones() -> None:
    assert roundtrip({"setosa": 0.5, "virginica": 0.5}) == {"setosa": 0.5, "virginica": 0.5}
    tensors = roundtrip([np.arange(3, dtype=np.int32), np.ones((2, 2), np.int32)])
    assert [t.tolist() for t in tensors] == [[0, 1, 2], [[1, 1], [1, 1]]]  # type: ignore[attr-defined]
    nested = roundtrip([[np.array(["a", "bc"], dtype=object)], []])
    assert nested[0][0].tolist() == ["a", "bc"] and nested[1] == []  # type: ignore[index]
    assert roundtrip([]) == [] and roundtrip({}) == {}
    assert wire.value_type([]) == "seq(?)" and wire.value_type({}) == "map(?,?)"


def test_onnx_runtime_types_in_the_wire_words() -> None:
    assert wire.onnx_value_type("seq(map(int64,tensor(float)))") == "seq(map(int64,float32))"
    assert wire.onnx_value_type("map(string,tensor(double))") == "map(str,float64)"
    assert wire.onnx_value_type("seq(tensor(float16))") == "seq(tensor(float16))"
    assert wire.onnx_value_type("tensor(string)") == "tensor(str)"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([{1: 0.5, "a": 0.3}], "a map's keys mix int64 and strings; ONNX maps have one key type"),
        ([{1: 0.5}, {"a": 0.5}], "a sequence's elements differ in type (map(int64,float64), "
         "map(str,float64)); ONNX sequences hold one type"),
        ({1.5: 2.0}, "a map key of type float: keys are all int64 or all strings"),
        ({True: 2.0}, "a map key of type bool: keys are all int64 or all strings"),
        ({"a": [1, 2]}, "a map's values must be scalars (numbers or strings)"),
        ([np.array([object()], dtype=object)], "an array of object objects is not a tensor"),
    ],
)  # fmt: skip
def test_values_the_encoding_cannot_carry_are_refused_in_words(value: object, message: str) -> None:
    with pytest.raises(wire.TensorError) as refused:
        wire.to_wire(value)
    assert str(refused.value) == message


def test_nesting_past_the_limit_is_refused_both_ways() -> None:
    deep: list[object] = [np.zeros(1, np.float32)]
    for _ in range(wire.MAX_DEPTH):
        deep = [deep]
    with pytest.raises(wire.TensorError, match="nest more than 8 deep"):
        wire.to_wire(deep)
    # Hand-made bytes: nine sequences of one, then a tensor.
    tensor = bytes([7]) + b"float32" + bytes([0]) + struct.pack("<Q", 4) + b"\0" * 4
    data = (b"S" + struct.pack("<I", 1)) * (wire.MAX_DEPTH + 1) + b"T" + tensor
    with pytest.raises(wire.TensorError, match="nest more than 8 deep"):
        wire.decode_value(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"X", "unknown value tag b'X' (T, S or M)"),
        (b"S" + struct.pack("<I", 1000), "a sequence claims 1000 elements in fewer bytes"),
        (b"S" + struct.pack("<I", 0) + b"junk", "4 bytes follow the value"),
        (b"T" + bytes([3]) + b"obj" + bytes([0]) + struct.pack("<Q", 0),
         "tensor 'element': dtype 'obj' is not one of"),
        (b"T" + bytes([7]) + b"float32" + bytes([1]) + struct.pack("<Q", 1 << 40)
         + struct.pack("<Q", 4), "a float32 tensor of shape [1099511627776] inside the value "
         "claims more bytes than the value's 26"),
        (b"T" + bytes([5]) + b"int64" + bytes([1]) + struct.pack("<Q", 2) + struct.pack("<Q", 8)
         + b"\0" * 8, "tensor 'element': 8 bytes do not fill shape [2] of int64 (16 bytes)"),
    ],
)  # fmt: skip
def test_bytes_that_break_the_grammar_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(wire.TensorError) as refused:
        wire.decode_value(data)
    assert str(refused.value).startswith(message)


def test_a_map_with_repeated_keys_or_uneven_lengths_is_refused() -> None:
    keys = wire.encode_value(np.array([1, 1], np.int64))[1:]
    values = wire.encode_value(np.array([0.5, 0.5], np.float32))[1:]
    with pytest.raises(wire.TensorError, match="a map's keys repeat"):
        wire.decode_value(b"M" + keys + values)
    short = wire.encode_value(np.array([0.5], np.float32))[1:]
    with pytest.raises(wire.TensorError, match="must be 1-D and as long"):
        wire.decode_value(b"M" + keys + short)
    floats = wire.encode_value(np.array([0.5, 1.5], np.float32))[1:]
    with pytest.raises(wire.TensorError, match="a map's keys are float32; they must be int64"):
        wire.decode_value(b"M" + floats + values)


def test_headers_of_sequences_and_maps_are_checked_before_the_bytes() -> None:
    with pytest.raises(wire.TensorError, match=r"shape must be \[elements\], got \[2, 2\]"):
        wire.check_header("p", "seq", (2, 2), 64, 1 << 20)
    with pytest.raises(wire.TensorTooLarge, match="over this agent's limit of 1024"):
        wire.check_header("p", "map", (3,), 4096, 1024)
    with pytest.raises(wire.TensorError, match="2 bytes cannot hold a seq"):
        wire.check_header("p", "seq", (0,), 2, 1024)
    dtype, shape, data = wire.to_wire(ZIPMAP)
    with pytest.raises(wire.TensorError, match=r"a seq of shape \[3\] holds 2 elements"):
        wire.from_wire(dtype, (3,), data)
    with pytest.raises(wire.TensorError, match="the bytes of a map hold seq"):
        wire.from_wire("map", shape, data)


def test_runs_join_as_one_output() -> None:
    assert wire.join_values([[{0: 1.0}], [{0: 2.0}]]) == [{0: 1.0}, {0: 2.0}]
    assert wire.join_values([{"a": 1.0}, {"a": 2.0}]) == [{"a": 1.0}, {"a": 2.0}]
    joined = wire.join_values([np.zeros((1, 3)), np.ones((1, 3))])
    assert joined.shape == (2, 3)
    assert wire.join_values([np.float32(1), np.float32(2)]).tolist() == [1.0, 2.0]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_decode_or_are_refused_never_crash(data: bytes) -> None:
    with contextlib.suppress(wire.TensorError):
        wire.decode_value(data)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.integers(-(2**63), 2**63 - 1),
                                st.floats(width=32, allow_nan=False), max_size=5),
                max_size=5))  # fmt: skip
def test_sequences_of_maps_round_trip(value: list[dict[int, float]]) -> None:
    back = roundtrip(value)
    assert isinstance(back, list)
    assert back == [{k: np.float64(v) for k, v in m.items()} for m in value]
