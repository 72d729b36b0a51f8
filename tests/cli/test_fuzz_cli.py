"""Fuzzing the host's file inputs through the CLI: a one-line error, never a traceback or a part.

Mutated ONNX models go to `edgeopt compress` and `edgeopt plan`, mutated `.npz` files to
`compress --calibration/--validate`, mutated inventories to `edgeopt --inventory`, mutated
device profiles to `edgeopt --profiles-dir`. Whatever the file holds, the command either
succeeds (a mutation can be harmless: a flipped bit in a doc string) or fails with exit status
1 and exactly one line on stderr, "Error: ...", naming what is wrong; no traceback ever, and no
output file, whole or partial, is left behind by a failure.

The mutations are of two kinds: blind ones on the bytes (bit flips, truncations, insertions,
overwrites, random bytes and random protobuf fields) and structured ones that keep the file
parseable but make a field wrong (a tensor whose data type or dims lie, a string that is not
UTF-8, an absurd input shape, a TOML value of the wrong type, a nested list 3000 deep).

Hypothesis runs each kind with a fixed seed (`derandomize`), so `make test` is reproducible;
the environment scales it for long runs:

    EDGEOPT_FUZZ_EXAMPLES=N   examples per input kind (default 60)
    EDGEOPT_FUZZ_SEED=S       a random seed instead of the fixed one (a soak wants new cases)
    EDGEOPT_FUZZ_REPORT=FILE  append one JSON line per test: cases run, tracebacks and partial
                              files seen, exit statuses (for benchmarks/RESULTS.md)
"""

from __future__ import annotations

import collections
import io
import json
import os
import re
import struct
import tempfile
import traceback
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
import tomlkit
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, example, given, seed, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import helper, numpy_helper

from edgeopt.host.cli import cli

EXAMPLES = int(os.environ.get("EDGEOPT_FUZZ_EXAMPLES", "60"))
SEED = os.environ.get("EDGEOPT_FUZZ_SEED")
REPORT = os.environ.get("EDGEOPT_FUZZ_REPORT")


def fuzz(test: Callable[..., None]) -> Callable[..., None]:
    """Hypothesis settings for every fuzz test: bounded, reproducible, no example database."""
    configured = settings(
        max_examples=EXAMPLES,
        deadline=None,  # a compression takes what it takes; no timed assertions here
        derandomize=SEED is None,
        database=None,
        suppress_health_check=[
            # tmp_path: each case makes its own folder in it (fresh); tally: counts across cases.
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )(test)
    return seed(int(SEED))(configured) if SEED is not None else configured


# ---- what every case must end in ----------------------------------------------------------


@dataclass
class Tally:
    """What one test's cases ended in, for the report line."""

    cases: int = 0
    tracebacks: int = 0
    partial_files: int = 0
    bad_messages: int = 0
    """Failures whose stderr was not one "Error:" line, or passed a crash on as a message."""
    exit_codes: collections.Counter[int] = field(default_factory=collections.Counter)


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    """Counts this test's cases; appends them to $EDGEOPT_FUZZ_REPORT when that is set."""
    t = Tally()
    yield t
    if REPORT:
        line = {
            "test": request.node.name,
            "examples_setting": EXAMPLES,
            "seed": SEED,
            "cases": t.cases,
            "tracebacks": t.tracebacks,
            "partial_files": t.partial_files,
            "bad_messages": t.bad_messages,
            "exit_codes": {str(k): v for k, v in sorted(t.exit_codes.items())},
        }
        with open(REPORT, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")


def invoke(tally: Tally, *args: str) -> Result:
    """Run the CLI in-process and hold its outcome to the rules every fuzz case shares.

    Exit status 0, or 1 with exactly one line "Error: ..." on stderr; no traceback anywhere.
    """
    result = CliRunner().invoke(cli, list(args))
    tally.cases += 1
    tally.exit_codes[result.exit_code] += 1
    escaped = result.exception is not None and not isinstance(result.exception, SystemExit)
    if escaped or "Traceback" in result.output:
        tally.tracebacks += 1
    if escaped:
        assert result.exc_info is not None
        shown = "".join(traceback.format_exception(*result.exc_info))
        pytest.fail(f"{args}: escaped as a traceback:\n{shown}")
    assert "Traceback" not in result.output, result.output
    assert result.exit_code in (0, 1), (result.exit_code, result.output)
    if result.exit_code == 1:
        lines = result.stderr.splitlines()
        one_line = len(lines) == 1 and lines[0].startswith("Error: ") and result.stdout == ""
        tally.bad_messages += not one_line
        assert one_line, (result.stdout, result.stderr)
    return result


def fresh(base: Path, name: str) -> Path:
    """A new empty folder under `base` for one case (hypothesis reuses the test's tmp_path)."""
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))


