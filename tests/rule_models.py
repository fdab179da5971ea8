"""Small PyTorch models for the rule-method cross-checks (DeepLift, LRP) and the
functional-ops test: an MLP, a CNN without max-pooling, a ResNet-style network with BatchNorm
and residual adds (one ReLU module per use, as Captum's hooks need), and one network written
three ways (modules; functional ops with an inline residual add; one ReLU module reused).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch_models import randomize_batchnorm


class MLP(nn.Sequential):
    def __init__(self, classes: int = 5) -> None:
        super().__init__(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(),
                         nn.Linear(12, classes))


class CNN(nn.Sequential):
    def __init__(self, classes: int = 5) -> None:
        super().__init__(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, classes))


class Block(nn.Module):
    """conv-BN-ReLU-conv-BN, a residual add, a ReLU: each ReLU its own module."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()
        self.conv2, self.bn2, self.relu2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu2(self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x))))) + x)


class ResNet(nn.Module):
    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.conv, self.bn, self.relu = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()
        self.block1, self.block2 = Block(8), Block(8)
        self.pool, self.flat, self.fc = nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, classes)
        randomize_batchnorm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.block1(self.relu(self.bn(self.conv(x)))))
        return self.fc(self.flat(self.pool(x)))


class ThreeWays(nn.Module):
    """One network with BatchNorm, a residual add and max-pooling, written as ``style``:
    ``"modules"`` (a ReLU module per use, ``nn.MaxPool2d``), ``"functional"`` (``F.relu``,
    ``F.max_pool2d``) or ``"reused"`` (one ReLU module used three times). The parameters have
    the same names in every style, so one ``state_dict`` loads into all three."""

    def __init__(self, style: str, classes: int = 5) -> None:
        super().__init__()
        self.style = style
        self.conv1, self.bn1 = nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.fc = nn.Linear(6 * 8 * 8, classes)
        if style == "modules":
            self.relus = nn.ModuleList([nn.ReLU(), nn.ReLU(), nn.ReLU()])
            self.pool = nn.MaxPool2d(2)
        elif style == "reused":
            self.relu = nn.ReLU()
            self.pool = nn.MaxPool2d(2)

    def act(self, k: int, x: torch.Tensor) -> torch.Tensor:
        if self.style == "modules":
            return self.relus[k](x)
        return self.relu(x) if self.style == "reused" else F.relu(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(0, self.bn1(self.conv1(x)))
        h = self.act(1, self.conv2(h)) + h
        h = F.max_pool2d(h, 2) if self.style == "functional" else self.pool(h)
        return self.fc(torch.flatten(self.act(2, h), 1))


def build(cls: type[nn.Module], *args: object, seed: int = 0) -> nn.Module:
    """``cls(*args)`` with weights from ``seed``, float64, eval mode."""
    torch.manual_seed(seed)
    return cls(*args).double().eval()


def three_ways(seed: int = 0) -> dict[str, nn.Module]:
    """The three styles of :class:`ThreeWays` with one set of weights."""
    nets = {style: build(ThreeWays, style, seed=seed) for style in ("modules", "functional", "reused")}
    with torch.no_grad():
        nets["modules"].bn1.running_mean.uniform_(-0.5, 0.5)
        nets["modules"].bn1.running_var.uniform_(0.5, 2.0)
    state = nets["modules"].state_dict()
    for net in nets.values():
        net.load_state_dict(state)
    return nets


def images(n: int, size: int = 16, seed: int = 1) -> torch.Tensor:
    """``n`` float64 images of shape ``(3, size, size)``."""
    return torch.randn((n, 3, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
