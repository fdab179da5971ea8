"""What every metric shares: reading a map against its input, features (pixels, grid cells or
segments), ranks, correlations and the area under a curve, all in pure ``jax.numpy``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xai_core.core.chunking import DEFAULT_BATCH_SIZE, resolve_batch_size
from xai_core.core.checks import check_batch_size, check_positive_int

__all__ = ["DEFAULT_BATCH_SIZE", "auc", "pearson", "rankdata", "spearman"]


def as_float(a: Any) -> jax.Array:
    """``a`` as an array of at least float32."""
    a = jnp.asarray(a)
    return a.astype(jnp.promote_types(a.dtype, jnp.float32))


def feature_map(attribution: Any, x_shape: tuple[int, ...], channel_axis: int | None, metric: str) -> jax.Array:
    """The map that ranks features: ``attribution`` summed over ``channel_axis`` when it has x's
    shape, taken as it is when it already lacks that axis (a CAM); ``channel_axis=None``: every
    element of ``x`` is a feature and the map must have x's shape."""
    a = as_float(attribution)
    if channel_axis is None:
        expected = x_shape
    else:
        axis = channel_axis % len(x_shape)
        expected = x_shape[:axis] + x_shape[axis + 1:]
        if a.shape == x_shape:
            a = a.sum(axis=axis)
    if a.shape != expected:
        raise ValueError(
            f"{metric}: the attribution has shape {tuple(jnp.shape(attribution))} but x has {x_shape}; with "
            f"channel_axis={channel_axis} it must be {x_shape} or {expected}. Pass ONE example (vmap for batches), "
            "and channel_axis=None to treat every element of x as a feature."
        )
    return a


def expand(removed: jax.Array, x_shape: tuple[int, ...], channel_axis: int | None) -> jax.Array:
    """A per-feature boolean array broadcast back to x's shape (a pixel covers all its channels)."""
    if channel_axis is None:
        return removed
    return jnp.broadcast_to(jnp.expand_dims(removed, channel_axis % len(x_shape)), x_shape)


def check_segments(segments: Any, map_shape: tuple[int, ...], n_segments: int | None,
                   metric: str) -> tuple[jax.Array, int]:
    """Integer segment labels of the map's shape and their number ``n``. Concrete labels are
    relabelled ``0..n-1``; traced ones (segments computed inside ``vmap``) need ``n_segments``,
    the number that fixes the program's shape, and labels in ``[0, n_segments)``."""
    if isinstance(segments, jax.core.Tracer):
        labels = segments
    else:  # concrete (also inside jit): relabel with numpy, the number of segments is static
        labels = np.asarray(segments)
    if tuple(labels.shape) != tuple(map_shape) or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(
            f"{metric}: segments must be an integer array of the map's shape {map_shape}, got "
            f"{labels.dtype} {tuple(labels.shape)}; e.g. xai_core.metrics.grid_segments({map_shape[:2]}, cell=4)."
        )
    if n_segments is not None:
        return jnp.asarray(labels, jnp.int32), check_positive_int(n_segments, "n_segments", metric)
    if isinstance(labels, jax.core.Tracer):
        raise ValueError(
            f"{metric}: these segments are traced (computed inside jit or vmap), so their number is "
            "unknown when the program is built; pass n_segments= (labels in [0, n_segments))."
        )
    unique, relabelled = np.unique(labels, return_inverse=True)
    return jnp.asarray(relabelled.reshape(map_shape), jnp.int32), int(unique.size)


def grid_segments(shape: tuple[int, int], cell: int | None = None, *, cells: int | None = None) -> jax.Array:
    """Labels of a grid over an ``(H, W)`` map, numbered row by row: squares of ``cell`` pixels
    (the last row and column may be smaller), or ``cells`` x ``cells`` cells of near-equal size
    (pixel ``i`` in cell row ``i * cells // H``, as a nearest-neighbour upsampling of a
    ``cells`` x ``cells`` mask).

    >>> grid_segments((4, 4), 2)
    Array([[0, 0, 1, 1],
           [0, 0, 1, 1],
           [2, 2, 3, 3],
           [2, 2, 3, 3]], dtype=int32)
    """
    if (cell is None) == (cells is None):
        raise ValueError("grid_segments: give exactly one of cell= (pixels per cell) or cells= (cells per side).")
    h, w = shape
    if cell is not None:
        check_positive_int(cell, "cell", "grid_segments")
        rows, cols, per_row = np.arange(h) // cell, np.arange(w) // cell, math.ceil(w / cell)
    else:
        check_positive_int(cells, "cells", "grid_segments")
        rows, cols, per_row = np.arange(h) * cells // h, np.arange(w) * cells // w, cells
    return jnp.asarray(rows[:, None] * per_row + cols[None, :], jnp.int32)