def error_line(result: Result) -> str:
    """The message of a failure, without click's "Error: "."""
    return result.stderr.removeprefix("Error: ").rstrip("\n")


# ---- a small real model to mutate ---------------------------------------------------------

F = onnx.TensorProto.FLOAT


def mlp() -> onnx.ModelProto:
    """x[N, 8] -> MatMul -> Add -> Relu -> MatMul -> y[N, 4]: quantizable, every pass runs."""
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
         helper.make_node("Add", ["h", "b1"], ["hb"], name="bias"),
         helper.make_node("Relu", ["hb"], ["r"], name="act"),
         helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2")],
        "mlp",
        [helper.make_tensor_value_info("x", F, ["N", 8])],
        [helper.make_tensor_value_info("y", F, ["N", 4])],
        initializer=[
            numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "w1"),
            numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b1"),
            numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "w2"),
        ],
        doc_string="a small multi-layer perceptron",
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="edgeopt-tests")  # fmt: skip
    model.ir_version = 8
    return model


BASE = mlp().SerializeToString()
STRINGS = [b"fc1", b"fc2", b"bias", b"act", b"mlp", b"edgeopt-tests", b"MatMul", b"Relu", b"w1",
           b"b1", b"hb", b"a small multi-layer perceptron"]  # fmt: skip


@st.composite
def blind_mutation(draw: st.DrawFn, base: bytes) -> bytes:
    """The bytes of `base` damaged without regard to their meaning."""
    data = bytearray(base)
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "overwrite", "random"]))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 16))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
    elif kind == "truncate":
        del data[draw(st.integers(0, len(data) - 1)) :]
    elif kind == "insert":
        i = draw(st.integers(0, len(data)))
        data[i:i] = draw(st.binary(min_size=1, max_size=64))
    elif kind == "overwrite":
        junk = draw(st.binary(min_size=1, max_size=32))
        i = draw(st.integers(0, len(data) - 1))
        data[i : i + len(junk)] = junk
    else:
        return draw(st.binary(max_size=2048))
    return bytes(data)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@st.composite
def protobuf_fields(draw: st.DrawFn) -> bytes:
    """Well-formed protobuf wire data with random field numbers, wire types and payloads."""
    out = bytearray()
    for _ in range(draw(st.integers(0, 12))):
        number = draw(st.integers(1, 25))
        wire = draw(st.sampled_from([0, 1, 2, 5]))
        out += _varint(number << 3 | wire)
        if wire == 0:
            out += _varint(draw(st.integers(0, 2**64 - 1)))
        elif wire == 1:
            out += draw(st.binary(min_size=8, max_size=8))
        elif wire == 5:
            out += draw(st.binary(min_size=4, max_size=4))
        else:
            payload = draw(st.one_of(st.binary(max_size=64), protobuf_fields()))
            out += _varint(len(payload)) + payload
    return bytes(out)


def _bad_utf8(data: bytes, name: bytes, junk: bytes) -> bytes:
    """`data` with the string `name` replaced by bytes of the same length that are not UTF-8."""
    i = data.find(name)
    return data[:i] + (junk * len(name))[: len(name)] + data[i + len(name) :]


