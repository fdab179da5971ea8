"""Channels-last through a whole program: each value carries the layout it is stored in.

:func:`channels_last` transposes around each convolution and leaves XLA to cancel the pairs;
between torch's layers (BatchNorm's per-channel affine ops, ReLU masks, adds, the batch-of-one
squeezes of the layer marks) they do not cancel, and a torch ResNet's backward pass spent a
third of its time transposing. Here a value is stored as ``transpose(original, perm)``: a
convolution's output stays in the order its kernel wrote it, elementwise operations, windowed
reductions, pads, reductions and size-1 reshapes work in the stored order (their parameters
permuted), a transpose moves no data (its output is its input read another way), and anything
else gets its inputs back in the original layout first. Outputs are always in the original
layout, so values and gradients do not change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.extend.core import DropVar, Literal

from xai_core.graph.interpreter import _bind, _inner
from xai_core.graph.windows import box_sums, dense_pool_gradient

Perm = tuple[int, ...] | None

ELEMENTWISE = frozenset({
    "add", "add_any", "sub", "mul", "div", "max", "min", "neg", "exp", "exp2", "log", "log1p", "expm1", "tanh",
    "logistic", "sqrt", "rsqrt", "abs", "sign", "pow", "integer_pow", "square", "select_n", "convert_element_type",
    "erf", "erf_inv", "sin", "cos", "ge", "gt", "le", "lt", "eq", "ne", "and", "or", "not", "floor", "ceil", "round",
    "is_finite", "clamp", "copy", "name", "reduce_precision", "cbrt", "atan2", "rem",
})
WINDOWED = {"reduce_window_sum": ("window_dimensions", "window_strides", "padding", "base_dilation",
                                  "window_dilation"),
            "reduce_window_max": ("window_dimensions", "window_strides", "padding", "base_dilation",
                                  "window_dilation"),
            "reduce_window_min": ("window_dimensions", "window_strides", "padding", "base_dilation",
                                  "window_dilation"),
            "select_and_scatter_add": ("window_dimensions", "window_strides", "padding"),
            "pad": ("padding_config",)}
REDUCTIONS = frozenset({"reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "argmax", "argmin"})
CALLS = frozenset({"jit", "pjit", "closed_call", "core_call", "custom_jvp_call", "remat", "checkpoint"})


def _inverse(perm: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argsort(perm))


def _original(value: Any, perm: Perm) -> Any:
    return value if perm is None else jax.lax.transpose(value, _inverse(perm))


def _stored(value: Any, perm: Perm, target: Perm) -> Any:
    """``value`` (stored as ``perm``) stored as ``target`` instead."""
    if perm == target:
        return value
    if perm is None:
        return jax.lax.transpose(value, target)
    if target is None:
        return _original(value, perm)
    return jax.lax.transpose(value, tuple(perm.index(a) for a in target))


def _squeezed(in_shape: Sequence[int], out_shape: Sequence[int], perm: Perm) -> tuple[Perm, tuple[int, ...]] | None:
    """For a reshape that only adds or drops size-1 axes: the output's perm and the stored
    output shape (``None`` for any other reshape)."""
    ins = [i for i, d in enumerate(in_shape) if d != 1]
    outs = [j for j, d in enumerate(out_shape) if d != 1]
    if [in_shape[i] for i in ins] != [out_shape[j] for j in outs]:
        return None
    moved = [dict(zip(ins, outs))[a] for a in perm if in_shape[a] != 1]
    out_perm = tuple([j for j, d in enumerate(out_shape) if d == 1] + moved)
    return (None if out_perm == tuple(range(len(out_shape))) else out_perm), tuple(out_shape[a] for a in out_perm)


def _conv(eqn: Any, lhs: tuple[Any, Perm], rhs: tuple[Any, Perm]) -> tuple[Any, Perm]:
    p = eqn.params
    lhs_spec, rhs_spec, out_spec = p["dimension_numbers"]
    n = len(lhs_spec) - 2
    last = lambda spec: (spec[0], *spec[2:], spec[1])  # noqa: E731  (batch, spatial..., feature)
    x = _stored(*lhs, tuple(last(lhs_spec)))
    w = _stored(*rhs, (*rhs_spec[2:], rhs_spec[1], rhs_spec[0]))
    spatial = tuple(range(1, n + 1))
    dims = jax.lax.ConvDimensionNumbers((0, n + 1, *spatial), (n + 1, n, *range(n)), (0, n + 1, *spatial))
    out = jax.lax.conv_general_dilated(x, w, p["window_strides"], p["padding"], p["lhs_dilation"], p["rhs_dilation"],
                                       dims, p["feature_group_count"], p["batch_group_count"], p["precision"],
                                       p["preferred_element_type"])
    perm = tuple(last(out_spec))
    return out, (None if perm == tuple(range(n + 2)) else perm)


def _plain(eqn: Any, values: list[Any], rules: dict[str, Callable[..., Any]]) -> list[tuple[Any, Perm]]:
    """``eqn`` on values in their original layout: its rule, or the primitive itself."""
    rule = rules.get(eqn.primitive.name)
    out = None if rule is None else rule(eqn, *values)
    return [(out, None)] if out is not None else [(o, None) for o in _bind(eqn, values)]


def _eqn(eqn: Any, ins: list[tuple[Any, Perm]], rules: dict[str, Callable[..., Any]]) -> list[tuple[Any, Perm]]:
    name, p = eqn.primitive.name, eqn.params
    if name == "conv_general_dilated":
        return [_conv(eqn, *ins)]
    if name == "transpose":  # no data moves: the output is the input's storage, read another way
        value, q = ins[0]
        back = _inverse(p["permutation"])
        perm = back if q is None else tuple(back[a] for a in q)
        return [(value, None if perm == tuple(range(len(perm))) else perm)]
    tagged = [perm for value, perm in ins if perm is not None]
    if not tagged:
        return _plain(eqn, [v for v, _ in ins], rules)
    perm = tagged[0]
    if name in ELEMENTWISE:
        rank = len(perm)
        values = [v if jax.numpy.ndim(v) == 0 else _stored(v, q, perm) if jax.numpy.ndim(v) == rank else None
                  for v, q in ins]
        if all(v is not None for v in values):
            return [(o, perm) for o in _bind(eqn, values)]
    elif name in WINDOWED and ins[0][1] == perm and all(q == perm or jax.numpy.ndim(v) == 0 for v, q in ins[1:]):
        params = dict(p)
        for key in WINDOWED[name]:
            params[key] = tuple(params[key][a] for a in perm)
        stored = [v for v, _ in ins]
        if name == "reduce_window_sum":
            return [(box_sums(stored[0], params), perm)]
        if name == "select_and_scatter_add":
            out = dense_pool_gradient(params, *stored)
            if out is not None:
                return [(out, perm)]
        return [(o, perm) for o in eqn.primitive.bind(*stored, **params)] if eqn.primitive.multiple_results else \
            [(eqn.primitive.bind(*stored, **params), perm)]
    elif name in REDUCTIONS and len(ins) == 1:
        axes = tuple(p["axes"])
        stored_axes = tuple(sorted(perm.index(a) for a in axes))
        kept = [a for a in perm if a not in axes]
        relabel = {a: i for i, a in enumerate(sorted(kept))}
        out_perm = tuple(relabel[a] for a in kept)
        out = eqn.primitive.bind(ins[0][0], **dict(p, axes=stored_axes))
        return [(out, None if out_perm == tuple(range(len(out_perm))) else out_perm)]
    elif name == "rev":
        return [(jax.lax.rev(ins[0][0], tuple(perm.index(d) for d in p["dimensions"])), perm)]
    elif name == "broadcast_in_dim" and len(ins) == 1:
        dims, shape = p["broadcast_dimensions"], p["shape"]
        new = [a for a in range(len(shape)) if a not in dims]
        out_perm = tuple(new + [dims[a] for a in perm])
        stored_shape = tuple(shape[a] for a in out_perm)
        out = jax.lax.broadcast_in_dim(ins[0][0], stored_shape, tuple(range(len(new), len(out_perm))))
        return [(out, None if out_perm == tuple(range(len(shape))) else out_perm)]
    elif name in ("reshape", "squeeze", "expand_dims") and len(ins) == 1:
        value, q = ins[0]
        found = _squeezed(eqn.invars[0].aval.shape, eqn.outvars[0].aval.shape, q)
        if found is not None:
            out_perm, shape = found
            return [(jax.lax.reshape(value, shape), out_perm)]
    return _plain(eqn, [_original(v, q) for v, q in ins], rules)


def _evaluate(jaxpr: Any, consts: Sequence[Any], args: Sequence[tuple[Any, Perm]],
              rules: dict[str, Callable[..., Any]]) -> list[tuple[Any, Perm]]:
    env: dict[Any, tuple[Any, Perm]] = {}
    read = lambda v: (v.val, None) if isinstance(v, Literal) else env[v]  # noqa: E731
    for v, x in zip(jaxpr.constvars, consts):
        env[v] = (x, None)
    for v, x in zip(jaxpr.invars, args):
        env[v] = x
    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        body = _inner(eqn) if eqn.primitive.name in CALLS else None
        if body is not None and len(body.jaxpr.invars) == len(ins):
            outs = _evaluate(body.jaxpr, body.consts, ins, rules)
        else:
            outs = _eqn(eqn, ins, rules)
        for v, x in zip(eqn.outvars, outs):
            if not isinstance(v, DropVar):
                env[v] = x
    return [read(v) for v in jaxpr.outvars]


_tracing = [0]  # > 0 while a whole_program traces its function


def whole_program(fn: Callable[..., Any], rules: dict[str, Callable[..., Any]]) -> Callable[..., Any]:
    """``fn`` evaluated with layouts carried through (see the module doc) and ``rules`` for
    the primitives met in their original layout; outputs in the original layout. Inside
    another ``whole_program`` (a gradient inside a chunked method), ``fn`` is left as it is:
    the outer pass carries the layout through both, with no materialized boundary between."""
    def wrapped(*args: Any) -> Any:
        if _tracing[0]:
            return fn(*args)
        specs = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jax.numpy.shape(a), jax.numpy.result_type(a)), args)
        _tracing[0] += 1
        try:
            closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*specs)
        finally:
            _tracing[0] -= 1
        outs = _evaluate(closed.jaxpr, closed.consts, [(a, None) for a in jax.tree.leaves(args)], rules)
        return jax.tree.unflatten(jax.tree.structure(out_shape), [_original(v, q) for v, q in outs])

    return wrapped
