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
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

import onnx

from edgeopt.host.compress.onnxfile import graphs

__all__ = [
    "MIN_SHARED_BYTES",
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