@st.composite
def structured_mutation(draw: st.DrawFn) -> bytes:
    """A model that still parses as protobuf, with one field made wrong."""
    model = mlp()
    g = model.graph
    kind = draw(st.sampled_from([
        "ir_version", "opset", "op_type", "data_type", "dims", "raw_data", "extra_input",
        "attribute", "elem_type", "input_dims", "external_data", "no_output", "other_message",
        "utf8",
    ]))  # fmt: skip
    if kind == "ir_version":
        model.ir_version = draw(st.sampled_from([0, 1, 2, 3, 99, 2**62]))
    elif kind == "opset":
        model.opset_import[0].version = draw(st.sampled_from([0, 1, 5, 99, 2**40]))
    elif kind == "op_type":
        draw(st.sampled_from(list(g.node))).op_type = draw(
            st.sampled_from(["", "Nope", "Conv", "Gemm", "If", "Loop", "MatMul", "Cast"])
        )
    elif kind == "data_type":
        tensor = draw(st.sampled_from(list(g.initializer)))
        tensor.data_type = draw(st.sampled_from([0, 2, 3, 7, 8, 9, 10, 11, 16, 17, 99, 2**20]))
    elif kind == "dims":
        tensor = draw(st.sampled_from(list(g.initializer)))
        del tensor.dims[:]
        tensor.dims.extend(draw(st.lists(st.sampled_from([-1, 0, 1, 3, 2**31, 2**40]),
                                         max_size=4)))  # fmt: skip
    elif kind == "raw_data":
        tensor = draw(st.sampled_from(list(g.initializer)))
        tensor.raw_data = tensor.raw_data[: draw(st.integers(0, len(tensor.raw_data)))]
    elif kind == "extra_input":
        draw(st.sampled_from(list(g.node))).input.append(
            draw(st.sampled_from(["missing", "", "x", "y", "w1"]))
        )
    elif kind == "attribute":
        draw(st.sampled_from(list(g.node))).attribute.append(helper.make_attribute(
            draw(st.sampled_from(["axis", "alpha", "perm", "transA", "to"])),
            draw(st.sampled_from([1, -1, 1.5, "s", [1, 2], [0.5]])),
        ))  # fmt: skip
    elif kind == "elem_type":
        value_info = draw(st.sampled_from([*g.input, *g.output]))
        value_info.type.tensor_type.elem_type = draw(st.sampled_from([0, 6, 7, 8, 9, 13, 99]))
    elif kind == "input_dims":
        dims = draw(st.lists(st.sampled_from([-5, 0, 1, 8, 2**31, 2**40, 2**62]), max_size=6))
        shape = g.input[0].type.tensor_type.shape
        del shape.dim[:]
        for value in dims:
            shape.dim.add().dim_value = value
    elif kind == "external_data":
        tensor = draw(st.sampled_from(list(g.initializer)))
        tensor.ClearField("raw_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        entries = draw(st.sampled_from([
            [("location", "")], [("location", "missing.bin")], [("location", "weights.bin"),
            ("offset", "x")], [("location", "weights.bin"), ("length", "99999999999")],
            [("location", "weights.bin"), ("offset", "-8")], [("location", "weights.bin")],
        ]))  # fmt: skip
        for key, text in entries:
            entry = tensor.external_data.add()
            entry.key, entry.value = key, text
    elif kind == "no_output":
        del g.output[:]
    elif kind == "other_message":
        # Valid protobuf of another type, read as a model: fields land with the wrong types.
        other = draw(st.sampled_from([g, g.node[0], g.initializer[0], g.input[0]]))
        return bytes(other.SerializeToString())
    data = bytes(model.SerializeToString())
    if kind == "utf8" or draw(st.booleans()):
        name = draw(st.sampled_from([s for s in STRINGS if s in data]))
        junk = draw(st.sampled_from([b"\xff", b"\xfe\x80", b"\xc3", b"\xed\xa0\x80", b"\x80"]))
        data = _bad_utf8(data, name, junk)
    return data


MODELS = st.one_of(blind_mutation(BASE), protobuf_fields(), structured_mutation())


def _check_compressed(tally: Tally, result: Result, folder: Path, out: Path) -> None:
    """On success exactly the output, a loadable model; on failure nothing at all."""
    left = sorted(p.name for p in folder.iterdir())
    expected = [out.name] if result.exit_code == 0 else []
    if left != expected:
        tally.partial_files += 1
    assert left == expected, (result.output, left)
    if result.exit_code == 0:
        # What compress promises: ONNX Runtime loads it. (Not onnx's checker: the fp16
        # converter appends its input Casts after their users, which ONNX Runtime sorts.)
        onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])


