"""A tiny vision transformer in PyTorch (patch embedding, two pre-norm attention blocks with
LayerNorm and GELU, mean pooling), for the LRP conservation test through ``from_torch``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, bias: bool) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim, bias=bias), nn.LayerNorm(dim, bias=bias)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim, bias=bias), nn.Linear(dim, dim, bias=bias)
        self.fc1, self.fc2 = nn.Linear(dim, 2 * dim, bias=bias), nn.Linear(2 * dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5, dim=-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(n, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class TinyViT(nn.Module):
    def __init__(self, bias: bool = True, dim: int = 16, classes: int = 5) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, stride=4, bias=bias)
        self.pos = nn.Parameter(torch.randn(1, 16, dim) * 0.1 * bias)
        self.blocks = nn.Sequential(Block(dim, 2, bias), Block(dim, 2, bias))
        self.norm, self.head = nn.LayerNorm(dim, bias=bias), nn.Linear(dim, classes, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        return self.head(self.norm(self.blocks(x)).mean(1))
