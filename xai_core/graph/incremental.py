"""Incremental inference: a function re-evaluated with one box of its input changed,
recomputing only what the change reaches.

Nakandala, Kumar & Papakonstantinou, "Incremental and Approximate Inference for Faster
Occlusion-based Deep CNN Explanations" (SIGMOD 2019, Krypton): a change to a box of a CNN's
input reaches, through each convolution or pooling, only a box grown by its receptive field;
everything else equals the unchanged forward pass. :func:`incremental` traces ``fn`` once,
keeps every value of the unchanged pass, and evaluates the changed pass with each value held
as one of three kinds:

- unchanged (``None``): the unchanged pass's value;
- a patch (:mod:`xai_core.graph.boxes`): the values on a box, all else unchanged; the box's
  size per axis is known at trace time, its start is not, so the program has static shapes
  for any box position;
- a full value, where the box covered an axis that no box rule follows (a global
  mean, a dense layer, a flatten): the computation goes on densely from there.

Convolutions, windowed reductions (pooling) and pads run on the slab of their padded input
that the output box reads; elementwise operations on the union of their operands' boxes;
transposes, broadcasts, reshapes that keep each boxed axis whole and slices or concatenations
of the other axes move the box; reductions over whole axes keep it;
a ``dot_general`` whose one changed operand has its box on free (not contracted) axes only
(a dense layer on some rows) computes just those rows; a ``gather`` of rows (``z[at]``) takes
those in the box from it. With ``causal=True`` (a causal
sequence model, changed from a position ``j`` on), a ``dot_general`` of two changed operands
(attention's query-key scores, its weights times the values) computes the rows of its first
operand's box against the other operand in full: in a causal model a row ``q < j`` never
reads a changed position, so every row before the box keeps its value (AttriBoT's prefix
reuse, Liu et al. 2025, is this on a KV cache).
Any other operation gets dense operands. The result equals ``fn`` on the changed input to
float rounding (the same operations on the same values, in a smaller shape).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import DropVar, Literal

from xai_core.graph.boxes import (Kind, Window, _Axis, _box, _dense, _Full, _indices, _on, _Patch, _patch, _union,
                                  _windowed)
from xai_core.graph.interpreter import _bind, _inner
from xai_core.graph.layout import CALLS, ELEMENTWISE, REDUCTIONS


def _conv(eqn: Any, kinds: Sequence[Kind], bases: Sequence[Any], pos: Sequence[Any]) -> Kind | None:
    p = eqn.params
    if kinds[1] is not None or any(d != 1 for d in p["lhs_dilation"]) or p["batch_group_count"] != 1:
        return None
    lhs_spec, rhs_spec, out_spec = p["dimension_numbers"]
    rank = len(lhs_spec)
    windows: list[Window] = [None] * rank
    out_axis = [0] * rank
    windows[lhs_spec[0]] = (1, 1, 0, 0)
    out_axis[lhs_spec[0]], out_axis[lhs_spec[1]] = out_spec[0], out_spec[1]
    for j in range(2, rank):
        k = bases[1].shape[rhs_spec[j]]
        extent = (k - 1) * p["rhs_dilation"][j - 2] + 1
        windows[lhs_spec[j]] = (extent, p["window_strides"][j - 2], *p["padding"][j - 2])
        out_axis[lhs_spec[j]] = out_spec[j]
    params = dict(p, padding=((0, 0),) * (rank - 2))
    return _windowed(kinds[0], bases[0], pos, windows, out_axis, eqn.outvars[0].aval.shape, 0,
                     lambda slab: eqn.primitive.bind(slab, bases[1], **params))


_FILL = {"reduce_window_max": -jnp.inf, "reduce_window_min": jnp.inf, "reduce_window_sum": 0}


def _window_op(eqn: Any, kinds: Sequence[Kind], bases: Sequence[Any], pos: Sequence[Any]) -> Kind | None:
    name, p = eqn.primitive.name, eqn.params
    shape = eqn.outvars[0].aval.shape
    ident = list(range(len(shape)))
    if name == "pad":
        config = p["padding_config"]
        if kinds[1] is not None or any(interior for _, _, interior in config):
            return None
        return _windowed(kinds[0], bases[0], pos, [(1, 1, lo, hi) for lo, hi, _ in config], ident, shape,
                         bases[1], lambda slab: slab)
    if any(d != 1 for d in p["base_dilation"]):
        return None
    windows = [((k - 1) * d + 1, s, lo, hi) for k, d, s, (lo, hi) in
               zip(p["window_dimensions"], p["window_dilation"], p["window_strides"], p["padding"])]
    fill = _FILL[name]
    if not jnp.issubdtype(bases[0].dtype, jnp.floating) and fill:
        info = jnp.iinfo(bases[0].dtype)
        fill = info.min if fill < 0 else info.max
    params = dict(p, padding=((0, 0),) * len(shape))
    return _windowed(kinds[0], bases[0], pos, windows, ident, shape, fill,
                     lambda slab: eqn.primitive.bind(slab, **params))


def _moved(eqn: Any, kind: _Patch) -> Kind | None:
    """Transposes, broadcasts, reshapes that keep each boxed axis whole, slices of the other axes
    and reductions over them move the box."""
    name, p = eqn.primitive.name, eqn.params
    in_shape, out_shape = eqn.invars[0].aval.shape, eqn.outvars[0].aval.shape
    if name == "transpose":
        axes = [kind.axes[a] for a in p["permutation"]]
        return _patch(jax.lax.transpose(kind.value, p["permutation"]), axes)
    if name == "broadcast_in_dim":
        axes = [None] * len(out_shape)
        for i, d in enumerate(p["broadcast_dimensions"]):
            axes[d] = kind.axes[i] if in_shape[i] == out_shape[d] else None
    elif name in ("reshape", "squeeze", "expand_dims"):
        axes = _regrouped(in_shape, out_shape, kind.axes)
        if axes is None:
            return None
    elif name == "slice" and all(a is None or (lo, hi, st) == (0, n, 1) for a, lo, hi, st, n in zip(
            kind.axes, p["start_indices"], p["limit_indices"], p["strides"] or [1] * len(in_shape), in_shape)):
        limits = [hi if a is None else a.size for a, hi in zip(kind.axes, p["limit_indices"])]
        return _patch(jax.lax.slice(kind.value, p["start_indices"], limits, p["strides"]), kind.axes)
    elif name in REDUCTIONS and all(kind.axes[a] is None for a in p["axes"]) and len(eqn.outvars) == 1:
        axes = [a for i, a in enumerate(kind.axes) if i not in p["axes"]]
        return _patch(eqn.primitive.bind(kind.value, **p), axes)
    else:
        return None
    sizes = [n if a is None else a.size for a, n in zip(axes, out_shape)]
    if name == "broadcast_in_dim":
        return _patch(jax.lax.broadcast_in_dim(kind.value, sizes, p["broadcast_dimensions"]), axes)
    return _patch(jax.lax.reshape(kind.value, sizes), axes)


def _regrouped(in_shape: Sequence[int], out_shape: Sequence[int], axes: Sequence[Any]) -> list[Any] | None:
    """A reshape's box: each boxed input axis must reach the output whole (the same size, with
    the same number of elements before it); the axes around it may split or merge."""
    out: list[Any] = [None] * len(out_shape)
    before_in = [math.prod(in_shape[:i]) for i in range(len(in_shape))]
    before_out = [math.prod(out_shape[:j]) for j in range(len(out_shape))]
    for i, a in enumerate(axes):
        if a is None:
            continue
        match = [j for j in range(len(out_shape)) if out_shape[j] == in_shape[i] and before_out[j] == before_in[i]]
        if not match:
            return None
        out[match[0]] = a
    return out


def _concatenated(eqn: Any, kinds: Sequence[Kind], bases: Sequence[Any], pos: Sequence[Any]) -> Kind | None:
    """A concatenation along an axis no operand's box covers: the boxes' union, per operand."""
    dim = eqn.params["dimension"]
    shape = eqn.outvars[0].aval.shape
    if any(isinstance(k, _Patch) and k.axes[dim] is not None for k in kinds):
        return None
    axes = [None if d == dim else _union([k.axes[d] for k in kinds if isinstance(k, _Patch)], n)
            for d, n in enumerate(shape)]
    values = [_on(k, b, axes, [n if d != dim else b.shape[d] for d, n in enumerate(shape)], pos)
              for k, b in zip(kinds, bases)]
    return _patch(jax.lax.concatenate(values, dim), axes)


def _gathered(eqn: Any, kinds: Sequence[Kind], bases: Sequence[Any], pos: Sequence[Any], out_base: Any) -> Kind | None:
    """Rows taken from a value boxed on one axis (``z[at]``, unchanged indices): rows inside the
    box come from the patch, the rest from the unchanged output. Dense but small."""
    kind, p = kinds[0], eqn.params
    dims = p["dimension_numbers"]
    boxed = [d for d, a in enumerate(kind.axes) if a is not None] if isinstance(kind, _Patch) else []
    if kinds[1] is not None or len(boxed) != 1 or dims.operand_batching_dims or \
            boxed[0] not in dims.collapsed_slice_dims or boxed[0] not in dims.start_index_map or \
            any(size != n for d, (size, n) in enumerate(zip(p["slice_sizes"], bases[0].shape)) if d != boxed[0]):
        return None
    axis, column = boxed[0], list(dims.start_index_map).index(boxed[0])
    (start,), _ = _box([kind.axes[axis]], [bases[0].shape[axis]], pos)
    at = bases[1][..., column]
    inside = (at >= start) & (at < start + kind.axes[axis].size)
    shifted = bases[1].at[..., column].set(jnp.clip(at - start, 0, kind.axes[axis].size - 1))
    taken = _bind(eqn, [kind.value, shifted])[0]
    return _Full(jnp.where(jnp.expand_dims(inside, dims.offset_dims), taken, out_base))


def _elementwise(eqn: Any, kinds: Sequence[Kind], bases: Sequence[Any], pos: Sequence[Any]) -> Kind:
    shape = eqn.outvars[0].aval.shape
    axes = [_union([k.axes[d] for k, b in zip(kinds, bases) if isinstance(k, _Patch) and b.shape[d] == n], n)
            for d, n in enumerate(shape)]
    values = [_on(k, b, axes, shape, pos) for k, b in zip(kinds, bases)]
    return _patch(_bind(eqn, values)[0], axes)


def _dot(eqn: Any, kinds: Sequence[Kind], bases: Sequence[Any], pos: Sequence[Any], causal: bool) -> Kind | None:
    """A ``dot_general`` on the rows of one operand's box (see the module doc), or ``None``."""
    (contract, batch) = eqn.params["dimension_numbers"]
    free = [[d for d in range(len(b.shape)) if d not in contract[i] and d not in batch[i]] for i, b in enumerate(bases)]
    rows = [i for i, k in enumerate(kinds) if isinstance(k, _Patch)
            and all(a is None or d in free[i] for d, a in enumerate(k.axes))]
    if not rows or (kinds[1 - rows[0]] is not None and not causal):
        return None
    lead = rows[0]
    operands = [kinds[lead].value if i == lead else _dense(k, b, pos) for i, (k, b) in enumerate(zip(kinds, bases))]
    axes: list[_Axis | None] = [None] * len(batch[0])
    for i in (0, 1):
        axes += [kinds[lead].axes[d] if i == lead else None for d in free[i]]
    return _patch(_bind(eqn, operands)[0], axes)