LEAKED = re.compile(
    r"\b(TypeError|AttributeError|KeyError|IndexError|UnicodeDecodeError|UnicodeError|"
    r"AssertionError|NameError|RecursionError|MemoryError|ZeroDivisionError|OverflowError): "
)
"""A crash passed on as a message: code met input nobody checked (one flipped bit in a name gave
"TypeError: can't concat str to bytes"). A library's ValueError or RuntimeError with its own
words ("Unable to find data type for weight_name") is a refusal, which the passes pass on."""


def _check_model_message(tally: Tally, result: Result, model: Path) -> None:
    """A failure names the user's file, or at least does not pass a crash on as its message."""
    message = error_line(result)
    if result.exit_code == 1 and not message.startswith(f"{model}: "):
        tally.bad_messages += bool(LEAKED.search(message))
        assert not LEAKED.search(message), message


def _with_input_dims(*dims: int) -> bytes:
    model = mlp()
    shape = model.graph.input[0].type.tensor_type.shape
    del shape.dim[:]
    for value in dims:
        shape.dim.add().dim_value = value
    return bytes(model.SerializeToString())


# What fuzzing found, kept as fixed cases: a node name that is not UTF-8 ("normalize failed on
# model.onnx: UnicodeDecodeError", or from the quantizer "TypeError: can't concat str to
# bytes"), and an input declared [2**40, 8] (a MemoryError traceback from the smoke check).
@example(data=_bad_utf8(BASE, b"fc1", b"\xff"), precision="int8-dynamic")
@example(data=_bad_utf8(BASE, b"a small", b"\xed\xa0\x80"), precision="fp16")
@example(data=_with_input_dims(2**40, 8), precision="int8-dynamic")
@fuzz
@given(data=MODELS, precision=st.sampled_from(["fp32", "fp16", "int8-dynamic", "int4-weight"]))
def test_compress_mutated_models(data: bytes, precision: str, tmp_path: Path, tally: Tally) -> None:
    case = fresh(tmp_path, "case")
    model = case / "model.onnx"
    model.write_bytes(data)
    (case / "weights.bin").write_bytes(bytes(64))  # what external-data mutations point at
    outputs = fresh(tmp_path, "out")
    out = outputs / "compressed.onnx"
    result = invoke(tally, "compress", str(model), "--precision", precision, "-o", str(out))
    _check_compressed(tally, result, outputs, out)
    _check_model_message(tally, result, model)


@example(data=_bad_utf8(BASE, b"fc1", b"\xff"))
@fuzz
@given(data=MODELS)
def test_plan_mutated_models(data: bytes, tmp_path: Path, tally: Tally) -> None:
    model = fresh(tmp_path, "case") / "model.onnx"
    model.write_bytes(data)
    result = invoke(tally, "plan", str(model), "--profile", "pi4", "--json")
    _check_model_message(tally, result, model)


# ---- .npz inputs --------------------------------------------------------------------------


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)  # object arrays too: the loader must refuse them
    return buffer.getvalue()


def _npz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, content in members.items():
            z.writestr(name, content)
    return buffer.getvalue()


