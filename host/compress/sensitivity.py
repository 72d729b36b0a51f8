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
data's digests. fp16 and int8-dynamic are ranked on the float graph with each node's rounding
emulated (`rank_emulated`).

Search (`search`): keep the top k of the ranking float, for the smallest k whose variant
passes the gate, by bisection over k (each probe is one real quantization and validation, so
log2 of the node count of them): gains measured one node at a time do not add up exactly, and
bisection keeps the probes few without assuming they do (a greedy walk would make one variant
per node kept). For int8 the point is speed, and keeping a node float costs its multiply-adds
at float speed: a second bisection runs over the nodes ordered by what each gives back per
multiply-add (`cheapest_first`), limited to prefixes lighter than the first answer, and the
lighter answer wins. Neither order wins everywhere (benchmarks/mixed.py, vs_olive.py): on
PP-OCR's recognizer the first took 25 of 51 nodes holding 69 % of the multiply-adds and kept
0.3 of int8's speed-up, the second 28 nodes holding 6 % and all of it; on MiniLM (before
its residual Adds read float, quantize.py) the first kept 6 FFN output projections float and
ran at 0.59x fp32, the second 29 nodes holding 61 % (0.88x). A fixed count (`--keep-float N`)
keeps the N most harmful.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeopt.host.compress import data as datasets
from edgeopt.host.compress import onnxfile as onnx_model
from edgeopt.host.compress.blocks import node_macs
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
from edgeopt.host.errors import (
    AccuracyGateFailed,
    CompressionError,
    DataError,
    NothingQuantized,
    UnsupportedModel,
)

__all__ = ["SAMPLES", "MixedResult", "NodeGain", "Ranking", "rank", "search", "with_scores"]

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
    macs: int = 0
    """Its multiply-adds on one sample (0: not known: no constant weight, or not sized)."""


@dataclass(frozen=True)
class Ranking:
    """Converted nodes, most harmful first (for int8 in the end: most harm per multiply-add)."""

    nodes: tuple[NodeGain, ...]
    samples: int
    """Samples it was measured on."""
    output_sqnr: float = math.nan
    """The full variant's output SQNR against fp32, dB."""

    @property
    def total_macs(self) -> int:
        """The multiply-adds of the nodes whose count is known."""
        return sum(n.macs for n in self.nodes)

    def macs_share(self, k: int) -> float:
        """Share of the known multiply-adds in the top k."""
        total = self.total_macs
        return sum(n.macs for n in self.nodes[:k]) / total if total else math.nan

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


LABELS = frozenset({"ArgMax", "ArgMin", "TopK"})
"""Operators that turn scores into the labels a model outputs."""