def _record(jaxpr: Any, consts: Sequence[Any], args: Sequence[Any]) -> tuple[dict, dict]:
    """The unchanged pass: every variable's value, and the records of the call bodies it entered."""
    env: dict = dict(zip(jaxpr.constvars, consts)) | dict(zip(jaxpr.invars, args))
    calls: dict = {}
    for i, eqn in enumerate(jaxpr.eqns):
        ins = [v.val if isinstance(v, Literal) else env[v] for v in eqn.invars]
        body = _inner(eqn) if eqn.primitive.name in CALLS else None
        if body is not None and len(body.jaxpr.invars) == len(ins):
            calls[i] = _record(body.jaxpr, body.consts, ins)
            outs = [calls[i][0][v] if not isinstance(v, Literal) else v.val for v in body.jaxpr.outvars]
        else:
            outs = _bind(eqn, ins)
        env.update((v, x) for v, x in zip(eqn.outvars, outs) if not isinstance(v, DropVar))
    return env, calls


def _changed(jaxpr: Any, record: tuple[dict, dict], args: Sequence[Kind], pos: Sequence[Any],
             causal: bool = False) -> list[Kind]:
    """The changed pass: each variable's :data:`Kind`; unchanged values read from ``record``."""
    base, calls = record
    kinds: dict = dict(zip(jaxpr.invars, args))
    for i, eqn in enumerate(jaxpr.eqns):
        ins = [None if isinstance(v, Literal) else kinds.get(v) for v in eqn.invars]
        if all(k is None for k in ins):
            continue
        bases = [v.val if isinstance(v, Literal) else base[v] for v in eqn.invars]
        name = eqn.primitive.name
        out: list[Kind] | None = None
        if i in calls:
            body = _inner(eqn)
            out = _changed(body.jaxpr, calls[i], ins, pos, causal)
        elif not any(isinstance(k, _Full) for k in ins) and len(eqn.outvars) == 1:
            patch = ins[0] if isinstance(ins[0], _Patch) else None
            if name in ELEMENTWISE or name == "stop_gradient":
                out = [_elementwise(eqn, ins, bases, pos)]
            elif name == "conv_general_dilated" and patch is not None:
                out = [_conv(eqn, ins, bases, pos)]
            elif (name in _FILL or name == "pad") and patch is not None and len(ins) <= 2:
                out = [_window_op(eqn, ins, bases, pos)]
            elif patch is not None and len(ins) == 1:
                out = [_moved(eqn, patch)]
            elif name == "gather" and eqn.outvars[0] in base:
                out = [_gathered(eqn, ins, bases, pos, base[eqn.outvars[0]])]
            elif name == "concatenate":
                out = [_concatenated(eqn, ins, bases, pos)]
            elif name == "dot_general":
                out = [_dot(eqn, ins, bases, pos, causal)]
            if out is not None and out[0] is None:
                out = None
        if out is None:
            out = [_Full(o) for o in _bind(eqn, [_dense(k, b, pos) for k, b in zip(ins, bases)])]
        kinds.update((v, k) for v, k in zip(eqn.outvars, out) if not isinstance(v, DropVar))
    return [None if isinstance(v, Literal) else kinds.get(v) for v in jaxpr.outvars]


