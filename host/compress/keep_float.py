"""Nodes kept in float inside an otherwise quantized model (`--keep-float`).

A precision either passes the accuracy gate whole or not at all, unless the few nodes that
carry the error stay float (Intel Neural Compressor's op-wise fallback, ONNX Runtime's
`nodes_to_exclude` and float16's `node_block_list`). A node is named as the model names it; a
node inside an If/Loop/Scan body by its path, `IfNode/then_branch/Conv_3`; a node the exporter
left unnamed by its operator and its place among the unnamed ones of that type in its graph,
`If_0`, `MatMul_2` (the name it is given before converting). Each name is checked
against the fp32 reference before anything is made: a name the model does not have, or a node
the precision does not convert anyway, is refused with the name in the error.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence

import onnx

from edgeopt.host.errors import ModelError

__all__ = ["CONVERTED", "convertible", "fused", "name_unnamed", "node_paths", "original", "resolve"]

CONVERTED: dict[str, frozenset[str] | None] = {
    "int8-static": frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm", "Gather", "LSTM", "GRU"}),
    "int8-dynamic": frozenset(
        {"MatMul", "Gemm", "Attention", "LSTM", "GRU", "Gather", "EmbedLayerNormalization"}
    ),
    "fp16": None,
}
"""Precision → the operator types it converts (None: every node computing in float)."""
_SUBGRAPHS = {"int8-static": False, "int8-dynamic": True, "fp16": True}
"""Whether the precision converts nodes inside control-flow bodies (static QDQ does not)."""


def node_paths(
    graph: onnx.GraphProto, prefix: str = "", depth: int = 0
) -> Iterator[tuple[str, onnx.NodeProto, int]]:
    """(path, node, depth) for every node; nodes of bodies at depth 1 and more.

    A body's node is named by its path: `If_0/then_branch/Conv_3`.
    """
    for node in graph.node:
        path = f"{prefix}{node.name}"
        yield path, node, depth
        for attr in node.attribute:
            bodies = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for body in bodies:
                yield from node_paths(body, f"{path}/{attr.name}/", depth + 1)


def name_unnamed(model: onnx.ModelProto) -> None:
    """Name every unnamed node, bodies included, in place.

    The name is `<op type>_<k>`, k counting the unnamed nodes of that type through the whole
    model (bodies too: the converter matches names model-wide), skipping names already taken.
    """
    taken = {node.name for _, node, _ in node_paths(model.graph) if node.name}
    counts: dict[str, int] = {}
    for _, node, _ in node_paths(model.graph):
        if node.name:
            continue
        while True:
            k = counts.get(node.op_type, 0)
            counts[node.op_type] = k + 1
            if f"{node.op_type}_{k}" not in taken:
                break
        node.name = f"{node.op_type}_{k}"
        taken.add(node.name)


def convertible(model: onnx.ModelProto, precision: str) -> list[str]:
    """The paths of the nodes `precision` converts: what --keep-float may name.

    Unnamed nodes are left out until `name_unnamed` names them.
    """
    kinds = CONVERTED[precision]
    return [
        path
        for path, node, depth in node_paths(model.graph)
        if node.name
        and (kinds is None or node.op_type in kinds)
        and (_SUBGRAPHS[precision] or not depth)
    ]


def resolve(model: onnx.ModelProto, names: Sequence[str], precision: str) -> list[str]:
    """The node names to keep float (what the converter takes), from the paths a user gave.

    Unnamed nodes of `model` are named first (`name_unnamed`), in place, so that the converter
    can be told them.

    Raises:
        ModelError: a path names no node, or a node `precision` does not convert anyway.
    """
    if not names:
        return []
    name_unnamed(model)
    if precision not in CONVERTED:
        raise ModelError(
            f"--keep-float applies to {', '.join(CONVERTED)}; {precision} converts no node "
            "it could leave out"
        )
    nodes = {path: (node, depth) for path, node, depth in node_paths(model.graph)}
    kinds = CONVERTED[precision]
    out = []
    for path in dict.fromkeys(names):
        node, depth = nodes.get(path, (None, 0))
        if node is None:
            near = difflib.get_close_matches(path, convertible(model, precision), n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise ModelError(f"--keep-float: the model has no node {path!r}{hint}")
        if depth and not _SUBGRAPHS[precision]:
            raise ModelError(
                f"--keep-float: {path} is inside a control-flow body, which {precision} does not "
                "enter: it stays float anyway"
            )
        if kinds is not None and node.op_type not in kinds:
            raise ModelError(
                f"--keep-float: {path} is a {node.op_type} node, which {precision} does not "
                f"convert (it converts {', '.join(sorted(kinds))}): it stays float anyway"
            )
        out.append(node.name)
        if precision == "int8-dynamic" and node.op_type == "Gemm":
            # ONNX Runtime's dynamic quantizer first splits a Gemm into `<name>_MatMul` and
            # `<name>_Add`, and quantizes the MatMul under that name.
            out.append(f"{node.name}_MatMul")
    return out


def fused(prepared: onnx.ModelProto, kept: Sequence[str], dynamic: bool = False) -> list[str]:
    """`kept` and the names ONNX Runtime's graph optimization gave what it fused them into.

    The quantizer works on the optimized graph, where a MatMul and the Add after it became one
    Gemm named `<MatMul's name>/MatMulAddFusion`: excluding the MatMul's name alone would
    leave that Gemm quantized. The dynamic quantizer then splits such a Gemm into
    `<Gemm's name>_MatMul` and an Add, and quantizes the MatMul under that name (`dynamic`):
    on ALBERT, 27 of 35 MatMuls were quantized with all 35 named to stay float.
    """
    prefixes = tuple(f"{k}/" for k in kept)
    extra = [n for _, n, _ in node_paths(prepared.graph)
             if prefixes and n.name.startswith(prefixes)]  # fmt: skip
    split = [f"{n.name}_MatMul" for n in extra if dynamic and n.op_type == "Gemm"]
    return [*kept, *(n.name for n in extra), *split]


def original(name: str, names: set[str]) -> str | None:
    """The node of the unoptimized graph that `name` (of the optimized one) stands for."""
    if name in names:
        return name
    parts = name.split("/")
    for cut in range(len(parts) - 1, 0, -1):
        if "/".join(parts[:cut]) in names:
            return "/".join(parts[:cut])
    return None
