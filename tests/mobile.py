"""Mobile CNN layouts for planning: MobileNetV2, EfficientNet-B0 and a ConvNeXt-style network.

Their block structure is what the planner's rules have to read (depthwise convolutions,
squeeze-and-excite gates, SiLU/GELU activations that stay float, tiny per-channel FCs); the
weights are random, which is enough for latency. Batch-norm statistics are taken from a few
forward passes over random images (not left at 0/1), so the activations have the scales a
trained network has and int8 calibration sees realistic ranges.

Each factory returns an `nn.Module` in eval mode, for `edgeopt compress tests.mobile:NAME` with
an example `.npz` of images (`images`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LAYOUTS", "convnext_style", "efficientnet_b0", "images", "mobilenet_v2"]

SIZE = 224


def _settle(net: Any, seed: int) -> Any:
    """Batch-norm statistics from random images, then eval mode."""
    import torch

    torch.manual_seed(seed)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(8, 3, SIZE, SIZE))
    return net.eval()


def mobilenet_v2() -> Any:
    """MobileNetV2 1.0 (Sandler et al. 2018): inverted residuals, depthwise 3x3, ReLU6."""
    import torch
    from torch import nn

    torch.manual_seed(0)

    def cbr(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1) -> list[Any]:
        return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                nn.BatchNorm2d(cout), nn.ReLU6()]  # fmt: skip

    class Inverted(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
            super().__init__()
            mid = cin * expand
            layers = cbr(cin, mid) if expand != 1 else []
            layers += cbr(mid, mid, 3, stride, mid)
            layers += [nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
            self.body = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x: Any) -> Any:
            return x + self.body(x) if self.residual else self.body(x)

    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1)]  # fmt: skip
    layers: list[Any] = cbr(3, 32, 3, 2)
    cin = 32
    for t, c, n, s in settings:
        for i in range(n):
            layers.append(Inverted(cin, c, s if i == 0 else 1, t))
            cin = c
    layers += [*cbr(cin, 1280), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, 1000)]
    return _settle(nn.Sequential(*layers), 0)


def efficientnet_b0() -> Any:
    """EfficientNet-B0 (Tan and Le 2019): MBConv with squeeze-and-excite, SiLU everywhere."""
    import torch
    from torch import nn

    torch.manual_seed(1)

    def cbs(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1) -> list[Any]:
        return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                nn.BatchNorm2d(cout), nn.SiLU()]  # fmt: skip

    class SqueezeExcite(nn.Module):
        def __init__(self, channels: int, squeezed: int) -> None:
            super().__init__()
            self.fc1 = nn.Conv2d(channels, squeezed, 1)
            self.fc2 = nn.Conv2d(squeezed, channels, 1)

        def forward(self, x: Any) -> Any:
            s = x.mean((2, 3), keepdim=True)
            return x * torch.sigmoid(self.fc2(nn.functional.silu(self.fc1(s))))

    class MBConv(nn.Module):
        def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int) -> None:
            super().__init__()
            mid = cin * expand
            layers = cbs(cin, mid) if expand != 1 else []
            layers += [*cbs(mid, mid, k, stride, mid), SqueezeExcite(mid, max(1, cin // 4)),
                       nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)]  # fmt: skip
            self.body = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x: Any) -> Any:
            return x + self.body(x) if self.residual else self.body(x)

    settings = [(1, 3, 16, 1, 1), (6, 3, 24, 2, 2), (6, 5, 40, 2, 2), (6, 3, 80, 3, 2),
                (6, 5, 112, 3, 1), (6, 5, 192, 4, 2), (6, 3, 320, 1, 1)]  # fmt: skip
    layers: list[Any] = cbs(3, 32, 3, 2)
    cin = 32
    for t, k, c, n, s in settings:
        for i in range(n):
            layers.append(MBConv(cin, c, k, s if i == 0 else 1, t))
            cin = c
    layers += [*cbs(cin, 1280), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, 1000)]
    return _settle(nn.Sequential(*layers), 1)


def convnext_style() -> Any:
    """A ConvNeXt-atto-sized network (Liu et al. 2022): depthwise 7x7, LayerNorm, GELU MLPs."""
    import torch
    from torch import nn

    torch.manual_seed(2)

    class ChannelNorm(nn.Module):
        def __init__(self, channels: int) -> None:
            super().__init__()
            self.norm = nn.LayerNorm(channels)

        def forward(self, x: Any) -> Any:
            return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    class Block(nn.Module):
        def __init__(self, dim: int) -> None:
            super().__init__()
            self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
            self.norm = nn.LayerNorm(dim)
            self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
            self.gamma = nn.Parameter(torch.full((dim,), 0.5))

        def forward(self, x: Any) -> Any:
            y = self.dw(x).permute(0, 2, 3, 1)
            y = self.fc2(nn.functional.gelu(self.fc1(self.norm(y))))
            return x + (self.gamma * y).permute(0, 3, 1, 2)

    dims, depths = (40, 80, 160, 320), (2, 2, 6, 2)
    layers: list[Any] = [nn.Conv2d(3, dims[0], 4, 4), ChannelNorm(dims[0])]
    for i, (dim, depth) in enumerate(zip(dims, depths, strict=True)):
        if i:
            layers += [ChannelNorm(dims[i - 1]), nn.Conv2d(dims[i - 1], dim, 2, 2)]
        layers += [Block(dim) for _ in range(depth)]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(dims[-1]),
               nn.Linear(dims[-1], 1000)]  # fmt: skip
    return _settle(nn.Sequential(*layers), 2)


LAYOUTS = {
    "mobilenet-v2": "tests.mobile:mobilenet_v2",
    "efficientnet-b0": "tests.mobile:efficientnet_b0",
    "convnext-style": "tests.mobile:convnext_style",
}
"""Layout name → the factory `edgeopt compress` takes."""


def images(path: Path, samples: int, seed: int) -> Path:
    """Images for the layouts: smooth random fields normalized like ImageNet inputs."""
    from edgeopt.host.compress import data as datasets

    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(samples, 3, SIZE // 16, SIZE // 16)).astype(np.float32)
    smooth = coarse.repeat(16, axis=2).repeat(16, axis=3)
    noise = 0.3 * rng.normal(size=smooth.shape).astype(np.float32)
    datasets.save(path, {"images": smooth + noise})
    return path
