"""Pruning passes on PyTorch models, before export.

- `PruneUnstructured`: global magnitude pruning: the smallest weights of all Conv and Linear
  layers together are set to zero until the target sparsity is reached (and kept at zero while
  fine-tuning). Tensors keep their shape.
- `PruneStructured`: whole output channels (Conv) and neurons (Linear) are removed by importance
  (L1 or L2 norm of their weights, or a first-order Taylor score |w * dL/dw| on labelled data),
  and the layers that read them are rewired, so tensors, parameters and multiply-accumulates
  really shrink. BatchNorm between is cut to match; a flatten between a Conv and a Linear maps
  each channel to its block of features.

Both work on the model as `torch.export` sees it (an ATen-level `torch.fx` graph), so a `.pt2`
ExportedProgram and a `package.module:function` factory are handled alike, and write a `.pt2`
with a dynamic batch axis for the export pass. A layer is cut only when its output reaches
exactly one Conv/Linear through channel-preserving ops (activations, pooling, BatchNorm,
dropout, flatten); layers feeding residual additions, concatenations or the output stay whole.
Both can fine-tune briefly on labelled data (`finetune`: an .npz with the inputs and `labels`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from edgeopt.host.compress import data as datasets
from edgeopt.host.compress import torch_model
from edgeopt.host.compress.passes import Pass
from edgeopt.host.errors import DataError, UnsupportedModel

__all__ = ["PruneStructured", "PruneUnstructured"]

Importance = Literal["l1", "l2", "taylor"]

_PASS_THROUGH = {
    "relu", "relu_", "gelu", "silu", "sigmoid", "tanh", "hardtanh", "leaky_relu", "hardswish",
    "elu", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "dropout", "clone", "contiguous",
}  # fmt: skip
"""ATen ops (by name) that keep channels where they are."""


def _op(node: Any) -> str:
    """The ATen op name of a call_function node ("conv2d"), or ""."""
    if node.op != "call_function":
        return ""
    return str(getattr(node.target, "__name__", node.target)).split(".")[0]


@dataclass(frozen=True)
class _Graph:
    module: Any
    """The GraphModule (ATen ops; parameters reached by get_attr)."""
    example: tuple[Any, ...]
    """Example inputs, in forward order."""
    dynamic: tuple[dict[int, Any], ...]
    """Dynamic shapes for re-export: the batch axis of every input."""


def _load_graph(
    src: Path, example_file: Path | None, input_shape: tuple[int, ...] | None
) -> _Graph:
    """The model at `src` as an ATen GraphModule, with example inputs."""
    import torch  # noqa: PLC0415

    if src.suffix == ".pt2":
        program = torch_model.load_exported_program(src)
        names = [
            s.arg.name for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"
        ]
        module = None
    else:
        module = torch_model.load(src)
        if isinstance(module, torch.jit.ScriptModule):
            raise UnsupportedModel(
                "pruning needs the model's Python code or a torch.export .pt2, not TorchScript"
            )
        names = torch_model.forward_argument_names(module) or []
    arrays = torch_model.example_inputs(example_file, input_shape, names)
    order = [n for n in names if n in arrays] or list(arrays)
    # torch.export specializes a dimension of size 1: trace with at least 2 samples so the
    # batch axis stays dynamic.
    example = tuple(
        torch.from_numpy(np.concatenate([arrays[n]] * 2) if len(arrays[n]) == 1 else arrays[n])
        for n in order
    )
    batch = torch.export.Dim("batch")
    dynamic = tuple({0: batch} for _ in example)
    if module is not None:
        try:
            program = torch.export.export(module, example, dynamic_shapes=dynamic)
        except Exception as exc:
            raise UnsupportedModel(
                f"torch.export cannot capture the model ({str(exc).splitlines()[0][:200]})"
            ) from exc
    return _Graph(program.module(), example, dynamic)


def _save(graph: _Graph, dst: Path) -> None:
    import torch  # noqa: PLC0415

    program = torch.export.export(graph.module, graph.example, dynamic_shapes=graph.dynamic)
    torch.export.save(program, str(dst))


def _set(module: Any, qualified: str, value: Any, parameter: bool = True) -> None:
    import torch  # noqa: PLC0415

    owner_name, _, leaf = qualified.rpartition(".")
    owner = module.get_submodule(owner_name) if owner_name else module
    if parameter:
        setattr(owner, leaf, torch.nn.Parameter(value.detach().clone()))
    else:
        owner.register_buffer(leaf, value.detach().clone())


def _get(module: Any, qualified: str) -> Any:
    owner_name, _, leaf = qualified.rpartition(".")
    owner = module.get_submodule(owner_name) if owner_name else module
    return getattr(owner, leaf)


def _weights(graph: _Graph) -> list[str]:
    """Qualified names of the weights of every conv2d/linear."""
    return [
        str(n.args[1].target)
        for n in graph.module.graph.nodes
        if _op(n) in ("conv2d", "linear") and n.args[1].op == "get_attr"
    ]


def _training_data(path: Path) -> tuple[list[np.ndarray], np.ndarray | None]:
    arrays = datasets.read_npz(path, "fine-tune")
    labels = arrays.pop("labels", None)
    return [torch_model.as_float32(a) for a in arrays.values()], labels


def _teacher_outputs(graph: _Graph, data: Path | None) -> Any:
    """The unpruned model's outputs on the fine-tune inputs, when they carry no labels.

    Without labels, fine-tuning distils: the pruned model learns to reproduce these (mean
    squared error), which suits embedding models such as MiniLM as well as classifiers.
    """
    import torch  # noqa: PLC0415

    if data is None:
        return None
    inputs, labels = _training_data(data)
    if labels is not None:
        return None
    with torch.no_grad():
        return torch.cat([
            graph.module(*(torch.from_numpy(a[i : i + 64]) for a in inputs))
            for i in range(0, len(inputs[0]), 64)
        ])  # fmt: skip


def _finetune(
    graph: _Graph,
    data: Path,
    epochs: int,
    lr: float,
    *,
    masks: dict[str, Any] | None = None,
    teacher: Any = None,
) -> None:
    """Train after pruning, keeping pruned weights at zero.

    With labels: cross-entropy on a classifier's logits. Without: mean squared error to the
    `teacher` outputs (the unpruned model's, from `_teacher_outputs`).
    """
    import torch  # noqa: PLC0415

    inputs, labels = _training_data(data)
    tensors = [torch.from_numpy(a) for a in inputs]
    if labels is not None:
        target = torch.from_numpy(labels.astype(np.int64))
        loss_fn: Any = torch.nn.functional.cross_entropy
    elif teacher is not None:
        target, loss_fn = teacher, torch.nn.functional.mse_loss
    else:
        raise DataError(f"fine-tune data {data}: no 'labels' array and no model to distil from")
    params = [p for p in graph.module.parameters() if p.dtype.is_floating_point]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=lr)
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        order = torch.randperm(len(target), generator=generator)
        for start in range(0, len(target), 64):
            batch = order[start : start + 64]
            optimizer.zero_grad()
            outputs = graph.module(*(t[batch] for t in tensors))
            loss_fn(outputs, target[batch]).backward()
            optimizer.step()
            with torch.no_grad():
                for name, mask in (masks or {}).items():
                    _get(graph.module, name).mul_(mask)


def _check_ratio(ratio: float) -> None:
    if not 0.0 < ratio < 1.0:
        raise DataError(f"prune ratio must be between 0 and 1 (exclusive), got {ratio}")


@dataclass(frozen=True)
class _Prune(Pass):
    """What both pruning passes are configured with."""

    produces_onnx: ClassVar[bool] = False
    ratio: float = 0.5
    """Share pruned: of all weights (unstructured), of each layer's channels (structured)."""
    example: Path | None = None
    """`.npz` of example inputs."""
    input_shape: tuple[int, ...] | None = None
    """Shape of a single float32 input, when no example file is given."""
    finetune: Path | None = None
    """`.npz` to fine-tune on afterwards: with `labels`, cross-entropy; without, distillation."""
    epochs: int = 3
    """Fine-tuning epochs."""
    lr: float = 1e-3
    """Fine-tuning learning rate (Adam)."""


@dataclass(frozen=True)
class PruneUnstructured(_Prune):
    """Global magnitude pruning of Conv and Linear weights to a target sparsity.

    `ratio` is the share of all Conv/Linear weights set to zero; they stay zero while
    fine-tuning.
    """

    name: ClassVar[str] = "prune"

    def run(self, src: Path, dst: Path) -> None:
        """Prune the model at `src`, write a `.pt2` to `dst`."""
        import torch  # noqa: PLC0415

        _check_ratio(self.ratio)
        graph = _load_graph(src, self.example or self.finetune, self.input_shape)
        names = _weights(graph)
        if not names:
            raise UnsupportedModel("no Conv or Linear layer to prune")
        magnitudes = torch.cat([_get(graph.module, n).detach().abs().flatten() for n in names])
        k = int(self.ratio * magnitudes.numel())
        threshold = torch.kthvalue(magnitudes, max(k, 1)).values
        teacher = _teacher_outputs(graph, self.finetune)
        masks = {}
        with torch.no_grad():
            for name in names:
                weight = _get(graph.module, name)
                masks[name] = (weight.abs() > threshold).to(weight.dtype)
                weight.mul_(masks[name])
        if self.finetune is not None:
            _finetune(graph, self.finetune, self.epochs, self.lr, masks=masks, teacher=teacher)
        _save(graph, dst)


@dataclass(frozen=True)
class _Group:
    producer: Any
    """The conv2d/linear node whose outputs are cut."""
    norms: tuple[Any, ...]
    """batch_norm nodes on the way, cut the same."""
    consumer: Any
    """The conv2d/linear node that reads the channels."""
    block: int
    """Features per channel when a flatten sits between (1 when none)."""


def _groups(graph: _Graph) -> list[_Group]:
    found = []
    for node in graph.module.graph.nodes:
        if _op(node) not in ("conv2d", "linear") or node.args[1].op != "get_attr":
            continue
        if _op(node) == "conv2d" and len(node.args) > 6 and node.args[6] != 1:
            continue  # grouped/depthwise: channels are tied to the input's
        norms: list[Any] = []
        block, current = 1, node
        while len(current.users) == 1:
            nxt = next(iter(current.users))
            op = _op(nxt)
            if op in ("conv2d", "linear") and nxt.args[0] is current:
                # conv2d puts channels on axis 1; linear on the last axis ([B, L, C] in BERT)
                shape = node.meta["val"].shape
                channels = int(shape[1] if _op(node) == "conv2d" else shape[-1])
                reads = int(_get(graph.module, str(nxt.args[1].target)).shape[1])
                grouped = op == "conv2d" and len(nxt.args) > 6 and nxt.args[6] != 1
                if reads == channels * block and not grouped:
                    found.append(_Group(node, tuple(norms), nxt, block))
                break
            if op == "batch_norm":
                norms.append(nxt)
            elif op == "flatten" or (op in ("view", "reshape") and len(nxt.args[1]) == 2):
                shape = current.meta["val"].shape
                block = int(np.prod([int(d) for d in shape[2:]])) if len(shape) > 2 else 1
            elif op not in _PASS_THROUGH:
                break
            current = nxt
    return found


def _shrink(graph: _Graph, group: _Group, keep: Any) -> None:
    import torch  # noqa: PLC0415

    module = graph.module
    for arg in group.producer.args[1:3]:
        if arg is not None and getattr(arg, "op", "") == "get_attr":
            _set(module, str(arg.target), _get(module, str(arg.target))[keep])
    for norm in group.norms:
        # batch_norm(input, weight, bias, running_mean, running_var, ...)
        for i, arg in enumerate(norm.args[1:5], start=1):
            if arg is not None and getattr(arg, "op", "") == "get_attr":
                _set(module, str(arg.target), _get(module, str(arg.target))[keep], parameter=i < 3)
    columns = keep
    if group.block > 1:
        b = group.block
        columns = torch.cat([torch.arange(int(c) * b, (int(c) + 1) * b) for c in keep])
    weight = str(group.consumer.args[1].target)
    _set(module, weight, _get(module, weight)[:, columns])


@dataclass(frozen=True)
class PruneStructured(_Prune):
    """Remove whole channels and neurons, rewiring the layers that read them."""

    name: ClassVar[str] = "prune-structured"
    importance: Importance = "l1"
    """How channels are ranked: weight L1 or L2 norm, or Taylor (needs labelled `finetune`)."""

    def run(self, src: Path, dst: Path) -> None:
        """Prune the model at `src`, write a `.pt2` to `dst`."""
        import torch  # noqa: PLC0415

        _check_ratio(self.ratio)
        if self.importance == "taylor" and self.finetune is None:
            raise DataError("taylor importance needs labelled data (--finetune DATA.npz)")
        graph = _load_graph(src, self.example or self.finetune, self.input_shape)
        groups = _groups(graph)
        if not groups:
            raise UnsupportedModel(
                "no layer can be pruned structurally: none feeds exactly one Conv/Linear "
                "through channel-preserving ops"
            )
        grads = self._taylor_gradients(graph) if self.importance == "taylor" else {}
        teacher = _teacher_outputs(graph, self.finetune)
        # Rank every layer on the unpruned weights first: cutting one layer's outputs also
        # cuts the next layer's input columns, which would change its scores' shapes.
        plan = []
        for group in groups:
            name = str(group.producer.args[1].target)
            weight = _get(graph.module, name).detach()
            channels = weight.shape[0]
            keep_count = round(channels * (1.0 - self.ratio))
            if keep_count < 1:
                raise DataError(
                    f"prune ratio {self.ratio} would remove all {channels} channels of layer "
                    f"{name.rsplit('.', 1)[0]!r}, and with them the layer; use a ratio below "
                    f"{1 - 0.5 / channels:.3f}"
                )
            flat = weight.reshape(channels, -1)
            if self.importance == "taylor":
                scores = (flat * grads[name].reshape(channels, -1)).sum(1).abs()
            elif self.importance == "l2":
                scores = flat.pow(2).sum(1).sqrt()
            else:
                scores = flat.abs().sum(1)
            plan.append((group, torch.sort(torch.topk(scores, keep_count).indices).values))
        for group, keep in plan:
            _shrink(graph, group, keep)
        if self.finetune is not None:
            _finetune(graph, self.finetune, self.epochs, self.lr, teacher=teacher)
        _save(graph, dst)

    def _taylor_gradients(self, graph: _Graph) -> dict[str, Any]:
        import torch  # noqa: PLC0415

        assert self.finetune is not None  # checked by run()
        inputs, labels = _training_data(self.finetune)
        if labels is None:
            raise DataError(
                f"taylor importance needs labels in the fine-tune data ({self.finetune}); "
                "use l1 or l2 for unlabelled data"
            )
        for p in graph.module.parameters():
            p.requires_grad_(True)
            p.grad = None
        logits = graph.module(*(torch.from_numpy(a) for a in inputs))
        torch.nn.functional.cross_entropy(
            logits, torch.from_numpy(labels.astype(np.int64))
        ).backward()
        grads = {n: _get(graph.module, n).grad.detach().clone() for n in _weights(graph)}
        for p in graph.module.parameters():
            p.grad = None
        return grads