def features(attribution: jax.Array, segments: Any, n_segments: int | None, reduce: str,
             metric: str) -> tuple[jax.Array, jax.Array, int]:
    """Per-feature scores of a map: every element its own feature (``segments=None``), or the
    ``reduce`` ("sum" or "mean") of the map over each segment. Returns ``(scores (n,), labels of
    the map's shape, n)``."""
    if segments is None:
        n = attribution.size
        return attribution.ravel(), jnp.arange(n, dtype=jnp.int32).reshape(attribution.shape), n
    labels, n = check_segments(segments, attribution.shape, n_segments, metric)
    total = jax.ops.segment_sum(attribution.ravel(), labels.ravel(), n)
    if reduce == "mean":
        size = jax.ops.segment_sum(jnp.ones(attribution.size, total.dtype), labels.ravel(), n)
        total = total / jnp.maximum(size, 1)
    return total, labels, n


def rankdata(values: jax.Array) -> jax.Array:
    """Ranks ``1..n`` of a 1-d array, ties getting their average rank (``scipy.stats.rankdata``).

    >>> rankdata(jnp.array([3.0, 1.0, 3.0]))
    Array([2.5, 1. , 2.5], dtype=float32)
    """
    values = jnp.ravel(values)
    ordered = jnp.sort(values)
    below = jnp.searchsorted(ordered, values, side="left")
    through = jnp.searchsorted(ordered, values, side="right")
    return as_float((below + through + 1) / 2).astype(as_float(values).dtype)


def pearson(a: jax.Array, b: jax.Array) -> jax.Array:
    """Pearson correlation of two arrays' elements; 0 when either is constant.

    >>> float(pearson(jnp.array([1.0, 2.0, 3.0]), jnp.array([2.0, 4.0, 7.0])))  # doctest: +ELLIPSIS
    0.99...
    """
    a, b = as_float(jnp.ravel(a)), as_float(jnp.ravel(b))
    a, b = a - a.mean(), b - b.mean()
    scale = jnp.sqrt(jnp.sum(a * a) * jnp.sum(b * b))
    return jnp.where(scale > 0, jnp.sum(a * b) / jnp.where(scale > 0, scale, 1), 0.0)


def spearman(a: jax.Array, b: jax.Array) -> jax.Array:
    """Spearman rank correlation (Pearson of the average ranks, as ``scipy.stats.spearmanr``).

    >>> float(spearman(jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 10.0, 100.0])))
    1.0
    """
    return pearson(rankdata(a), rankdata(b))


def auc(curve: jax.Array) -> jax.Array:
    """Area under a curve sampled at evenly spaced points of ``[0, 1]`` (trapezoid rule), so
    a constant curve ``c`` has area ``c``.

    >>> float(auc(jnp.array([1.0, 0.5, 0.0])))
    0.5
    """
    curve = as_float(curve)
    n = curve.shape[-1]
    if n < 2:
        raise ValueError(f"auc: a curve needs at least 2 points, got {n}.")
    return (curve.sum(-1) - (curve[..., 0] + curve[..., -1]) / 2) / (n - 1)


def mapped(fn: Callable[[Any], Any], xs: Any, batch_size: int | str | None, like: Any, metric: str) -> Any:
    """``jax.vmap(fn)(xs)`` evaluated ``batch_size`` at a time (``jax.lax.map``; ``"auto"`` sized
    by ``like``, one input; ``None``: all at once)."""
    size = resolve_batch_size(check_batch_size(batch_size, metric), [like])
    n = jax.tree.leaves(xs)[0].shape[0]
    if size is None or size >= n:
        return jax.vmap(fn)(xs)
    return jax.lax.map(fn, xs, batch_size=size)