def _npy_header(shape: tuple[int, ...], descr: str = "<f4", version: int = 1) -> bytes:
    """A .npy header declaring `shape`, with no data behind it."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}"
    pad = 64 - (10 + len(text) + 1) % 64
    header = (text + " " * pad + "\n").encode()
    size = struct.pack("<H", len(header)) if version == 1 else struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + size + header


GOOD_SAMPLES = np.random.default_rng(1).random((16, 8)).astype(np.float32)
GOOD_NPZ = _npz({"x.npy": _npy(GOOD_SAMPLES)})

ARRAYS = st.one_of(
    hnp.arrays(
        dtype=st.one_of(hnp.scalar_dtypes(), hnp.byte_string_dtypes(), hnp.unicode_string_dtypes()),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=9),
    ),
    # Float samples of the right shape whose values may be anything a float can be.
    hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 6), st.just(8)),
        elements=st.floats(width=32, allow_nan=True, allow_infinity=True),
    ),
    st.just(np.array([{"a": 1}, None], dtype=object)),
)


@st.composite
def npz_files(draw: st.DrawFn) -> bytes:
    """An `.npz` that may be anything from right to not a zip at all."""
    kind = draw(st.sampled_from(["arrays", "garbage_member", "huge_shape", "blind", "not_zip"]))
    if kind == "arrays":
        # Any name a zip member can have (NUL ends a name; "/" makes folders).
        chars = st.characters(codec="utf-8", exclude_characters="\x00/")
        names = st.one_of(st.sampled_from(["x", "labels", "y"]), st.text(chars, max_size=8))
        members = draw(st.dictionaries(names, ARRAYS, min_size=1, max_size=3))
        return _npz({f"{k}.npy": _npy(v) for k, v in members.items()})
    if kind == "garbage_member":
        name = draw(st.sampled_from(["x.npy", "x", "labels.npy"]))
        content = draw(st.one_of(st.binary(max_size=200), st.just(b"\x93NUMPY\x01\x00")))
        return _npz({name: content, **({} if name == "x.npy" else {"x.npy": _npy(GOOD_SAMPLES)})})
    if kind == "huge_shape":
        shape = draw(st.sampled_from([(2**40, 8), (2**62, 8), (10**6, 8), (8, 2**33), (-1, 8)]))
        descr = draw(st.sampled_from(["<f4", "<f8", "|O", "<U9", "|V1000000000"]))
        return _npz({"x.npy": _npy_header(shape, descr, draw(st.sampled_from([1, 2])))})
    if kind == "blind":
        return draw(blind_mutation(GOOD_NPZ))
    return draw(st.binary(max_size=512))


@pytest.fixture(scope="module")
def mlp_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unmutated model, for the data fuzzing."""
    path = tmp_path_factory.mktemp("mlp") / "mlp.onnx"
    path.write_bytes(BASE)
    return path


# What fuzzing found, kept as fixed cases (each ended in a traceback or an unhelpful line):
# an empty file ("Aborted!": numpy's EOFError), a header declaring 2**40 rows (MemoryError), a
# member that is not a .npy (AttributeError on bytes), a plain .npy (TypeError), NaN samples
# (ONNX Runtime's calibrator: "AssertionError: scale issue"), labels of shape [] (TypeError).
@example(data=b"", purpose="calibration")
@example(data=_npz({"x.npy": _npy_header((2**40, 8))}), purpose="validation")
@example(data=_npz({"x.npy": b"not an array"}), purpose="validation")
@example(data=_npy(GOOD_SAMPLES), purpose="calibration")
@example(data=_npz({"x.npy": _npy(np.full((4, 8), np.nan, np.float32))}), purpose="calibration")
@example(
    data=_npz({"x.npy": _npy(GOOD_SAMPLES), "labels.npy": _npy(np.array(3))}), purpose="calibration"
)
# From `make soak` (a random seed): calibration samples of 5.3e37 set int8-static's scales so that
# it overflows where fp32 does not; the one line says so (the test's oracle knew only dynamic).
@example(data=_npz({"x.npy": _npy(np.frombuffer(b"\x0e&\x1f~" * 8, np.float32).reshape(1, 8))}),
         purpose="calibration")  # fmt: skip
@fuzz
@given(data=npz_files(), purpose=st.sampled_from(["calibration", "validation"]))
def test_compress_mutated_data(
    data: bytes, purpose: str, mlp_file: Path, tmp_path: Path, tally: Tally
) -> None:
    path = fresh(tmp_path, "case") / "data.npz"
    path.write_bytes(data)
    outputs = fresh(tmp_path, "out")
    out = outputs / "compressed.onnx"
    if purpose == "calibration":
        args = ["--precision", "int8-static", "--calibration", str(path)]
    else:
        args = ["--precision", "int8-dynamic", "--validate", str(path)]
    result = invoke(tally, "compress", str(mlp_file), *args, "-o", str(out))
    _check_compressed(tally, result, outputs, out)
    if result.exit_code == 1:
        # Nothing else is wrong with this model: the message is about the data file, or (finite
        # values near float32's limits, in the validation data or in calibration data that sets
        # int8-static's scales) about the variant overflowing where fp32 does not.
        message = error_line(result)
        assert message.startswith(f"{purpose} data {path}: ") or re.fullmatch(
            r"int8-(dynamic|static) computes inf/NaN on \d+ of \d+ samples where fp32 does "
            r"not: keep "
            r"fp32 or try another precision",
            message,
        ), message


