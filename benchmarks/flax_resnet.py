"""ResNet-18 (BasicBlock x [2, 2, 2, 2]) in flax.linen, NHWC, for benchmarks (random weights)."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a residual connection (He et al., 2016)."""

    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        norm = lambda: nn.BatchNorm(use_running_average=True)  # noqa: E731
        y = nn.Conv(self.features, (3, 3), self.strides, padding=1, use_bias=False)(x)
        y = nn.relu(norm()(y))
        y = norm()(nn.Conv(self.features, (3, 3), padding=1, use_bias=False)(y))
        if x.shape[-1] != self.features or self.strides != 1:
            x = norm()(nn.Conv(self.features, (1, 1), self.strides, use_bias=False)(x))
        return nn.relu(x + y)


class ResNet18(nn.Module):
    """ResNet-18 returning logits for a batch of NHWC images."""

    num_classes: int = 1000
    stages: Sequence[int] = (2, 2, 2, 2)
    width: int = 64

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Conv(self.width, (7, 7), 2, padding=3, use_bias=False)(x)
        x = nn.relu(nn.BatchNorm(use_running_average=True)(x))
        x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        for stage, blocks in enumerate(self.stages):
            for block in range(blocks):
                x = BasicBlock(self.width * 2**stage, 2 if stage > 0 and block == 0 else 1)(x)
        return nn.Dense(self.num_classes)(jnp.mean(x, axis=(1, 2)))


def init_resnet18(key: jax.Array, size: int = 224, num_classes: int = 1000,
                  width: int = 64) -> tuple[ResNet18, dict]:
    """A ResNet-18 (``width`` channels in its first stage) and its variables for
    ``size x size x 3`` inputs."""
    model = ResNet18(num_classes, width=width)
    return model, model.init(key, jnp.zeros((1, size, size, 3)))
