"""Which nodes carry a quantized model's error, and the fewest to keep float so the gate holds.

Ranking (`rank`): how much each converted node alone hurts the output. For each node, a copy
of the quantized graph in which every other converted node reads its inputs and weights
unquantized (their DequantizeLinear inputs rewired to the float tensors, which ONNX Runtime's
QDQ format keeps in the graph) runs on a few samples; the output's signal-to-quantization-noise
ratio (SQNR, dB, against the fp32 reference) says what that node alone costs. Nodes are ranked
by that cost, largest first; those that could not be measured (renamed by the quantizer) last.
Measured here on PP-OCR's detector, the other ways ranked worse: the SQNR a node loses from
its input to its output (ONNX Runtime's QDQ debugging tools) misses how later layers amplify an
early error, and keeping one node float in the full variant hides nodes whose errors cancel
(their "gain" came out negative, and the gate still failed with 62 of 64 nodes float). The
copies cost one session each, no quantization; the ranking is cached by the two models' and the
data's digests.

Search (`search`): keep the top k of the ranking float, for the smallest k whose variant passes
the gate, by bisection over k (each probe is one real quantization and validation, so log2 of
the node count of them): gains measured one node at a time do not add up exactly, and
bisection keeps the probes few without assuming they do. A fixed count (`--keep-float N`)
keeps the top N.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeopt.host.compress import data as datasets
from edgeopt.host.compress import onnxfile as onnx_model
from edgeopt.host.compress.cache import default_dir
from edgeopt.host.compress.keep_float import CONVERTED, name_unnamed, original
from edgeopt.host.compress.quantize import optimize_basic
from edgeopt.host.compress.quiet import OutputLog, captured
from edgeopt.host.compress.runtime import quiet_logger, session_options
from edgeopt.host.compress.workflow import (
    CompressionReport,
    CompressRequest,
    compress,
    write_output,
)
from edgeopt.host.errors import AccuracyGateFailed, CompressionError, DataError, UnsupportedModel

__all__ = ["SAMPLES", "MixedResult", "NodeGain", "Ranking", "rank", "search"]

SAMPLES = 8
"""Samples the ranking runs (a ranking on fewer says it is thin)."""


@dataclass(frozen=True)
class NodeGain:
    """How much one converted node, quantized alone, hurts the output."""

    node: str
    op_type: str
    output_sqnr: float
    """The output's SQNR against fp32 with only this node quantized, dB (NaN: not measured)."""
    gain: float
    """What keeping it float gives back: the SQNR it costs alone, dB (EXACT - output_sqnr)."""


@dataclass(frozen=True)
class Ranking:
    """Converted nodes, most harmful first."""

    nodes: tuple[NodeGain, ...]
    samples: int
    """Samples it was measured on."""
    output_sqnr: float = math.nan
    """The full variant's output SQNR against fp32, dB."""

    @property
    def thin(self) -> bool:
        """Measured on too few samples to trust the order."""
        return self.samples < 2

    def top(self, k: int) -> tuple[str, ...]:
        """The k most harmful nodes' names."""
        return tuple(n.node for n in self.nodes[:k])


EXACT = 200.0
"""SQNR given to a tensor with no error at all, dB."""


def _sqnr(reference: np.ndarray, other: np.ndarray) -> float:
    ref = reference.astype(np.float64).ravel()
    noise = float(np.linalg.norm(ref - other.astype(np.float64).ravel()))
    signal = float(np.linalg.norm(ref))
    if noise == 0.0:
        return EXACT
    return 20 * math.log10(max(signal, 1e-30) / noise)


