"""Perturbation methods: occlusion.

Occlusion needs no gradient: it replaces one window of the input at a time by a baseline and
records how much the score drops. All windows are evaluated in one compiled program
(``vmap`` within a chunk of ``batch_size`` windows, ``lax.scan`` across chunks).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xai_core.core.checks import ScoreFn, check_baseline, check_batch_size, checked_score
from xai_core.core.chunking import (DEFAULT_BATCH_SIZE, FORWARD_ELEMENTS_PER_CORE, accumulation_dtype, chunked_sum,
                                resolve_batch_size)
from xai_core.graph.incremental import incremental as graph_incremental
from xai_core.core.inputs import split_inputs


def _per_axis(value: int | Sequence[int], x_shape: tuple[int, ...], what: str) -> tuple[int, ...]:
    """An int means the same on every axis; a sequence needs one positive int per axis of x."""
    values = (value,) * len(x_shape) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(values) != len(x_shape):
        raise ValueError(
            f"occlusion: {what} {value!r} has {len(values)} entries but x has {len(x_shape)} axes "
            f"(shape {x_shape}); give one per axis, e.g. {what}=(8, 8, {x_shape[-1]}) for an HxWxC image."
        )
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in values):
        raise ValueError(f"occlusion: {what} entries must be integers >= 1, got {value!r}.")
    return tuple(int(v) for v in values)


def window_starts(size: int, window: int, stride: int) -> np.ndarray:
    """Start of every window on one axis: ``1 + ceil((size - window) / stride)`` of them, ``k * stride``.

    As in Captum, the last window may stick out past the edge and is clipped there, so every
    element is covered at least once even when windows do not tile the axis.
    """
    return np.arange(1 + math.ceil((size - window) / stride)) * stride


def occlusion(
    score_fn: ScoreFn,
    window: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    baseline: Any = 0.0,
    batch_size: int | str | None = DEFAULT_BATCH_SIZE,
    incremental: bool = True,
) -> Callable[[jax.Array], jax.Array]:
    """Occlusion: ``a_i = mean over windows W containing i of [f(x) - f(x with W set to baseline)]``.

    Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014; the
    averaging over overlapping windows and the edge handling follow Captum's ``Occlusion``.

    Args:
      score_fn: ``x -> scalar`` for one example.
      window: window shape, one entry per axis of ``x`` (an int means the same on every axis),
        e.g. ``(8, 8, 3)`` to occlude 8x8 pixels across all channels of an HxWxC image.
      stride: step between windows per axis; ``None`` means ``window`` (non-overlapping). A
        stride larger than the window leaves gaps: elements no window covers get 0.
      baseline: value put in the occluded window: a scalar or an array of ``x``'s shape.
      batch_size: windows evaluated at once (bounds memory); ``"auto"`` (default) picks it
        from the input and the device; ``None`` means all at once.
      incremental: recompute, per window, only what the window reaches
        (:func:`xai_core.graph.incremental.incremental`, after Krypton: through each
        convolution or pooling the changed box grows by its receptive field, and the rest
        of each activation is the unoccluded pass's); equal to evaluating the whole model
        per window (``False``) to float rounding, and faster wherever the box stays smaller
        than the activation.

    ``x`` may be a pytree of inputs (:mod:`xai_core.core.inputs`): each attributed input is occluded
    on its own, the others held as they are (as Captum does for a tuple of inputs), and
    ``window`` / ``stride`` / ``baseline`` are then one value for every input or a pytree of
    ``x``'s structure with one entry per input; inputs marked ``xc.fixed`` are never occluded.

    >>> import jax.numpy as jnp, xai_core as xc
    >>> xc.occlusion(lambda x: jnp.sum(2.0 * x), window=2)(jnp.ones(4))  # each window drops the score by 4
    Array([4., 4., 4., 4.], dtype=float32)
    """
    score = checked_score(score_fn, "occlusion")
    batch_size = check_batch_size(batch_size, "occlusion")

    def attribution(x: Any) -> Any:
        inputs = split_inputs(x, "occlusion")
        xs = inputs.leaves
        fills = [check_baseline(b, a, "occlusion") for b, a in
                 zip(inputs.per_leaf(baseline, "baseline", "occlusion"), xs)]
        windows = inputs.per_leaf(window, "window", "occlusion")
        strides = inputs.per_leaf(stride, "stride", "occlusion")
        acc = accumulation_dtype(jnp.result_type(*xs))
        full = score(inputs.score_input(xs)).astype(acc)
        out = []
        for j, (a, fill, win, step) in enumerate(zip(xs, fills, windows, strides)):
            def occluded(leaf: jax.Array, j: int = j) -> jax.Array:
                return score(inputs.score_input([leaf if i == j else b for i, b in enumerate(xs)])).astype(acc)
            chunk = resolve_batch_size(batch_size, xs, FORWARD_ELEMENTS_PER_CORE, least=8)
            out.append(_occlude(occluded, full, a, fill, win, step, chunk, incremental))
        return inputs.result(out)

    return attribution


def _occlude(score: Callable[[jax.Array], jax.Array], full: jax.Array, x: jax.Array, fill: jax.Array,
             window: int | Sequence[int], stride: int | Sequence[int] | None, batch_size: int | None,
             incremental: bool) -> jax.Array:
    """Occlusion of one input ``x`` (the others held): ``score(x')`` is the score with ``x'`` in its place."""
    shape = tuple(x.shape)
    win = _per_axis(window, shape, "window")
    step = win if stride is None else _per_axis(stride, shape, "stride")
    too_big = [(axis, w, s) for axis, (w, s) in enumerate(zip(win, shape)) if w > s]
    if too_big:
        axis, w, s = too_big[0]
        raise ValueError(
            f"occlusion: window {win} is larger than x of shape {shape} on axis {axis} "
            f"({w} > {s}); use a window that fits inside the input."
        )
    per_axis = [window_starts(s, w, st) for s, w, st in zip(shape, win, step)]
    grid = np.stack([g.ravel() for g in np.meshgrid(*per_axis, indexing="ij")], axis=1)
    starts = jnp.asarray(grid)
    # How many windows cover each element: per axis, then an outer product over axes.
    coverage = np.ones((), np.float64)
    for size, w, s in zip(shape, win, per_axis):
        count = np.zeros(size)
        for start in s:
            count[start : start + w] += 1
        coverage = np.multiply.outer(coverage, count)
    acc = full.dtype
    # Each window as a box of the window's shape, moved inside x where it sticks out.
    boxes = jnp.asarray(np.minimum(grid, np.asarray(shape) - np.asarray(win)))
    changed = graph_incremental(score, x) if incremental else None

    def inside(p: jax.Array, origin: Any, sizes: Sequence[int]) -> jax.Array:
        """Which elements of the block at ``origin`` lie in window ``p``."""
        mask = jnp.ones(tuple(sizes), bool)
        for axis, size in enumerate(sizes):
            index = jnp.arange(size) + origin[axis]
            here = (index >= starts[p, axis]) & (index < starts[p, axis] + win[axis])
            mask &= here.reshape((-1,) + (1,) * (len(shape) - axis - 1))
        return mask

    def term(p: jax.Array) -> jax.Array:
        mask = inside(p, [0] * len(shape), shape)
        if changed is None:
            drop = full - score(jnp.where(mask, fill, x))
        else:
            box = [boxes[p, axis] for axis in range(len(shape))]
            patch = jnp.where(inside(p, box, win), jax.lax.dynamic_slice(fill, box, win),
                              jax.lax.dynamic_slice(x, box, win))
            drop = full - changed(box, patch)
        return jnp.where(mask, drop, 0)

    total = chunked_sum(term, len(starts), batch_size)
    return (total / jnp.asarray(np.maximum(coverage, 1), acc)).astype(x.dtype)
