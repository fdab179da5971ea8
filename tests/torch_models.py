"""Small PyTorch reference models for the adapter tests and the Captum cross-checks.

Three ways of writing a model (DESIGN.md, lesson 2): ``nn.Sequential`` layers, a
ResNet-style network with BatchNorm and residual adds, and one written with
functional ops only (``F.relu``, ``torch.flatten``, an inline ``torch.softmax``).
Each has ``logits(x)``: its own forward without the final softmax, the reference
for ``m.logits``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def randomize_batchnorm(module: nn.Module) -> None:
    """Random running statistics, scales and shifts for every BatchNorm2d of ``module``."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


class SmallCNN(nn.Sequential):
    """Conv, ReLU, max-pool, flatten, linear, softmax, as layers."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(8 * 4 * 4, classes), nn.Softmax(dim=1))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return nn.Sequential(*list(self)[:-1])(x)


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 conv + BatchNorm, a residual add, one shared ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNetish(nn.Module):
    """A two-stage ResNet with BatchNorm (random running statistics) and a log_softmax."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, 2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)
        randomize_batchnorm(self)  # non-trivial running statistics, so eval mode matters

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.logits(x), dim=1)


class Functional(nn.Module):
    """Only functional ops between two parameter holders; inline softmax at the end."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8 + 4, classes)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv(x))
        skip = torch.amax(x, dim=1, keepdim=True) * h  # a functional op outside any layer
        pooled = F.avg_pool2d(h + skip, 2)
        feats = torch.cat([torch.flatten(pooled, 1), h.mean(dim=(2, 3))], dim=1)
        return self.fc(torch.tanh(feats))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=-1)


MODELS: dict[str, Callable[[], nn.Module]] = {
    "small_cnn": SmallCNN,
    "resnetish": ResNetish,
    "functional": Functional,
}

#: One example's shape (no batch axis), NCHW without N.
SHAPE = (3, 16, 16)


def build(name: str, seed: int = 0) -> nn.Module:
    """The model ``name`` with weights from ``seed``, in eval mode."""
    torch.manual_seed(seed)
    return MODELS[name]().eval()


def inputs(n: int, seed: int = 1) -> torch.Tensor:
    """``n`` deterministic inputs of shape ``SHAPE``."""
    return torch.randn((n, *SHAPE), generator=torch.Generator().manual_seed(seed))
