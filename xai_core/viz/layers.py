"""A layer's channels as one picture (tf-explain's ``ExtractActivations``), and a grid of
feature visualizations, with pillow and numpy only."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np
from PIL import Image


def activation_grid(activations: np.ndarray, *, channel_axis: int = -1, columns: int = 8, pad: int = 1) -> np.ndarray:
    """Every channel of one example's layer output ``(h, w, C)`` (or ``(C, h, w)`` with
    ``channel_axis=0``) as a greyscale tile, each min-max scaled to its own range, tiled
    ``columns`` wide with ``pad`` white pixels between: ``uint8 (rows * (h + pad) - pad, ...)``.

    Example:
        >>> import numpy as np
        >>> activation_grid(np.random.rand(4, 4, 10), columns=5).shape
        (9, 24)
    """
    a = np.asarray(activations, np.float64)
    if a.ndim != 3:
        raise ValueError(f"activation_grid: needs one example's (h, w, C) or (C, h, w) layer output, got shape {a.shape}.")
    if not isinstance(columns, int) or columns < 1 or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"activation_grid: columns must be an int >= 1 and pad an int >= 0, got {columns!r}, {pad!r}.")
    a = np.moveaxis(a, channel_axis, 0)
    c, h, w = a.shape
    lo, hi = a.min(axis=(1, 2), keepdims=True), a.max(axis=(1, 2), keepdims=True)
    tiles = np.where(hi > lo, (a - lo) / np.where(hi > lo, hi - lo, 1), 0.0)
    cols = min(columns, c)
    rows = -(-c // cols)
    out = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad), 255, np.uint8)
    for k in range(c):
        r, q = divmod(k, cols)
        out[r * (h + pad):r * (h + pad) + h, q * (w + pad):q * (w + pad) + w] = np.round(255 * tiles[k])
    return out


def save_activations(activations: np.ndarray, path: str | pathlib.Path, *, channel_axis: int = -1,
                     columns: int = 8, scale: int = 4) -> pathlib.Path:
    """Write :func:`activation_grid` as a PNG, enlarged ``scale`` times; returns the path."""
    grid = activation_grid(activations, channel_axis=channel_axis, columns=columns)
    out = pathlib.Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.Resampling.NEAREST).save(out)
    return out


def save_features(images: Sequence[np.ndarray] | np.ndarray, path: str | pathlib.Path, *,
                  titles: Sequence[str] | None = None, columns: int = 8, scale: int = 2) -> pathlib.Path:
    """Write feature visualizations (``(n, H, W, 3)`` in [0, 1], e.g. from
    :func:`xai_core.inside.featureviz.channels`) as a PNG grid, ``columns`` per row; returns the path."""
    from xai_core.viz.images import save_grid

    images = list(np.asarray(images))
    rows = [images[i:i + columns] for i in range(0, len(images), columns)]
    col_titles = None
    if titles is not None:
        if len(titles) != len(images):
            raise ValueError(f"save_features: {len(titles)} titles for {len(images)} images.")
        col_titles = list(titles[:columns]) if len(images) <= columns else None
    return save_grid(rows, path, col_titles=col_titles, scale=scale)