def incremental(fn: Callable[[jax.Array], Any], x: jax.Array, causal: bool = False
                ) -> Callable[[Sequence[Any], jax.Array], Any]:
    """``fn`` evaluated at ``x`` once; returns ``changed(start, patch)``, equal (to float rounding)
    to ``fn(jax.lax.dynamic_update_slice(x, patch, start))`` but recomputing only what the
    changed box reaches (see the module doc). ``patch``'s shape is static, ``start`` (one index
    per axis of ``x``) may be traced, e.g. under ``jax.vmap`` over boxes. ``causal``: ``fn`` is a
    causal sequence model over ``x``'s first axis and every change runs to its end (see the
    module doc); rows before the change keep their values.

    >>> import jax, jax.numpy as jnp
    >>> from xai_core.graph.incremental import incremental
    >>> w = jnp.ones((4, 1, 3))  # conv1d, 4 output channels
    >>> fn = lambda x: jax.lax.conv(x[None, None], w, (1,), "SAME").sum()
    >>> x = jnp.arange(16.0)
    >>> changed = incremental(fn, x)
    >>> float(changed([5], jnp.zeros(2))), float(fn(x.at[5:7].set(0)))
    (1248.0, 1248.0)
    """
    closed, shape = jax.make_jaxpr(fn, return_shape=True)(x)
    record = _record(closed.jaxpr, closed.consts, [x])
    outs = [record[0][v] if not isinstance(v, Literal) else v.val for v in closed.jaxpr.outvars]

    def changed(start: Sequence[Any], patch: jax.Array) -> Any:
        pos = _indices(start)
        if patch.shape != x.shape and len(patch.shape) == x.ndim:
            axes = [None if n == m else _Axis(i, 1, 0, n - 1, n) for i, (n, m) in enumerate(zip(patch.shape, x.shape))]
            kind: Kind = _Patch(patch, tuple(axes))
        else:
            kind = _Full(jax.lax.dynamic_update_slice(x, patch, pos))
        found = _changed(closed.jaxpr, record, [kind], pos, causal)
        values = [_dense(k, b, pos) for k, b in zip(found, outs)]
        return jax.tree.unflatten(jax.tree.structure(shape), values)

    return changed
