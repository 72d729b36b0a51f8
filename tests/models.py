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
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 2 * 2, 128), nn.ReLU(), nn.Linear(128, 10),
    )  # fmt: skip
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
    return DigitsModel(path, net, calibration, validation, accuracy)
