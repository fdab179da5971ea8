"""Benchmark models: a ResNet-18 in torch (torchvision's layout and names, built by hand since
torchvision cannot be installed here), random weights; the Flax one is in ``flax_resnet.py``.

``width`` scales every stage (64 is ResNet-18; the ``cpu-small`` suite uses 8).
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 conv + BatchNorm, a residual add (torchvision's layout and names)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.downsample = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out += identity  # in place, as torchvision
        return self.relu(out)


class ResNet18(nn.Module):
    """ResNet-18 (BasicBlock x [2, 2, 2, 2]) for NCHW images, named as torchvision's."""

    def __init__(self, num_classes: int = 1000, width: int = 64) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width)
        self.relu, self.maxpool = nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
        cin = width
        for stage, cout in enumerate(width * k for k in (1, 2, 4, 8)):
            blocks = [BasicBlock(cin, cout, 2 if stage else 1), BasicBlock(cout, cout)]
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
            cin = cout
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(8 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def torch_resnet18(num_classes: int = 1000, seed: int = 0, width: int = 64) -> nn.Module:
    """A ResNet-18 with random weights and non-trivial BatchNorm statistics, in eval mode.

    Convolutions are initialised as torchvision does (Kaiming normal, fan-out, ReLU gain).
    This matters for the comparisons: with torch's default conv init the activations shrink
    layer by layer (logits of order 0.1), and a float32 input gradient was 1.3e-3 away from
    the float64 one, in torch and in JAX alike; with this init it is 8e-7."""
    torch.manual_seed(seed)
    return _initialised(ResNet18(num_classes, width))


def _initialised(model: nn.Module) -> nn.Module:
    """torchvision's conv init (Kaiming normal, fan-out, ReLU gain) and non-trivial BatchNorm
    statistics, drawn from torch's global generator; in eval mode."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


class SmallResNet(nn.Module):
    """The small residual CNN a notebook user tries first: a 3x3 stem of ``width`` channels,
    a residual block at ``width``, one at ``2 * width`` with stride 2, global average pooling,
    a linear classifier (32/64 channels by default; 64x64 inputs in the benchmarks)."""

    def __init__(self, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = BasicBlock(width, width)
        self.layer2 = BasicBlock(width, 2 * width, 2)
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x)))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def torch_small_resnet(num_classes: int = 10, seed: int = 0, width: int = 32) -> nn.Module:
    """:class:`SmallResNet` with random weights, initialised as :func:`torch_resnet18`, in eval mode."""
    torch.manual_seed(seed)
    return _initialised(SmallResNet(num_classes, width))