def with_scores(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model`, with the float scores its label outputs are picked from as outputs too.

    A token classifier (the corpus's ALBERT) outputs the ArgMax of its logits: on labels one
    node's rounding shows as a few flipped labels or none, and every node looked alike (each
    alone cost 17-25 dB of the labels' SQNR). The ranking measures the logits instead. A model
    with a float output, or with none picked by these operators, comes back as it is.
    """
    graph = model.graph
    outputs = {o.name for o in graph.output}
    if any(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in graph.output):
        return model
    scores = list(dict.fromkeys(
        n.input[0] for n in graph.node if n.op_type in LABELS and set(n.output) & outputs
    ))  # fmt: skip
    if not scores:
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    copy.graph.output.extend(
        onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in scores
    )
    return copy


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


def _stored(*parts: object) -> Ranking | Path:
    """The ranking cached under these parts, or the path to cache it at."""
    key = hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()
    cached = default_dir() / "sensitivity" / key[:2] / f"{key}.json"
    if not cached.is_file():
        return cached
    stored = json.loads(cached.read_text())
    return Ranking(tuple(NodeGain(**n) for n in stored["nodes"]), stored["samples"],
                   stored["output_sqnr"])  # fmt: skip


def _store(cached: Path, ranking: Ranking) -> Ranking:
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    nodes = [asdict(n) for n in ranking.nodes]
    tmp.write_text(json.dumps({"nodes": nodes, "samples": ranking.samples,
                               "output_sqnr": ranking.output_sqnr}))  # fmt: skip
    tmp.replace(cached)
    return ranking


def rank(
    reference: Path, quantized: Path, data_path: Path, precision: str, samples: int = SAMPLES
) -> Ranking:
    """Rank the nodes `precision` converted in `quantized` by what keeping each float gives back.

    Cached. Raises:
        DataError: the data does not fit the model.
    """
    cached = _stored(onnx_model.digest(reference), onnx_model.digest(quantized),
                     onnx_model.digest(data_path), precision, samples, "sensitivity-9")  # fmt: skip
    if isinstance(cached, Ranking):
        return cached
    named = onnx_model.load(reference, check=False)
    name_unnamed(named)  # the names --keep-float resolves
    data = datasets.load(data_path, named, purpose="sensitivity")
    # The float graph the quantizer started from: ONNX Runtime's basic optimization folded
    # BatchNormalization into the convolutions (same node names, BN's output names).
    with tempfile.TemporaryDirectory() as scratch:
        float_model = with_scores(optimize_basic(named, Path(scratch), []))
    quant_model = with_scores(onnx_model.load(quantized, check=False))
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
    return _store(cached, Ranking((*gains, *unmeasured), len(feeds), full))


MOVES = frozenset({
    "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Shape", "Size",
    "Concat", "Split", "Slice", "Gather", "GatherElements", "Expand", "Tile", "Pad",
    "Constant", "ConstantOfShape", "Cast", "DepthToSpace", "SpaceToDepth",
})  # fmt: skip
"""Operators that move or copy values without arithmetic: float16 costs them no more than
the rounding of the tensors around them, which their neighbours' entries already count."""


def _fake_int8(weight: np.ndarray, axis: int | None) -> np.ndarray:
    """`weight` through symmetric int8 and back, one scale per slice along `axis` (None: one)."""
    reduce = tuple(i for i in range(weight.ndim) if i != axis) if axis is not None else None
    peak = np.abs(weight).max(axis=reduce, keepdims=True) if weight.size else np.zeros(1)
    scale = np.where(peak > 0, peak / 127.0, 1.0)
    return (np.clip(np.round(weight / scale), -127, 127) * scale).astype(weight.dtype)


def _fake_fp16(weight: np.ndarray) -> np.ndarray:
    """`weight` as the float16 converter stores it (clamped to its range), back in float32."""
    limit = float(np.finfo(np.float16).max)
    clipped: np.ndarray = np.clip(weight, -limit, limit)
    return clipped.astype(np.float16).astype(weight.dtype)


def _weight_axis(node: onnx.NodeProto, index: int, rank_: int) -> int | None:
    """The output-channel axis of a MatMul/Gemm weight (per-channel int8); None elsewhere."""
    if node.op_type == "MatMul" and index == 1 and rank_ >= 2:
        return rank_ - 1
    if node.op_type == "Gemm" and index == 1:
        trans = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans else 1
    return None


def _emulated(
    model: onnx.ModelProto, node_name: str, precision: str, floats: set[str]
) -> onnx.ModelProto:
    """A copy of the float model in which only `node_name` sees `precision`'s rounding.

    fp16: its float inputs, weights and outputs pass through float16 (Cast there and back;
    weights clamped as the converter clamps them). int8-dynamic: its weights through int8
    (per output channel for MatMul and Gemm, as edgeopt's dynamic pass does) and the data input
    of a MatMul/Gemm through DynamicQuantizeLinear and back, which is what MatMulInteger sees.
    """
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    node = next(n for n in graph.node if n.name == node_name)
    weights = {t.name: t for t in graph.initializer}
    added: list[onnx.NodeProto] = []
    tag = f"__emulated_{len(graph.node)}"
    for index, name in enumerate(node.input):
        if not name:
            continue
        fresh = f"{name}{tag}_{index}"
        if name in weights and weights[name].data_type == onnx.TensorProto.FLOAT:
            array = onnx.numpy_helper.to_array(weights[name])
            if precision == "fp16":
                changed = _fake_fp16(array)
            elif array.ndim >= 2 or node.op_type in ("MatMul", "Gemm"):
                changed = _fake_int8(array, _weight_axis(node, index, array.ndim))
            else:
                continue  # a bias: dynamic int8 keeps it float
            graph.initializer.append(onnx.numpy_helper.from_array(changed, fresh))
        elif name in floats and precision == "fp16":
            added += [
                onnx.helper.make_node("Cast", [name], [f"{fresh}_h"], to=onnx.TensorProto.FLOAT16),
                onnx.helper.make_node("Cast", [f"{fresh}_h"], [fresh], to=onnx.TensorProto.FLOAT),
            ]
        elif name in floats and index == 0 and node.op_type in ("MatMul", "Gemm"):
            added += [
                onnx.helper.make_node("DynamicQuantizeLinear", [name],
                                      [f"{fresh}_q", f"{fresh}_s", f"{fresh}_z"]),
                onnx.helper.make_node("DequantizeLinear",
                                      [f"{fresh}_q", f"{fresh}_s", f"{fresh}_z"], [fresh]),
            ]  # fmt: skip
        else:
            continue
        node.input[index] = fresh
    if precision == "fp16":
        for index, name in enumerate(node.output):
            if name in floats:
                raw = f"{name}{tag}_raw"
                node.output[index] = raw
                added += [
                    onnx.helper.make_node("Cast", [raw], [f"{raw}_h"], to=onnx.TensorProto.FLOAT16),
                    onnx.helper.make_node("Cast", [f"{raw}_h"], [name], to=onnx.TensorProto.FLOAT),
                ]
    graph.node.extend(added)  # ONNX Runtime orders the graph itself
    return copy


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    """Names of the top graph's float32 tensors, as far as shape inference types them."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # then only the declared types are known
        inferred = model
    graph = inferred.graph
    return {
        v.name
        for v in (*graph.input, *graph.output, *graph.value_info)
        if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    } | {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}


def rank_emulated(
    reference: Path, data_path: Path, precision: str, samples: int = SAMPLES
) -> Ranking:
    """Rank the nodes fp16 or int8-dynamic converts by what each alone costs, emulated.

    One session per node on the float model with that node's rounding emulated
    (`_emulated`); cheaper than one conversion per node, and the search that follows makes
    and gates the real variants. For fp16, nodes kept float32 for range anyway
    (`probe.fp16_overflow`) and operators that only move values (`MOVES`) are not ranked.
    Cached like `rank`.

    Raises:
        DataError: the data does not fit the model.
    """
    cached = _stored(onnx_model.digest(reference), onnx_model.digest(data_path), precision,
                     samples, "emulated-2")  # fmt: skip
    if isinstance(cached, Ranking):
        return cached
    from edgeopt.host.compress.probe import fp16_overflow  # noqa: PLC0415

    model = onnx_model.load(reference, check=False)
    name_unnamed(model)
    data = datasets.load(data_path, model, purpose="sensitivity")
    feeds = list(data.batches(data.fixed_batch or 1))[:samples]
    floats = _float_tensors(model)
    kinds = CONVERTED[precision]
    if precision == "fp16":
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST  # noqa: PLC0415

        skip = set(fp16_overflow(model, feeds).nodes)
        nodes = [n for n in model.graph.node
                 if n.name not in skip and n.op_type not in MOVES
                 and n.op_type not in DEFAULT_OP_BLOCK_LIST
                 and any(x in floats for x in (*n.input, *n.output))]  # fmt: skip
    else:
        nodes = [n for n in model.graph.node if kinds is not None and n.op_type in kinds
                 and any(x in floats for x in n.input)]  # fmt: skip
    model = with_scores(model)
    expected = _outputs(_session(model), feeds)
    gains = []
    for node in nodes:
        sqnr = _sqnr(expected, _outputs(_session(_emulated(model, node.name, precision, floats)),
                                        feeds))  # fmt: skip
        gains.append(NodeGain(node.name, node.op_type, sqnr, EXACT - sqnr))
    gains.sort(key=lambda g: -g.gain)
    return _store(cached, Ranking(tuple(gains), len(feeds)))


@dataclass(frozen=True)
class Bisection:
    """One bisection over one order of the ranking."""

    order: str
    """"harm" (most harmful first) or "harm per multiply-add" (`cheapest_first`)."""
    kept: int | None
    """The smallest count that passed (None: none in the range searched)."""
    probes: int
    """Variants it made."""
    searched: int
    """The largest count it could try."""


@dataclass(frozen=True)
class MixedResult:
    """A mixed-precision variant and how it was found."""

    report: CompressionReport
    ranking: Ranking
    """The order the kept nodes were taken from."""
    kept: tuple[str, ...]
    probes: int
    """Quantizations made while searching (the full variant's included)."""
    seconds: float
    bisections: tuple[Bisection, ...] = ()


def _ranking(request: CompressRequest, data_path: Path, log: OutputLog | None) -> Ranking:
    """The request's precision's ranking, most harmful first.

    On its QDQ graph (static int8) or emulated; for int8 with each node's multiply-adds.
    """
    plain = replace(request, keep_float=(), keep_float_search="", output=None, validation=None)
    reference = compress(replace(plain, precision="fp32"), log=log).artifact
    with captured(log or OutputLog(), "sensitivity ranking"):
        if request.precision == "int8-static":
            full = compress(plain, log=log).artifact
            ranking = rank(reference, full, data_path, request.precision)
        else:
            ranking = rank_emulated(reference, data_path, request.precision)
        if request.precision == "fp16":
            return ranking  # float16 buys no speed on CPUs: the fewest nodes matter
        model = onnx_model.load(reference, check=False)
        name_unnamed(model)
        data = datasets.load(data_path, model, purpose="sensitivity")
        macs = node_macs(model, datasets.dims_from(data))
    return replace(ranking, nodes=tuple(replace(n, macs=macs.get(n.node, 0))
                                        for n in ranking.nodes))  # fmt: skip


def cheapest_first(ranking: Ranking) -> Ranking:
    """The ranking ordered by what each node gives back per multiply-add it would run in float.

    Keeping a node float costs its multiply-adds at float speed: the search should spend that
    where it buys most accuracy. A node whose count is unknown (0: a MatMul of two activations,
    a Gather) is taken as the largest.
    """
    largest = max((n.macs for n in ranking.nodes), default=0)

    def worth(n: NodeGain) -> float:
        gain = n.gain if math.isfinite(n.gain) else 0.0
        return gain / max(1, n.macs or largest)

    return replace(ranking, nodes=tuple(sorted(ranking.nodes, key=lambda n: -worth(n))))


SEARCHED = ("int8-static", "int8-dynamic", "fp16")
"""Precisions whose nodes `search` ranks (int8-static on its QDQ graph, the others emulated)."""

_FAILED = (AccuracyGateFailed, CompressionError)
"""What makes a probe fail: the gate, or a variant that cannot be made (nothing converted)."""


def search(request: CompressRequest, count: int | str, log: OutputLog | None = None) -> MixedResult:
    """The variant that keeps the top `count` nodes of the ranking (most harmful first) float.

    With `count` "auto": the least float compute that passes the request's gate: none when
    the full variant passes (then nothing is ranked), else a bisection over the ranking and,
    for int8, a second over `cheapest_first` limited to prefixes with fewer multiply-adds than
    the first's answer; the cheaper answer wins (fp16: the first, the fewest nodes).

    Raises:
        UnsupportedModel: a precision with no nodes to rank.
        DataError: no data to rank on (auto needs --validate and a gate).
        AccuracyGateFailed: no number of kept nodes meets the gate (nothing written).
    """
    start = time.monotonic()
    if request.precision not in SEARCHED:
        raise UnsupportedModel(
            f"--keep-float N|auto ranks the nodes of {', '.join(SEARCHED)} models; "
            f"{request.precision} has none to keep float"
        )
    data_path = request.validation or request.calibration
    if data_path is None:
        raise DataError("--keep-float N|auto ranks nodes on data: give --validate or --calibration")
    if count == "auto" and request.validation is None:
        raise DataError("--keep-float auto needs --validate DATA.npz and a gate to meet")
    probes = 0

    def make(nodes: tuple[str, ...]) -> CompressionReport:
        nonlocal probes
        probes += 1
        variant = replace(request, keep_float=nodes, keep_float_search="", output=None)
        return compress(variant, log=log)

    def done(report: CompressionReport, order: Ranking, k: int,
             bisections: tuple[Bisection, ...] = ()) -> MixedResult:  # fmt: skip
        if request.output is not None:  # the answer only: probes write nothing
            write_output(report.artifact, request.output)
            report = replace(report, output=request.output)
        return MixedResult(report, order, order.top(k), probes, time.monotonic() - start,
                           bisections)  # fmt: skip

    last: Exception | None = None
    if count == "auto":
        try:  # the full variant may meet the gate as it is: nothing to rank then
            return done(make(()), Ranking((), 0), 0)
        except _FAILED as exc:
            last = exc
    ranking = _ranking(request, Path(data_path), log)
    if count != "auto":
        k = int(count)
        return done(make(ranking.top(k)), ranking, k)
    n = len(ranking.nodes)
    # Static int8 ranks every node it converts: all of them float is fp32, not worth a probe.
    top = n - 1 if request.precision == "int8-static" else n
    first, found, last = _bisect(ranking, "harm", top, make, last)
    answers = [(ranking, found)] if found else []
    bisections = [first]
    cheap = cheapest_first(ranking)
    if request.precision != "fp16" and cheap.top(n) != ranking.top(n):
        # Only prefixes lighter in multiply-adds than the first answer can do better.
        budget = math.inf if found is None else sum(x.macs for x in ranking.nodes[: found[0]])
        limit = max((k for k in range(top + 1) if sum(x.macs for x in cheap.nodes[:k]) < budget),
                    default=0)  # fmt: skip
        second, other, last = _bisect(cheap, "harm per multiply-add", limit, make, last,
                                      top_first=True)  # fmt: skip
        bisections.append(second)
        if other is not None:
            answers.append((cheap, other))
    if not answers:
        gate = last if isinstance(last, AccuracyGateFailed) else None
        raise AccuracyGateFailed(
            gate.metric if gate else "cosine", gate.value if gate else float("nan"),
            gate.limit if gate else float("nan"),
            f"no set of nodes kept float meets the gate: with the {top} most harmful of {n} "
            f"kept float, {last}",
        )  # fmt: skip
    order, (k, report) = answers[-1]  # the second only exists where it is lighter
    return done(report, order, k, tuple(bisections))


def _bisect(
    order: Ranking,
    name: str,
    top: int,
    make: Callable[[tuple[str, ...]], CompressionReport],
    last: Exception | None,
    *,
    top_first: bool = False,
) -> tuple[Bisection, tuple[int, CompressionReport] | None, Exception | None]:
    """The smallest k in [1, top] whose variant (the top k of `order` float) passes.

    Passing is taken to grow with k (each node kept float gives back accuracy) until so many
    are kept that nothing is converted (then the answer lies below): each probe halves the
    range, so about log2(top) variants are made. `top_first`: try `top` first and stop there
    when it fails (a range that likely holds no answer costs one variant).
    """
    made: dict[int, CompressionReport] = {}
    lo, hi = 1, top + 1  # hi: not yet known to pass
    probes = 0
    if top_first and top >= 1:
        probes += 1
        try:
            made[top] = make(order.top(top))
            hi = top
        except _FAILED as exc:
            return Bisection(name, None, probes, top), None, exc
    while lo < hi:
        mid = (lo + hi) // 2
        probes += 1
        try:
            made[mid] = make(order.top(mid))
            hi = mid
        except NothingQuantized as exc:  # so many kept float that nothing is converted
            last, hi = exc, mid
        except _FAILED as exc:
            last, lo = exc, mid + 1
    found = (lo, made[lo]) if lo in made else None
    return Bisection(name, found[0] if found else None, probes, top), found, last
