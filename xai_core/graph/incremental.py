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
transposes, broadcasts and size-1 reshapes move the box; reductions over whole axes keep it.
Any other operation gets dense operands. The result equals ``fn`` on the changed input to
float rounding (the same operations on the same values, in a smaller shape).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import DropVar, Literal

from xai_core.graph.boxes import (Kind, Window, _Axis, _dense, _Full, _indices, _on, _Patch, _patch, _union,
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
    """Transposes, broadcasts and reshapes that only add or drop size-1 axes move the box."""
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
        ins = [i for i, d in enumerate(in_shape) if d != 1]
        outs = [j for j, d in enumerate(out_shape) if d != 1]
        if [in_shape[i] for i in ins] != [out_shape[j] for j in outs]:
            return None
        axes = [None] * len(out_shape)
        for i, j in zip(ins, outs):
            axes[j] = kind.axes[i]
    elif name in REDUCTIONS and all(kind.axes[a] is None for a in p["axes"]) and len(eqn.outvars) == 1:
        axes = [a for i, a in enumerate(kind.axes) if i not in p["axes"]]
        return _patch(eqn.primitive.bind(kind.value, **p), axes)
    else:
        return None
    sizes = [n if a is None else a.size for a, n in zip(axes, out_shape)]
    if name == "broadcast_in_dim":
        return _patch(jax.lax.broadcast_in_dim(kind.value, sizes, p["broadcast_dimensions"]), axes)
    return _patch(jax.lax.reshape(kind.value, sizes), axes)


def _elementwise(eqn: Any, kinds: Sequence[Kind], bases: Sequence[Any], pos: Sequence[Any]) -> Kind:
    shape = eqn.outvars[0].aval.shape
    axes = [_union([k.axes[d] for k, b in zip(kinds, bases) if isinstance(k, _Patch) and b.shape[d] == n], n)
            for d, n in enumerate(shape)]
    values = [_on(k, b, axes, shape, pos) for k, b in zip(kinds, bases)]
    return _patch(_bind(eqn, values)[0], axes)


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


def _changed(jaxpr: Any, record: tuple[dict, dict], args: Sequence[Kind], pos: Sequence[Any]) -> list[Kind]:
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
            out = _changed(body.jaxpr, calls[i], ins, pos)
        elif not any(isinstance(k, _Full) for k in ins) and len(eqn.outvars) == 1:
            patch = ins[0] if isinstance(ins[0], _Patch) else None
            if name in ELEMENTWISE:
                out = [_elementwise(eqn, ins, bases, pos)]
            elif name == "conv_general_dilated" and patch is not None:
                out = [_conv(eqn, ins, bases, pos)]
            elif (name in _FILL or name == "pad") and patch is not None and len(ins) <= 2:
                out = [_window_op(eqn, ins, bases, pos)]
            elif patch is not None and len(ins) == 1:
                out = [_moved(eqn, patch)]
            if out is not None and out[0] is None:
                out = None
        if out is None:
            out = [_Full(o) for o in _bind(eqn, [_dense(k, b, pos) for k, b in zip(ins, bases)])]
        kinds.update((v, k) for v, k in zip(eqn.outvars, out) if not isinstance(v, DropVar))
    return [None if isinstance(v, Literal) else kinds.get(v) for v in jaxpr.outvars]


def incremental(fn: Callable[[jax.Array], Any], x: jax.Array) -> Callable[[Sequence[Any], jax.Array], Any]:
    """``fn`` evaluated at ``x`` once; returns ``changed(start, patch)``, equal (to float rounding)
    to ``fn(jax.lax.dynamic_update_slice(x, patch, start))`` but recomputing only what the
    changed box reaches (see the module doc). ``patch``'s shape is static, ``start`` (one index
    per axis of ``x``) may be traced, e.g. under ``jax.vmap`` over boxes.

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
        found = _changed(closed.jaxpr, record, [kind], pos)
        values = [_dense(k, b, pos) for k, b in zip(found, outs)]
        return jax.tree.unflatten(jax.tree.structure(shape), values)

    return changed
