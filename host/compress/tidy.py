"""Clean-ups of a quantized graph that make it smaller and loadable by older runtimes.

- `share_identical_constants`: ONNX Runtime's quantizer works on each control-flow body as a
  model of its own, so a weight the body reads from the enclosing graph comes back quantized
  once per body (silero's LSTM weights: twice as many int8 bytes as there were float ones).
  Identical tensors of 1 KiB or more are kept once, in the main graph, where every body can
  read them.
- `unshare_weight_dequantize`: a DequantizeLinear of a weight read by several nodes (shared
  weights, such as ALBERT's layers) is given one copy per reader. ONNX Runtime does the same
  when it loads a QDQ model, and 1.16 does it wrongly for per-axis DequantizeLinear ("axis 1
  is not in valid range [-1,0]" at run time, seen here); the copies share the weight.
- `float_readers`: nodes left float, and the model's outputs, read float tensors rather than
  the int8 round trip the QDQ quantizer points every reader at.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

import onnx

from edgeopt.host.compress.onnxfile import graphs

__all__ = [
    "CONVOLUTIONS",
    "INT8_MOVES",
    "MIN_SHARED_BYTES",
    "float_readers",
    "rename_inputs",
    "share_identical_constants",
    "unshare_weight_dequantize",
]

MIN_SHARED_BYTES = 1024


def rename_inputs(graph: onnx.GraphProto, rename: dict[str, str]) -> None:
    """Point every reader of a renamed value at its new name, in nested bodies too."""
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
        for attr in node.attribute:
            subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for sub in subs:
                rename_inputs(sub, rename)


def _key(tensor: onnx.TensorProto) -> tuple[int, tuple[int, ...], str] | None:
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        return None
    payload = tensor.raw_data or onnx.numpy_helper.to_array(tensor).tobytes()
    if len(payload) < MIN_SHARED_BYTES:
        return None
    return tensor.data_type, tuple(tensor.dims), hashlib.sha256(payload).hexdigest()


def _all_names(model: onnx.ModelProto) -> set[str]:
    names: set[str] = set()
    for graph in graphs(model.graph):
        names |= {t.name for t in graph.initializer}
        names |= {v.name for v in (*graph.input, *graph.output)}
        for node in graph.node:
            names |= set(node.output)
    return names


def share_identical_constants(model: onnx.ModelProto) -> int:
    """Keep one copy of identical initializers (≥ 1 KiB), in the main graph; returns removed.

    Sibling bodies (an If's two branches) may each define a tensor under the same name, so a
    copy hoisted into the main graph gets a fresh name, and readers are renamed only inside the
    body that owned the dropped copy (and the bodies nested in it).
    """
    top = model.graph
    everywhere = [(g, t) for g in graphs(top) for t in g.initializer]
    counts: dict[tuple[int, tuple[int, ...], str], int] = defaultdict(int)
    keys = {}
    for _, tensor in everywhere:
        key = _key(tensor)
        if key is not None:
            keys[id(tensor)] = key
            counts[key] += 1
    owners = {keys[id(t)]: t.name for g, t in everywhere if g is top and id(t) in keys}
    taken = _all_names(model)
    removed = 0
    for graph in list(graphs(top))[1:]:
        keep, rename = [], {}
        for tensor in graph.initializer:
            key = keys.get(id(tensor))
            if key is None or counts[key] < 2:
                keep.append(tensor)
                continue
            if key not in owners:
                fresh, n = f"{tensor.name}_shared", 1
                while fresh in taken:
                    fresh, n = f"{tensor.name}_shared{n}", n + 1
                taken.add(fresh)
                hoisted = onnx.TensorProto()
                hoisted.CopyFrom(tensor)
                hoisted.name = fresh
                top.initializer.append(hoisted)
                owners[key] = fresh
            rename[tensor.name] = owners[key]
            removed += 1
        if rename:
            del graph.initializer[:]
            graph.initializer.extend(keep)
            rename_inputs(graph, rename)
    return removed


def unshare_weight_dequantize(model: onnx.ModelProto) -> int:
    """One DequantizeLinear of a weight per reader (main graph); returns the copies made."""
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    readers: dict[str, list[tuple[onnx.NodeProto, int]]] = defaultdict(list)
    for node in graph.node:
        for index, name in enumerate(node.input):
            readers[name].append((node, index))
    nodes: list[onnx.NodeProto] = []
    copies = 0
    for node in graph.node:
        nodes.append(node)
        shared = readers.get(node.output[0], []) if node.output else []
        if (
            node.op_type != "DequantizeLinear"
            or node.input[0] not in initializers
            or len(shared) < 2
            or node.output[0] in outputs
        ):
            continue
        for k, (reader, index) in enumerate(shared[1:], 1):
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.name = f"{node.name or node.output[0]}_reader{k}"
            copy.output[0] = f"{node.output[0]}_reader{k}"
            reader.input[index] = copy.output[0]
            nodes.append(copy)
            copies += 1
    if copies:
        del graph.node[:]
        graph.node.extend(nodes)
    return copies


INT8_MOVES = frozenset({
    "Gather", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Slice", "Split",
    "Concat", "MaxPool", "Resize", "Identity", "DepthToSpace", "SpaceToDepth", "Pad",
})  # fmt: skip
"""Operators ONNX Runtime runs on int8 values when a DequantizeLinear feeds them and a
QuantizeLinear follows: their outputs' round trips are how they stay 8-bit."""


CONVOLUTIONS = frozenset({"Conv", "ConvTranspose"})
"""Converted operators whose int8 kernel (QLinearConv) writes int8: ONNX Runtime fuses one
only when a QuantizeLinear is its output's sole reader, else it runs in float, dequantizing
its weights every run (PP-OCR's detector ran 1.28x fp32 instead of 0.87x; the CRNN's SiLU,
whose Sigmoid read the convolution's output in float, 1.19x instead of 0.93x)."""


def float_readers(
    model: onnx.ModelProto,
    quantized: frozenset[str],
    float_weights: dict[str, onnx.TensorProto],
    keep: frozenset[str] = frozenset(),
) -> int:
    """Let the nodes left float read float tensors, not a quantize/dequantize round trip.

    ONNX Runtime's QDQ quantizer puts one QuantizeLinear/DequantizeLinear pair on a tensor and
    points every reader at it, the float ones too: a transformer's residual Add read its
    LayerNorm's output through int8 because the attention's MatMuls read it, and so did every
    node kept float (`nodes_to_exclude`) whose input another node quantized; a shared weight
    (ALBERT's layers) reached a kept-float reader dequantized, at run time. That noise bought
    no speed: the float reader only adds a DequantizeLinear to run. Here a reader that is not
    one of `quantized` (the names of the nodes the quantizer converted) and whose output does
    not go on into a QuantizeLinear reads the tensor before quantization, or for a weight its
    float value from `float_weights` (the model before quantization), under a name of its own.
    Round trips nobody reads any more go. Outputs of int8 moves (`INT8_MOVES`, a Gather of a
    quantized embedding table), of convolutions (their int8 kernel needs its output's round
    trip to itself) and of the converted nodes named in `keep` keep theirs. Returns the
    inputs rewired.
    """
    graph = model.graph
    producer = {out: n for n in graph.node for out in n.output}
    readers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            readers[name].append(node)
    initializers = {t.name for t in graph.initializer}
    outputs = {o.name for o in graph.output}

    def int8(node: onnx.NodeProto) -> bool:
        """Whether `node` takes its inputs in 8 bits: converted, or a move between Q/DQ."""
        if node.name in quantized:
            return True
        after = [r for out in node.output for r in readers.get(out, [])]
        return (
            bool(after)
            and all(r.op_type == "QuantizeLinear" for r in after)
            and not (set(node.output) & outputs)
        )

    added: dict[str, str] = {}

    def float_value(dq: onnx.NodeProto) -> str | None:
        """The float value `dq`'s float readers should read instead (None: leave them be)."""
        source = dq.input[0]
        if source in initializers:  # a weight: its float value, if the model had one
            suffix = "_quantized"
            weight = source[: -len(suffix)] if source.endswith(suffix) else None
            if weight is None or weight not in float_weights:
                return None
            if weight not in added:
                fresh = onnx.TensorProto()
                fresh.CopyFrom(float_weights[weight])
                fresh.name = f"{weight}_float"
                graph.initializer.append(fresh)
                added[weight] = fresh.name
            return added[weight]
        q = producer.get(source)
        if q is None or q.op_type != "QuantizeLinear":
            return None
        origin = producer.get(q.input[0])
        if (
            origin is not None
            and origin.op_type in INT8_MOVES
            and any(
                (p := producer.get(i)) is not None and p.op_type == "DequantizeLinear"
                for i in origin.input
            )
        ):
            return None  # an int8 move's output: its round trip keeps it 8-bit
        if _needs_int8_output(origin, producer, quantized, keep):
            return None  # e.g. a convolution's: QLinearConv fuses only a lone QuantizeLinear
        return str(q.input[0])

    rewired = 0
    for dq in list(graph.node):
        if dq.op_type != "DequantizeLinear":
            continue
        if dq.output[0] in outputs:
            continue  # below, once every reader is settled
        floats = [r for r in readers.get(dq.output[0], []) if not int8(r)]
        value = float_value(dq) if floats else None
        if value is None:
            continue
        for reader in floats:
            reader.input[:] = [value if x == dq.output[0] else x for x in reader.input]
            rewired += 1
    for dq in [n for n in graph.node if n.op_type == "DequantizeLinear" and n.output[0] in outputs]:
        rewired += _float_output(graph, dq, producer, quantized, keep)
    _drop_dead_qdq(graph, outputs)
    return rewired


def _needs_int8_output(
    origin: onnx.NodeProto | None,
    producer: dict[str, onnx.NodeProto],
    quantized: frozenset[str],
    keep: frozenset[str],
) -> bool:
    """Whether the round trip after `origin` lets a converted convolution, or `keep`, run int8.

    It is when `origin` is one, or an activation reading one directly (ONNX Runtime fuses
    Conv → Relu → QuantizeLinear into one QLinearConv).
    """
    if origin is None:
        return False

    def needs(node: onnx.NodeProto | None) -> bool:
        return (
            node is not None
            and node.name in quantized
            and (node.op_type in CONVOLUTIONS or node.name in keep)
        )

    return needs(origin) or any(needs(producer.get(i)) for i in origin.input)


def _float_output(
    graph: onnx.GraphProto,
    dq: onnx.NodeProto,
    producer: dict[str, onnx.NodeProto],
    quantized: frozenset[str],
    keep: frozenset[str],
) -> int:
    """Let the node that computes a graph output write it, not a round trip after it.

    The quantizer quantizes a converted node's output for the next node's int8 kernel, the
    model's own outputs too: a classifier's logits came out on 256 levels. Returns 1 when
    the output is written directly.
    """
    q = producer.get(dq.input[0])
    if q is None or q.op_type != "QuantizeLinear":
        return 0
    origin = producer.get(q.input[0])
    if origin is None or origin.op_type in INT8_MOVES:
        return 0  # an int8 move (or a graph input) hands on its round trip
    if _needs_int8_output(origin, producer, quantized, keep):
        return 0
    value, name = q.input[0], dq.output[0]
    dq.output[0] = f"{name}_int8_round_trip"  # nobody reads it: dropped with its Q
    for node in graph.node:
        node.output[:] = [name if x == value else x for x in node.output]
        node.input[:] = [name if x == value else x for x in node.input]
    return 1


def _drop_dead_qdq(graph: onnx.GraphProto, outputs: set[str]) -> None:
    """Remove QuantizeLinear/DequantizeLinear nodes nobody reads.

    Their scales stay: ONNX Runtime drops unread initializers at load, and removing them here
    made 1.32 fail to load ALBERT ("Attempt to replace the existing tensor").
    """
    while True:
        read = {name for n in graph.node for name in n.input} | outputs
        dead = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in read for o in n.output)]  # fmt: skip
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)