# ---- inventories --------------------------------------------------------------------------

TOML_SCALARS = st.one_of(
    st.text(max_size=20),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    st.booleans(),
)


def _nested(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        inner, st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    )


# Two levels of lists and tables, spelled out: st.recursive with a random seed trips
# hypothesis's check that `extend` uses its argument (a HypothesisDeprecationWarning).
TOML_VALUES = _nested(_nested(TOML_SCALARS))
KEYS = st.one_of(st.sampled_from(["pi", "rk-01", "lab", "a.b", "", " "]), st.text(max_size=10))
_ODD_ADDRESSES = [
    "[::1]:50051", "h:0", "h:65536", "h:", ":1", "h", "h:\u00b2", "h:\u0661\u0662", "h:-1",
    "h: 1", "h:1\n", "h:99999999999999999999",
]  # fmt: skip
ADDRESSES = st.one_of(
    st.just("127.0.0.1:50051"), st.sampled_from(_ODD_ADDRESSES), st.text(max_size=20)
)


def _sometimes(draw: st.DrawFn, valid: st.SearchStrategy[Any]) -> Any:
    """A valid value most of the time, else any TOML value (the wrong type).

    Mostly valid, so that a case gets past its first field: parsing stops at the first error.
    """
    return draw(TOML_VALUES) if _one_in_ten(draw) else draw(valid)


def _one_in_ten(draw: st.DrawFn) -> bool:
    # Not 0: hypothesis favours the ends of a range, and would pick 0 far more often.
    return bool(draw(st.integers(0, 9)) == 5)


@st.composite
def inventories(draw: st.DrawFn) -> dict[str, Any]:
    """An inventory's data: devices and groups with values right, wrong or absent."""
    devices: dict[str, Any] = {}
    for name in draw(st.lists(KEYS, max_size=4, unique=True)):
        table: dict[str, Any] = {}
        for key, valid in [
            ("address", ADDRESSES),
            ("profile", st.sampled_from(["pi4", "rk3588", "nope"])),
            ("tags", st.lists(st.text(max_size=6), max_size=3)),
            ("token_file", st.sampled_from(["t", "~/t", "~nosuchuser-fuzz/t", "", "/", "a\x00b"])),
            ("ssh", st.sampled_from(["pi@board", "board:22", ""])),
            ("extra", TOML_VALUES),
        ]:
            if key == "address" or draw(st.booleans()):  # absent is wrong only for address
                table[key] = _sometimes(draw, valid)
        devices[name] = draw(TOML_VALUES) if _one_in_ten(draw) else table
    data: dict[str, Any] = {"devices": devices}
    if draw(st.booleans()):
        names = st.one_of(st.sampled_from(list(devices) or ["ghost"]), st.text(max_size=6))
        data["groups"] = draw(
            st.dictionaries(KEYS, st.one_of(st.lists(names, max_size=3), TOML_VALUES), max_size=3)
        )
    if _one_in_ten(draw):
        data = {**data, "devices": draw(TOML_VALUES)}
    return data


VALID_INVENTORY = """\
[devices.pi4-kitchen]
address = "192.168.1.40:50051"
profile = "pi4"
tags = ["shelf"]
token_file = "tokens/pi4-kitchen"
[devices.rk-01]
ssh = "edge@rk-01"
[groups]
lab = ["pi4-kitchen", "rk-01"]
"""


def _deep(depth: int) -> str:
    return "[devices.a]\naddress = " + "[" * depth + "]" * depth + "\n"


