"""Boxes for :mod:`xai_core.graph.incremental`: a value equal to a reference value except on
a box whose size is known at trace time and whose start is not.

A :class:`_Patch` holds the values on the box; per axis, an :class:`_Axis` says which
positions may differ (``floor((pos + lo) / stride) .. floor((pos + hi) / stride)`` for the
change's start ``pos`` on an input axis) and bounds how many. :func:`_windowed` carries a box
through an operation that reads windows of a padded input (a convolution, pooling, a pad):
the output box grows by the receptive field, and the operation runs, unpadded, on the slab
of the padded input that the output box reads, with the patch written over it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class _Axis:
    """The changed positions of one axis: ``floor((pos + lo) / stride) .. floor((pos + hi) / stride)``
    for the change's start ``pos`` on input axis ``source``; at most ``size`` of them."""
    source: int
    stride: int
    lo: int
    hi: int
    size: int


def _axis(source: int, stride: int, lo: int, hi: int, full: int) -> _Axis | None:
    """The axis, or ``None`` where its box would cover the whole axis anyway."""
    size = max(1, -(-(hi - lo) // stride) + 1)
    return None if size >= full else _Axis(source, stride, lo, hi, size)


class _Patch(NamedTuple):
    """A value equal to the unchanged one except on a box: ``value`` holds the box."""
    value: Any
    axes: tuple[_Axis | None, ...]  # None: the box spans the whole axis


class _Full(NamedTuple):
    value: Any


Kind = _Patch | _Full | None


def _patch(value: Any, axes: Sequence[_Axis | None]) -> Kind:
    return _Full(value) if all(a is None for a in axes) else _Patch(value, tuple(axes))


def _start(axis: _Axis | None, full: int, pos: Sequence[Any]) -> Any:
    if axis is None:
        return 0
    return jnp.clip(jnp.floor_divide(pos[axis.source] + axis.lo, axis.stride), 0, full - axis.size)


def _box(axes: Sequence[_Axis | None], shape: Sequence[int], pos: Sequence[Any]) -> tuple[list[Any], list[int]]:
    return ([_start(a, n, pos) for a, n in zip(axes, shape)],
            [n if a is None else a.size for a, n in zip(axes, shape)])


def _indices(starts: Sequence[Any]) -> list[Any]:
    return [jnp.asarray(s, jnp.int32) for s in starts]


def _slice(value: Any, starts: Sequence[Any], sizes: Sequence[int]) -> Any:
    if all(isinstance(s, int) and s == 0 for s in starts) and tuple(sizes) == value.shape:
        return value
    return jax.lax.dynamic_slice(value, _indices(starts), sizes)


def _overlay(slab: Any, patch: Any, offsets: Sequence[Any]) -> Any:
    """``slab`` with ``patch`` written at ``offsets`` (per axis, may be traced); the parts
    of ``patch`` outside ``slab`` are dropped."""
    pads, starts, mask = [], [], jnp.ones((), bool)
    for a, (length, n, o) in enumerate(zip(slab.shape, patch.shape, offsets)):
        if isinstance(o, int) and 0 <= o and o + n <= length:  # known to fit
            pads.append((o, length - n - o, 0))
            starts.append(0)
            if n == length:
                continue
        else:  # padded by the slab's length on both sides, every offset slices in bounds
            pads.append((length, length, 0))
            starts.append(length - o)
        index = jnp.arange(length).reshape((-1,) + (1,) * (slab.ndim - a - 1))
        mask = mask & (index >= o) & (index < o + n)
    moved = _slice(jax.lax.pad(patch, jnp.zeros((), patch.dtype), pads), starts, slab.shape)
    return moved if mask.ndim == 0 else jnp.where(mask, moved, slab)


def _on(kind: Kind, base: Any, axes: Sequence[_Axis | None], shape: Sequence[int], pos: Sequence[Any]) -> Any:
    """The value of ``kind`` (unchanged value ``base``) on the box ``axes`` of an output of
    ``shape``; size-1 axes of ``base`` that broadcast are kept whole."""
    if isinstance(kind, _Full) or jnp.ndim(base) == 0:
        return base if kind is None else kind.value
    whole = [b == 1 != n for b, n in zip(base.shape, shape)]
    axes = [None if w else a for a, w in zip(axes, whole)]
    starts, sizes = _box(axes, base.shape, pos)
    if kind is None:
        return _slice(base, starts, sizes)
    if tuple(kind.axes) == tuple(axes):
        return kind.value
    own, _ = _box(kind.axes, base.shape, pos)
    return _overlay(_slice(base, starts, sizes), kind.value, [o - s for o, s in zip(own, starts)])


def _dense(kind: Kind, base: Any, pos: Sequence[Any]) -> Any:
    if kind is None or isinstance(kind, _Full):
        return base if kind is None else kind.value
    starts, _ = _box(kind.axes, base.shape, pos)
    return jax.lax.dynamic_update_slice(base, kind.value, _indices(starts))


def _union(axes: Sequence[_Axis | None], full: int) -> _Axis | None:
    if not axes or any(a is None for a in axes):
        return None
    if all(a == axes[0] for a in axes):
        return axes[0]
    if len({(a.source, a.stride) for a in axes}) > 1:
        return None
    return _axis(axes[0].source, axes[0].stride, min(a.lo for a in axes), max(a.hi for a in axes), full)


# A window per input axis: (kernel extent (k - 1) * dilation + 1, stride, padding low, high),
# or None for an axis read whole (a convolution's features) whose output axis is then whole.
Window = tuple[int, int, int, int] | None


def _windowed(kind: _Patch, base: Any, pos: Sequence[Any], windows: Sequence[Window],
              out_axis: Sequence[int], out_shape: Sequence[int], fill: Any,
              apply: Callable[[Any], Any]) -> Kind:
    """An operation that reads windows of its (padded) input, on the slab its output box reads:
    ``apply`` computes it unpadded; ``fill`` pads. Input axis ``i`` is output axis ``out_axis[i]``."""
    axes: list[_Axis | None] = [None] * len(out_shape)
    for i, w in enumerate(windows):
        a = kind.axes[i]
        if w is not None and a is not None:
            extent, s, lo, _ = w
            axes[out_axis[i]] = _axis(a.source, a.stride * s, a.lo + a.stride * (lo - extent + s),
                                      a.hi + a.stride * lo, out_shape[out_axis[i]])
    out_starts, _ = _box(axes, out_shape, pos)
    in_starts, _ = _box(kind.axes, base.shape, pos)
    pads, starts, sizes, offsets = [], [], [], []
    for i, w in enumerate(windows):
        extent, s, lo, hi = (1, 1, 0, 0) if w is None else w
        pads.append((lo, hi, 0))
        a = axes[out_axis[i]] if w is not None else None
        start = 0 if a is None else out_starts[out_axis[i]] * s
        starts.append(start)
        sizes.append(base.shape[i] + lo + hi if a is None else (a.size - 1) * s + extent)
        offsets.append(in_starts[i] + lo - start)
    padded = base if all(p == (0, 0, 0) for p in pads) else jax.lax.pad(base, jnp.asarray(fill, base.dtype), pads)
    return _patch(apply(_overlay(_slice(padded, starts, sizes), kind.value, offsets)), axes)