def _outputs(session: Any, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    """The float outputs of every feed, flattened and joined."""
    names = [o.name for o in session.get_outputs() if o.type == "tensor(float)"]
    runs = [session.run(names, feed) for feed in feeds]
    return np.concatenate([np.asarray(v, np.float64).ravel() for run in runs for v in run])


def _session(model: onnx.ModelProto) -> Any:
    import onnxruntime as ort  # noqa: PLC0415

    with quiet_logger():
        return ort.InferenceSession(model.SerializeToString(), session_options(threads=1),
                                    providers=["CPUExecutionProvider"])  # fmt: skip


def _unquantized(
    quant: onnx.ModelProto,
    pairs: list[tuple[onnx.NodeProto, onnx.NodeProto]],
    float_weights: dict[str, onnx.TensorProto],
    quantized: frozenset[str] = frozenset(),
) -> onnx.ModelProto:
    """A copy of `quant` in which the nodes of `pairs` (quantized node, its float twin) run float.

    Each reads its inputs before their QuantizeLinear and its weights and bias in float (under
    names of their own: the quantized graph gives the original names to the DequantizeLinear
    outputs), and what read its output through a QuantizeLinear/DequantizeLinear pair reads it
    directly, unless that reader stays quantized (its output is in `quantized`).
    """
    copy = onnx.ModelProto()
    copy.CopyFrom(quant)
    graph = copy.graph
    producer = {out: n for n in graph.node for out in n.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for name in n.input:
            readers.setdefault(name, []).append(n)
    have = {t.name for t in graph.initializer}
    for twin, float_node in pairs:
        target = producer[twin.output[0]]
        for index, name in enumerate(target.input):
            dq = _from_dq(producer, name)
            if dq is None:
                continue
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                target.input[index] = q.input[0]  # the activation before quantization
            elif index < len(float_node.input) and float_node.input[index] in float_weights:
                fresh = f"{float_node.input[index]}__float"
                if fresh not in have:
                    weight = onnx.TensorProto()
                    weight.CopyFrom(float_weights[float_node.input[index]])
                    weight.name = fresh
                    graph.initializer.append(weight)
                    have.add(fresh)
                target.input[index] = fresh
        out = target.output[0]
        for q in [r for r in readers.get(out, []) if r.op_type == "QuantizeLinear"]:
            for dq in [r for r in readers.get(q.output[0], []) if r.op_type == "DequantizeLinear"]:
                for reader in readers.get(dq.output[0], []):
                    if reader.output and reader.output[0] in quantized:
                        continue  # it reads its input quantized: its own QuantizeLinear
                    reader.input[:] = [out if x == dq.output[0] else x for x in reader.input]
    return copy


def _from_dq(producer: dict[str, onnx.NodeProto], name: str) -> onnx.NodeProto | None:
    node = producer.get(name)
    return node if node is not None and node.op_type == "DequantizeLinear" else None


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def rank(
    reference: Path, quantized: Path, data_path: Path, precision: str, samples: int = SAMPLES
) -> Ranking:
    """Rank the nodes `precision` converted in `quantized` by what keeping each float gives back.

    Cached. Raises:
        DataError: the data does not fit the model.
    """
    key = _key(onnx_model.digest(reference), onnx_model.digest(quantized),
               onnx_model.digest(data_path), precision, samples, "sensitivity-8")  # fmt: skip
    cached = default_dir() / "sensitivity" / key[:2] / f"{key}.json"
    if cached.is_file():
        stored = json.loads(cached.read_text())
        return Ranking(tuple(NodeGain(**n) for n in stored["nodes"]), stored["samples"],
                       stored["output_sqnr"])  # fmt: skip
    named = onnx_model.load(reference, check=False)
    name_unnamed(named)  # the names --keep-float resolves
    data = datasets.load(data_path, named, purpose="sensitivity")
    # The float graph the quantizer started from: ONNX Runtime's basic optimization folded
    # BatchNormalization into the convolutions (same node names, BN's output names).
    with tempfile.TemporaryDirectory() as scratch:
        float_model = optimize_basic(named, Path(scratch), [])
    quant_model = onnx_model.load(quantized, check=False)
    feeds = list(data.batches(data.fixed_batch or 1))[:samples]
    kinds = CONVERTED[precision]
    nodes = [n for n in float_model.graph.node if n.name and (kinds is None or n.op_type in kinds)]
    weights = {t.name: t for t in float_model.graph.initializer}
    # A node of the quantized graph is found by what it computes: its output tensor's name
    # (the quantizer keeps it; node names it may not).
    made = {n.output[0]: n for n in quant_model.graph.node if n.output}
    expected = _outputs(_session(float_model), feeds)
    full = _sqnr(expected, _outputs(_session(quant_model), feeds))
    # Optimization renamed what it fused (a MatMul and its Add became `<MatMul>/MatMulAddFusion`):
    # the ranking names the node of the reference, which --keep-float resolves.
    reference_names = {n.name for n in named.graph.node}
    found = {n.name: original(n.name, reference_names) for n in nodes}
    known = {k: v for k, v in found.items() if v is not None}
    nodes = [n for n in nodes if n.name in known]
    pairs, unmeasured = [], []
    for node in nodes:
        twin = made.get(node.output[0])
        if twin is not None and twin.op_type == node.op_type:
            pairs.append((twin, node))
        else:
            unmeasured.append(NodeGain(known[node.name], node.op_type, math.nan, math.nan))
    gains = []
    for index, (_, node) in enumerate(pairs):
        # This node alone quantized: every other one reads float.
        alone = _unquantized(quant_model, pairs[:index] + pairs[index + 1 :], weights,
                             frozenset({pairs[index][0].output[0]}))  # fmt: skip
        sqnr = _sqnr(expected, _outputs(_session(alone), feeds))
        gains.append(NodeGain(known[node.name], node.op_type, sqnr, EXACT - sqnr))
    gains.sort(key=lambda g: -g.gain)
    ranking = Ranking((*gains, *unmeasured), len(feeds), full)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    tmp.write_text(json.dumps({"nodes": [asdict(n) for n in ranking.nodes],
                               "samples": len(feeds), "output_sqnr": full}))  # fmt: skip
    tmp.replace(cached)
    return ranking


@dataclass(frozen=True)
class MixedResult:
    """A mixed-precision variant and how it was found."""

    report: CompressionReport
    ranking: Ranking
    kept: tuple[str, ...]
    probes: int
    """Quantizations made while searching."""
    seconds: float


def search(request: CompressRequest, count: int | str, log: OutputLog | None = None) -> MixedResult:
    """The variant that keeps the top `count` nodes of the ranking float.

    With `count` "auto": the fewest that pass the request's gate (bisection over the ranking).

    Raises:
        DataError: no data to rank on (auto needs --validate and a gate).
        AccuracyGateFailed: no number of kept nodes meets the gate (nothing written).
    """
    start = time.monotonic()
    if request.precision != "int8-static":
        raise UnsupportedModel(
            f"--keep-float N|auto ranks the nodes of int8-static models (their QDQ graph lets "
            f"each node be measured alone); for {request.precision}, name the nodes"
        )
    data_path = request.validation or request.calibration
    if data_path is None:
        raise DataError("--keep-float N|auto ranks nodes on data: give --validate or --calibration")
    if count == "auto" and request.validation is None:
        raise DataError("--keep-float auto needs --validate DATA.npz and a gate to meet")
    plain = replace(request, keep_float=(), keep_float_search="", output=None, validation=None)
    reference = compress(replace(plain, precision="fp32"), log=log).artifact
    full = compress(plain, log=log).artifact
    with captured(log or OutputLog(), "sensitivity ranking"):
        ranking = rank(reference, full, Path(data_path), request.precision)
    probes = 0

    def make(k: int) -> CompressionReport:
        nonlocal probes
        probes += 1
        variant = replace(request, keep_float=ranking.top(k), keep_float_search="", output=None)
        return compress(variant, log=log)

    def done(report: CompressionReport, k: int) -> MixedResult:
        if request.output is not None:  # the answer only: probes write nothing
            write_output(report.artifact, request.output)
            report = replace(report, output=request.output)
        return MixedResult(report, ranking, ranking.top(k), probes, time.monotonic() - start)

    if count != "auto":
        k = int(count)
        return done(make(k), k)
    made: dict[int, CompressionReport] = {}
    last: Exception | None = None
    lo, hi = 0, len(ranking.nodes)  # the answer lies in [lo, hi]; hi keeps every node float
    while lo < hi:
        mid = (lo + hi) // 2
        try:
            made[mid] = make(mid)
            hi = mid
        except (AccuracyGateFailed, CompressionError) as exc:  # (a variant that cannot be made)
            last, lo = exc, mid + 1
    if lo not in made:  # every probe failed: lo is all of them, which converts nothing
        n = len(ranking.nodes)
        gate = last if isinstance(last, AccuracyGateFailed) else None
        raise AccuracyGateFailed(
            gate.metric if gate else "cosine", gate.value if gate else float("nan"),
            gate.limit if gate else float("nan"),
            f"no set of nodes kept float meets the gate: with the {max(n - 1, 0)} most harmful "
            f"of {n} kept float, {last}",
        )  # fmt: skip
    return done(made[lo], lo)