INVENTORY_TEXTS = st.one_of(
    inventories().map(tomlkit.dumps),
    blind_mutation(VALID_INVENTORY.encode()).map(lambda b: b.decode("utf-8", "replace")),
    st.integers(1, 5000).map(_deep),
)


# What fuzzing and reading found, kept as fixed cases: a port of non-ASCII digits (ValueError
# from int()), "~user/" of an unknown user (RuntimeError from expanduser), lists nested 3000 deep
# (RecursionError in tomllib), a device name holding a newline (a two-line error).
@example(text='[devices.a]\naddress = "h:\u00b2"\n')
@example(text='[devices.a]\naddress = "h:1"\ntoken_file = "~nosuchuser-fuzz/t"\n')
@example(text=_deep(3000))
@example(text='[devices."a\\nb"]\naddress = "h:1"\n')
@fuzz
@given(text=st.one_of(INVENTORY_TEXTS, blind_mutation(VALID_INVENTORY.encode())))
def test_mutated_inventories(text: str | bytes, tmp_path: Path, tally: Tally) -> None:
    path = fresh(tmp_path, "case") / "edgeopt.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    # A name no inventory here holds: a good inventory ends in "no device named ...", a bad
    # one in what is wrong with it; no agent is ever contacted.
    result = invoke(tally, "--inventory", str(path), "devices", "show", "no-such-device-fuzz")
    assert result.exit_code == 1
    message = error_line(result)
    assert message.startswith((f"{path}: ", "no device, group, tag or profile named")), message


# ---- device profiles ----------------------------------------------------------------------

PI4 = (Path(__file__).parents[2] / "device_profiles" / "pi4.toml").read_text(encoding="utf-8")


@st.composite
def profiles(draw: st.DrawFn) -> dict[str, Any]:
    """A profile's data: pi4's, with keys changed, removed, retyped or added."""
    data: dict[str, Any] = tomlkit.parse(PI4).unwrap()
    data["name"] = "fuzz"
    for _ in range(draw(st.integers(1, 4))):
        key = draw(st.sampled_from([*data, "clusters", "unknown", "a\nb"]))
        action = draw(st.sampled_from(["drop", "retype", "cluster", "value"]))
        if action == "drop":
            data.pop(key, None)
        elif action == "retype":
            data[key] = draw(TOML_VALUES)
        elif action == "cluster":
            data["clusters"] = draw(st.lists(st.one_of(
                st.fixed_dictionaries({"core": TOML_VALUES, "cores": st.integers(-3, 2**70)},
                                      optional={"max_freq_mhz": TOML_VALUES, "x": TOML_VALUES}),
                TOML_VALUES,
            ), max_size=3))  # fmt: skip
        else:
            data[key] = draw(st.sampled_from([
                "aarch64", "x86_64", "fuzz", "", ["neon", "nope"], [1, 2], [2**70], -1,
            ]))  # fmt: skip
    return data


PROFILE_TEXTS = st.one_of(
    profiles().map(tomlkit.dumps),
    blind_mutation(PI4.replace('"pi4"', '"fuzz"').encode()),
    st.integers(1, 5000).map(lambda d: 'name = "fuzz"\nnotes = ' + "[" * d + "]" * d + "\n"),
)


# Fixed cases: lists nested 3000 deep (RecursionError), an unknown key holding a newline (a
# two-line error).
@example(text='name = "fuzz"\nnotes = ' + "[" * 3000 + "]" * 3000 + "\n", as_json=False)
@example(text=PI4.replace('"pi4"', '"fuzz"') + '"a\\nb" = 1\n', as_json=False)
@fuzz
@given(text=PROFILE_TEXTS, as_json=st.booleans())
def test_mutated_profiles(text: str | bytes, as_json: bool, tmp_path: Path, tally: Tally) -> None:
    folder = fresh(tmp_path, "profiles")
    path = folder / "fuzz.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    json_flag = ["--json"] if as_json else []
    result = invoke(tally, "--profiles-dir", str(folder), "profiles", "show", "fuzz", *json_flag)
    if result.exit_code == 1:
        assert error_line(result).startswith(f"{path}: "), result.stderr
    elif as_json:
        assert json.loads(result.stdout)["name"] == "fuzz"
